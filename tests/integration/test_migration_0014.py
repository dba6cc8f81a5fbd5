"""Migration 0014 (the text read in photos, issue 26), on SQLite and MariaDB: up adds the
table the worker writes and searches read; down drops it and the word terms (the older code
knows neither), leaving every other term and total as it was; up again works."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import insert, select

from labelkit.db import counts
from labelkit.db.engine import make_engine, transaction
from labelkit.db.migrate import downgrade, upgrade
from labelkit.db.models import Image, ImageTerm, User
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Label, LabelResult, TextDetection

SIGN = [
    TextDetection(
        text="GET WELL SOON",
        type="LINE",
        id=0,
        confidence=98.0,
        box=BoundingBox(left=0.1, top=0.1, width=0.8, height=0.2),
    ),
    TextDetection(
        text="SOON",
        type="WORD",
        id=1,
        parent_id=0,
        confidence=97.0,
        box=BoundingBox(left=0.6, top=0.1, width=0.3, height=0.2),
    ),
]


def _terms(engine: sa.Engine) -> set[tuple[str, str]]:
    with transaction(engine) as s:
        return {(str(k), str(t)) for k, t in s.execute(select(ImageTerm.kind, ImageTerm.term))}


def test_0014_goes_up_and_down_with_text_in_it(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        # GIVEN a database at 0013 with a labelled photo
        upgrade(engine, "0013")
        assert "image_text" not in sa.inspect(engine).get_table_names()
        with engine.begin() as c:
            c.execute(
                insert(User), [{"id": "ann", "username": "ann", "password_hash": "x", "is_admin": False}]
            )
            c.execute(
                insert(Image),
                [
                    {
                        "id": "card",
                        "owner_id": "ann",
                        "object_key": "users/ann/card.jpg",
                        "original_name": "card.jpg",
                        "content_type": "image/jpeg",
                        "bytes": 1,
                        "width": 10,
                        "height": 10,
                        "sha256": "c" * 64,
                        "status": "labelled",
                        "attempts": 1,
                    }
                ],
            )
        # WHEN it goes up to 0014 and the worker writes the photo's labels and text
        upgrade(engine, "0014")
        with transaction(engine) as s:
            result = LabelResult(model_version="m1", labels=[Label(name="Text", confidence=98.0)], text=SIGN)
            worker_q.save_model_labels(session=s, image_id="card", result=result)
        # THEN the text is stored and its word is a term beside the label's
        assert _terms(engine) == {("label", "Text"), ("text", "soon")}
        with transaction(engine) as s:
            before = counts.dump(s)
        # WHEN it goes down to 0013
        downgrade(engine, "0013")
        # THEN the table and the word terms are gone, the label's term and every total are not
        assert "image_text" not in sa.inspect(engine).get_table_names()
        assert _terms(engine) == {("label", "Text")}
        with transaction(engine) as s:
            assert counts.dump(s) == before
            counts.rebuild(s)
            assert counts.dump(s) == before
        # AND it goes up again, the text to be read again by relabelling
        upgrade(engine)
        assert "image_text" in sa.inspect(engine).get_table_names()
        with transaction(engine) as s:
            worker_q.save_text(session=s, image_id="card", model_version="m1", text=SIGN)
        assert _terms(engine) == {("label", "Text"), ("text", "soon")}
    finally:
        engine.dispose()
