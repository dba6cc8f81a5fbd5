"""Migration 0013: rejections people made before it end the roll-ups they imply (issue 24,
item 2), on SQLite and MariaDB; a downgrade gives the older code its rows back."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy import insert, select

from labelkit.db import counts
from labelkit.db.engine import make_engine, transaction
from labelkit.db.migrate import downgrade, upgrade
from labelkit.db.models import Image, ImageTerm, LabelCount, TermKind, User

LABELS = sa.table(
    "labels",
    *(
        sa.column(c)
        for c in ("image_id", "source", "model_version", "name", "instance", "confidence", "parents")
    ),
    sa.column("aliases"),
    sa.column("categories"),
    sa.column("review"),
    sa.column("created_by"),
    sa.column("created_at"),
)


def _label(name: str, parents: list[str], *, source: str = "model", review: str = "unreviewed") -> dict:
    return {
        "image_id": "dog",
        "source": source,
        "model_version": "m1" if source == "model" else "",
        "name": name,
        "instance": 0,
        "confidence": 70.0 if source == "model" else 100.0,
        "parents": json.dumps(parents),
        "aliases": "[]",
        "categories": "[]",
        "review": review,
        "created_by": "ann" if source == "human" else None,
        "created_at": "2026-12-01 10:00:00",
    }


def _terms(engine: sa.Engine) -> set[str]:
    with transaction(engine) as s:
        return set(s.scalars(select(ImageTerm.term).where(ImageTerm.kind == TermKind.LABEL)))


def test_upgrade_ends_the_roll_ups_of_earlier_rejections_and_downgrade_restores_them(
    empty_db_url: str,
) -> None:
    engine = make_engine(empty_db_url)
    try:
        # GIVEN a database at 0012 where ann rejected Cat on a dog photo the model also called
        # Cat (with Feline rolled up from it), terms and totals derived as that code did
        upgrade(engine, "0012")
        with engine.begin() as c:
            c.execute(
                insert(User), [{"id": "ann", "username": "ann", "password_hash": "x", "is_admin": False}]
            )
            c.execute(
                insert(Image),
                [
                    {
                        "id": "dog",
                        "owner_id": "ann",
                        "object_key": "users/ann/dog.jpg",
                        "original_name": "dog.jpg",
                        "content_type": "image/jpeg",
                        "bytes": 1,
                        "width": 10,
                        "height": 10,
                        "sha256": "d" * 64,
                        "status": "labelled",
                        "attempts": 1,
                    }
                ],
            )
            c.execute(
                insert(LABELS),
                [
                    _label("Dog", ["Pet", "Animal"]),
                    _label("Cat", ["Feline", "Pet", "Animal"]),
                    _label("Feline", ["Animal"]),
                    _label("Cat", ["Feline", "Pet", "Animal"], source="human", review="rejected"),
                ],
            )
        with transaction(engine) as s:
            counts.derive_terms(s, ["dog"], implied=False)
            counts.rebuild(s)
        assert _terms(engine) == {"Dog", "Feline"}
        # WHEN it is migrated to 0013
        upgrade(engine)
        # THEN Feline went with Cat (search, counts) and the totals equal a rebuild
        assert _terms(engine) == {"Dog"}
        with transaction(engine) as s:
            feline = s.get(LabelCount, ("ann", "Feline"))
            assert feline is not None and (feline.images, feline.rejected, feline.awaiting) == (0, 1, 0)
            running = counts.dump(s)
            counts.rebuild(s)
            assert counts.dump(s) == running
        # WHEN it goes down again THEN the older code's rows are back as they were
        downgrade(engine, "0012")
        assert _terms(engine) == {"Dog", "Feline"}
        assert "implied_by" not in {c["name"] for c in sa.inspect(engine).get_columns("labels")}
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT COUNT(*) FROM labels WHERE source = 'human'")).scalar() == 1
        # AND up again
        upgrade(engine)
        assert _terms(engine) == {"Dog"}
    finally:
        engine.dispose()
