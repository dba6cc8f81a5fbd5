"""Migration 0008 derives the terms and totals of an existing database under issue #16's
rules (a rejection outranks the model; people's labels count), on SQLite and MariaDB."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from labelkit.db import counts
from labelkit.db.engine import dispose_engines, make_engine, transaction
from labelkit.db.migrate import downgrade, upgrade
from labelkit.db.models import Image, ImageTerm, LabelRow, LabelSource, ReviewState, TermKind, User
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import Label, LabelResult, Viewer
from labelkit.settings import get_settings


def _old_rows(engine: Engine) -> tuple[Viewer, str]:
    """A photo as the code before 0008 left it: the model's "School Bus" (parents Bus,
    Vehicle), a person's rejection of it, a person's "Astronaut"; image_terms added to by
    insert-or-ignore, so the rejected label's terms stayed (and the totals counted it)."""
    with engine.begin() as c:
        c.execute(insert(User), [{"id": "u1", "username": "alice", "password_hash": "x", "is_admin": False}])
        c.execute(
            insert(Image),
            [
                {
                    "id": "i1",
                    "owner_id": "u1",
                    "object_key": "users/u1/i1.jpg",
                    "original_name": "street.jpg",
                    "content_type": "image/jpeg",
                    "bytes": 1,
                    "width": 10,
                    "height": 10,
                    "sha256": "0" * 64,
                    "status": "labelled",
                    "attempts": 1,
                }
            ],
        )
        label = {"image_id": "i1", "instance": 0, "aliases": [], "categories": ["Vehicles"]}
        c.execute(
            insert(LabelRow),
            [
                {**label, "source": "model", "model_version": "m", "name": "School Bus", "confidence": 64.0}
                | {"parents": ["Bus", "Vehicle"], "review": "unreviewed"},
                {**label, "source": "model", "model_version": "m", "name": "Road", "confidence": 55.0}
                | {"parents": [], "categories": [], "review": "unreviewed"},
                {**label, "source": "human", "model_version": "", "name": "School Bus", "confidence": 100.0}
                | {"parents": ["Bus", "Vehicle"], "review": "rejected", "created_by": "u1"},
                {**label, "source": "human", "model_version": "", "name": "Astronaut", "confidence": 100.0}
                | {"parents": [], "categories": [], "review": "confirmed", "created_by": "u1"},
            ],
        )
        c.execute(
            insert(ImageTerm),
            [
                {"image_id": "i1", "kind": kind, "term": term, "confidence": conf}
                for kind, term, conf in [
                    ("label", "School Bus", 64.0),
                    ("label", "Road", 55.0),
                    ("parent", "Bus", 64.0),
                    ("parent", "Vehicle", 64.0),
                    ("category", "Vehicles", 64.0),
                ]
            ],
        )
    return Viewer(user_id="u1"), "i1"


def test_upgrade_derives_terms_and_totals_and_downgrade_keeps_them(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        # GIVEN a database at 0007 with rows the old code wrote, and its totals recounted
        upgrade(engine, "0007")
        alice, photo = _old_rows(engine)
        with transaction(engine) as s:
            counts.rebuild(s)

        # WHEN it is migrated to 0008 (and on: today's code reads the owner column of 0011)
        upgrade(engine, "0008")
        upgrade(engine)

        # THEN the photo carries its effective labels only, and every count agrees
        with transaction(engine) as s:
            terms = {(TermKind(t.kind).value, t.term, t.confidence) for t in s.scalars(select(ImageTerm))}
            assert terms == {
                ("label", "Road", 55.0),
                ("label", "Astronaut", 100.0),
            }
            stats = {st.name: (st.images, st.rejected) for st in stats_q.label_stats(session=s, viewer=alice)}
            assert stats == {"Road": (1, 0), "Astronaut": (1, 0), "School Bus": (0, 1)}
            for name, images in (("School Bus", 0), ("Bus", 0), ("Astronaut", 1)):
                flt = image_q.ImageFilter(label=name)
                assert image_q.list_images(session=s, viewer=alice, flt=flt).total == images, name
            assert stats_q.primary_labels(session=s, viewer=alice, image_ids=[photo]) == {
                photo: ("Astronaut", 100.0)
            }
            running = counts.dump(s)
            counts.rebuild(s)
            assert counts.dump(s) == running

        # AND downgrading to 0007 (and up again) works and leaves the derived rows
        downgrade(engine, "0007")
        with transaction(engine) as s:
            assert s.scalar(select(ImageTerm.term).where(ImageTerm.term == "School Bus")) is None
        upgrade(engine)
        with transaction(engine) as s:
            assert stats_q.label_stats(session=s, viewer=alice)[0].name in ("Astronaut", "Road")
    finally:
        engine.dispose()


def test_the_cli_derives_terms_written_behind_the_queries_back(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a rejected label whose term was put back by hand (as a bulk load might)
    with transaction(engine) as s:
        u = user_q.create_user(session=s, username="alice", password_hash="x", is_admin=False)
        alice = Viewer(user_id=u.id)
        img = image_q.create_image(
            session=s,
            owner_id=u.id,
            original_name="a.jpg",
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=1,
            width=10,
            height=10,
            sha256="a" * 64,
        )
        worker_q.save_model_labels(
            session=s,
            image_id=img.id,
            result=LabelResult(model_version="m", labels=[Label(name="Cat", confidence=90)]),
        )
        label_q.set_human_label(
            session=s, viewer=alice, image_id=img.id, name="Cat", review=ReviewState.REJECTED
        )
        s.execute(
            insert(ImageTerm).values(
                image_id=img.id, owner_id=u.id, kind=TermKind.LABEL, term="Cat", confidence=90.0
            )
        )
    # WHEN `python -m labelkit.db.counts --terms` runs (after --check found the drift)
    monkeypatch.setenv("LABELKIT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert counts.main(["--check"]) == 1
        assert counts.main(["--terms"]) == 0
        assert counts.main(["--check"]) == 0
    finally:
        get_settings.cache_clear()
        dispose_engines()
    assert "matched" in capsys.readouterr().out
    # THEN the rejection wins again
    with transaction(engine) as s:
        assert image_q.list_images(session=s, viewer=alice, flt=image_q.ImageFilter(label="Cat")).total == 0
        assert s.scalar(select(LabelRow.review).where(LabelRow.source == LabelSource.HUMAN)) == "rejected"
