"""Migration 0011 gives every image_terms row its image's owner (what a person's search reads
through the owner-and-term index), on SQLite and MariaDB; a search then finds only the
viewer's own photos."""

from __future__ import annotations

from sqlalchemy import insert, inspect, select, text

from labelkit.db import counts
from labelkit.db.engine import make_engine, transaction
from labelkit.db.migrate import downgrade, upgrade
from labelkit.db.models import Image, ImageTerm, TermKind, User
from labelkit.db.queries import search as search_q
from labelkit.domain import Viewer


def _image(image_id: str, owner: str) -> dict[str, object]:
    return {
        "id": image_id,
        "owner_id": owner,
        "object_key": f"users/{owner}/{image_id}.jpg",
        "original_name": f"{image_id}.jpg",
        "content_type": "image/jpeg",
        "bytes": 1,
        "width": 10,
        "height": 10,
        "sha256": image_id * 32,
        "status": "labelled",
        "attempts": 1,
    }


def test_upgrade_fills_each_terms_owner_and_search_reads_the_viewers_own(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        # GIVEN a database at 0010 where two people's photos carry the same terms
        upgrade(engine, "0010")
        with engine.begin() as c:
            c.execute(
                insert(User),
                [{"id": u, "username": u, "password_hash": "x", "is_admin": False} for u in ("ann", "bob")],
            )
            c.execute(insert(Image), [_image("a1", "ann"), _image("a2", "ann"), _image("b1", "bob")])
            c.execute(
                text(
                    "INSERT INTO image_terms (image_id, kind, term, confidence) VALUES "
                    "('a1', 'label', 'Dog', 91.0), ('a1', 'parent', 'Animal', 91.0), "
                    "('a2', 'label', 'Cat', 80.0), ('b1', 'label', 'Dog', 99.0)"
                )
            )
        # WHEN it is migrated to 0011 (and the totals, which a search's count reads, recounted)
        upgrade(engine)
        with transaction(engine) as s:
            counts.rebuild(s)
        # THEN every row names its image's owner, and the column is indexed with the term
        with transaction(engine) as s:
            rows = {(t.image_id, t.term): t.owner_id for t in s.scalars(select(ImageTerm))}
            assert rows == {
                ("a1", "Dog"): "ann",
                ("a1", "Animal"): "ann",
                ("a2", "Cat"): "ann",
                ("b1", "Dog"): "bob",
            }
            # a person's search for "Dog" gives their own photo (bob's, better scored, is not read)
            dog = [search_q.TermRef(kind=TermKind.LABEL, term="Dog")]
            found = search_q.search_images(session=s, viewer=Viewer(user_id="ann"), include=[dog])
            assert [(h.image.id, h.score) for h in found.items] == [("a1", 91.0)] and found.total == 1
            admin = search_q.search_images(
                session=s, viewer=Viewer(user_id="x", is_admin=True), include=[dog]
            )
            assert [h.image.id for h in admin.items] == ["b1", "a1"]
        columns = {c["name"]: c for c in inspect(engine).get_columns("image_terms")}
        assert columns["owner_id"]["nullable"] is False
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("image_terms")}
        assert indexes["ix_image_terms_owner_term"] == ["owner_id", "kind", "term", "confidence"]
        # AND it goes down and up again
        downgrade(engine, "0010")
        assert "owner_id" not in {c["name"] for c in inspect(engine).get_columns("image_terms")}
        upgrade(engine)
        with transaction(engine) as s:
            assert s.scalar(select(ImageTerm.owner_id).where(ImageTerm.image_id == "b1")) == "bob"
    finally:
        engine.dispose()
