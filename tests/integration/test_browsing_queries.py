"""The image page's previous / next (``images.neighbours``) and the admin's owner list
(``bulk.image_owners``), on SQLite and MariaDB: the gallery's order, its filters, its scoping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine

from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus, utcnow
from labelkit.db.queries import bulk as bulk_q
from labelkit.db.queries import images as image_q
from labelkit.db.queries import users as user_q
from labelkit.domain import Viewer
from labelkit.errors import NotFound


def _user(engine: Engine, name: str) -> Viewer:
    with transaction(engine) as s:
        u = user_q.create_user(session=s, username=name, password_hash="x")
        return Viewer(user_id=u.id, is_admin=u.is_admin)


def _images(engine: Engine, owner: Viewer, n: int, *, tag: str) -> list[str]:
    """``n`` images, the first one oldest; the middle two share a timestamp (ids break the tie)."""
    start = utcnow() - timedelta(days=1)
    ids = []
    with transaction(engine) as s:
        for i in range(n):
            img = image_q.create_image(
                session=s,
                owner_id=owner.user_id,
                original_name=f"{tag}{i}.jpg",
                content_type="image/jpeg",
                extension=".jpg",
                size_bytes=1,
                width=1,
                height=1,
                sha256=f"{tag}{i}".ljust(64, "0"),
            )
            img.created_at = start + timedelta(minutes=i if i not in (2, 3) else 2)
            img.status = ImageStatus.LABELLED if i % 2 == 0 else ImageStatus.FAILED
            ids.append(img.id)
    return ids


def _walk(engine: Engine, viewer: Viewer, flt: image_q.ImageFilter, first: str) -> list[str]:
    seen, current = [first], first
    while True:
        with transaction(engine) as s:
            around = image_q.neighbours(session=s, viewer=viewer, flt=flt, image_id=current)
        assert around.position == len(seen) - 1
        if around.older is None:
            return seen
        current = around.older
        seen.append(current)


def test_next_walks_the_gallery_order_and_previous_walks_it_back(engine: Engine) -> None:
    alice = _user(engine, "alice")
    _images(engine, alice, 6, tag="a")
    for flt in (image_q.ImageFilter(), image_q.ImageFilter(status=ImageStatus.LABELLED)):
        with transaction(engine) as s:
            gallery = [i.id for i in image_q.list_images(session=s, viewer=alice, flt=flt).items]
        assert _walk(engine, alice, flt, gallery[0]) == gallery
        with transaction(engine) as s:
            first = image_q.neighbours(session=s, viewer=alice, flt=flt, image_id=gallery[0])
            last = image_q.neighbours(session=s, viewer=alice, flt=flt, image_id=gallery[-1])
            assert first.newer is None and last.older is None
            assert last.newer == gallery[-2]
    with transaction(engine) as s:
        assert len(image_q.list_images(session=s, viewer=alice, flt=flt).items) == 3  # the filter held


def test_an_image_outside_the_filter_is_placed_where_it_would_sort(engine: Engine) -> None:
    alice = _user(engine, "alice")
    ids = _images(engine, alice, 5, tag="a")  # 0, 2, 4 labelled; 1, 3 failed
    with transaction(engine) as s:
        around = image_q.neighbours(
            session=s, viewer=alice, flt=image_q.ImageFilter(status=ImageStatus.LABELLED), image_id=ids[1]
        )
    assert (around.newer, around.older, around.position) == (ids[2], ids[0], 2)


def test_neighbours_are_scoped_and_admins_can_narrow_to_an_owner(engine: Engine) -> None:
    alice = _user(engine, "alice")  # admin
    bob = _user(engine, "bob")
    _user(engine, "carol")  # no images: not an owner to pick
    a = _images(engine, alice, 3, tag="a")
    b = _images(engine, bob, 3, tag="b")
    with transaction(engine) as s:  # bob's images are all newer than alice's
        s.execute(update(Image).where(Image.id.in_(b)).values(created_at=utcnow()))
        s.execute(update(Image).where(Image.id == b[0]).values(created_at=utcnow() - timedelta(seconds=5)))
    with transaction(engine) as s:
        with pytest.raises(NotFound):
            image_q.neighbours(session=s, viewer=bob, flt=None, image_id=a[0])
        own = image_q.neighbours(session=s, viewer=bob, flt=None, image_id=b[0])
        assert own.older is None  # alice's older images are not bob's neighbours
        everyone = image_q.neighbours(session=s, viewer=alice, flt=None, image_id=b[0])
        assert everyone.older == a[-1]
        only_bob = image_q.neighbours(
            session=s, viewer=alice, flt=image_q.ImageFilter(owner_id=bob.user_id), image_id=b[0]
        )
        assert only_bob.older is None and only_bob.newer is not None

        assert [name for _, name in bulk_q.image_owners(session=s, viewer=alice)] == ["alice", "bob"]
        # a user's own list is only themselves (the gallery offers the owner filter to admins only)
        assert bulk_q.image_owners(session=s, viewer=bob) == [(bob.user_id, "bob")]
