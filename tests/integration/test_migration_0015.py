"""Migration 0015 (taught labels and thresholds from reviews, issue 27), on SQLite and MariaDB:
up adds the three tables; code run against the older schema (a rolling deploy) still labels;
down drops the tables and the ``learned`` rows (the older code knows neither), and a rebuild
of the totals then agrees with them; up again works."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import insert, select

from labelkit.db import counts
from labelkit.db.engine import make_engine, transaction
from labelkit.db.migrate import downgrade, upgrade
from labelkit.db.models import Image, ImageTerm, LabelRow, User
from labelkit.db.queries import learning as learning_q
from labelkit.db.queries import thresholds as thresholds_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import Label, LabelResult

TABLES = {"taught_labels", "learning_runs", "label_thresholds"}


def _terms(engine: sa.Engine) -> set[tuple[str, str]]:
    with transaction(engine) as s:
        return {(str(k), str(t)) for k, t in s.execute(select(ImageTerm.kind, ImageTerm.term))}


def test_0015_goes_up_and_down_with_taught_labels_in_it(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        # GIVEN a database at 0014 with two photos, labelled by today's code (no floors yet)
        upgrade(engine, "0014")
        assert not TABLES & set(sa.inspect(engine).get_table_names())
        with engine.begin() as c:
            c.execute(
                insert(User), [{"id": "ann", "username": "ann", "password_hash": "x", "is_admin": False}]
            )
            c.execute(
                insert(Image),
                [
                    {
                        "id": name, "owner_id": "ann", "object_key": f"users/ann/{name}.jpg",
                        "original_name": f"{name}.jpg", "content_type": "image/jpeg", "bytes": 1, "width": 10,
                        "height": 10, "sha256": name[0] * 64, "status": "labelled", "attempts": 1,
                    }
                    for name in ("beach", "dune")
                ],
            )  # fmt: skip
        with transaction(engine) as s:
            result = LabelResult(model_version="m1", labels=[Label(name="Sky", confidence=40.0)])
            worker_q.save_model_labels(session=s, image_id="beach", result=result)
        assert _terms(engine) == {("label", "Sky")}
    finally:
        engine.dispose()
    engine = make_engine(empty_db_url)
    try:
        # WHEN it goes up to 0015, a taught label suggests Beach on the dune and Sky gets a floor
        upgrade(engine, "0015")
        assert TABLES <= set(sa.inspect(engine).get_table_names())
        with transaction(engine) as s:
            learning_q.write_suggestions(
                session=s,
                image_ids=["dune"],
                name="Beach",
                model_version="learned-1",
                confidences={"dune": 80.0},
            )
            thresholds_q.set_floor(session=s, owner_id="ann", name="Sky", min_confidence=50.0, set_by="ann")
            with counts.counting(s, ["beach"]):
                pass
        # THEN the suggestion is a term and Sky below its floor is not
        assert _terms(engine) == {("label", "Beach")}
        # WHEN it goes down to 0014
        downgrade(engine, "0014")
        # THEN the tables and the learned rows are gone, the terms are as the older code derives
        # them (Sky carried again: no floors there) and the totals are a rebuild's
        assert not TABLES & set(sa.inspect(engine).get_table_names())
        assert _terms(engine) == {("label", "Sky")}
        with transaction(engine) as s:
            assert [str(x) for x in s.scalars(select(LabelRow.source).distinct())] == ["model"]
            running = counts.dump(s)
            counts.rebuild(s)
            assert counts.dump(s) == running
        # AND it goes up again
        upgrade(engine)
        assert TABLES <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
