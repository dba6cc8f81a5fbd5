"""Near-duplicates (labelkit.duplicates) through the real upload path and worker: a resized and a
recompressed copy are grouped with their original, a different photo is not, the largest copy
is the keeper, another user's copy is never grouped, embeddings confirm borderline pairs, the
upload says which photo a new one looks like, and deleting the rest removes objects, rows and
queue entries. SQLite and MariaDB. Photos from scikit-learn / scikit-image (never the devset)."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from labelkit import duplicates
from labelkit.db.engine import transaction
from labelkit.db.models import Image as ImageRow
from labelkit.db.models import ImageFeatureRow, utcnow
from labelkit.db.queries import users as user_q
from labelkit.db.queries.duplicates import HashedImage
from labelkit.domain import Viewer
from labelkit.features import thumbnail_key
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.testing.photos import photo
from labelkit.uploads import delete_images, upload_image
from tests.dashboard.conftest import drain


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    im.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _other_photo() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut())


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)


def _user(services: Services, name: str) -> Viewer:
    with transaction(services.engine) as s:
        return Viewer(user_id=user_q.create_user(session=s, username=name, password_hash="x").id)


def _upload(services: Services, who: Viewer, name: str, data: bytes) -> str:
    r = upload_image(services=services, owner_id=who.user_id, filename=name, data=data)
    assert r.outcome == "accepted" and r.image_id is not None, r
    return r.image_id


def test_resized_and_recompressed_copies_are_grouped_and_the_largest_kept(services: Services) -> None:
    # GIVEN a photo, a half-size copy, a recompressed copy, a different photo, and another
    # user holding a copy of the same photo
    ann, bob = _user(services, "ann"), _user(services, "bob")
    original = photo(1280, 854, noise=0)
    big = _upload(services, ann, "original.jpg", _jpeg(original))
    small = _upload(services, ann, "small.jpg", _jpeg(original.resize((640, 427), Image.Resampling.LANCZOS)))
    squashed = _upload(services, ann, "q30.jpg", _jpeg(original, quality=30))
    other = _upload(services, ann, "astronaut.jpg", _jpeg(_other_photo()))
    bobs = _upload(services, bob, "mine.jpg", _jpeg(original.resize((800, 534))))

    # WHEN the worker labels them (and hashes them) and the groups are found
    drain(services)
    with transaction(services.engine) as s:
        hashed = s.scalar(
            select(func.count()).select_from(ImageFeatureRow).where(ImageFeatureRow.phash.is_not(None))
        )
    groups = duplicates.find_groups(engine=services.engine, viewer=ann, owner_id=ann.user_id)

    # THEN one group holds the three copies, the largest first as the keeper; the different
    # photo and bob's copy are in no group of ann's
    assert hashed == 5
    assert len(groups) == 1
    assert groups[0].keeper == big
    assert set(groups[0].image_ids) == {big, small, squashed}
    assert other not in groups[0].image_ids and bobs not in groups[0].image_ids
    # bob sees only his own (a single photo: no group); he cannot read ann's
    assert duplicates.find_groups(engine=services.engine, viewer=bob, owner_id=bob.user_id) == []
    assert duplicates.find_groups(engine=services.engine, viewer=bob, owner_id=ann.user_id) == []


def test_upload_says_which_photo_it_looks_like_and_is_still_accepted(services: Services) -> None:
    ann, bob = _user(services, "ann"), _user(services, "bob")
    original = photo(1000, 667, noise=0)
    first = _upload(services, ann, "first.jpg", _jpeg(original))
    # No worker has run yet: the hash written at upload already counts.
    r = upload_image(
        services=services,
        owner_id=ann.user_id,
        filename="copy.jpg",
        data=_jpeg(original.resize((500, 333)), 50),
    )
    assert r.outcome == "accepted" and r.looks_like == first
    r2 = upload_image(
        services=services, owner_id=ann.user_id, filename="other.jpg", data=_jpeg(_other_photo())
    )
    assert r2.outcome == "accepted" and r2.looks_like is None
    # another user's copy never points at ann's photo
    r3 = upload_image(services=services, owner_id=bob.user_id, filename="b.jpg", data=_jpeg(original, 70))
    assert r3.outcome == "accepted" and r3.looks_like is None


def test_bulk_delete_of_the_rest_removes_objects_rows_and_queue_entries(services: Services) -> None:
    ann = _user(services, "ann")
    original = photo(1280, 854, noise=0)
    keep = _upload(services, ann, "original.jpg", _jpeg(original))
    copy = _upload(services, ann, "small.jpg", _jpeg(original.resize((640, 427))))
    drain(services)
    # a copy uploaded after labelling: still in the queue when it is deleted
    late = _upload(services, ann, "late.jpg", _jpeg(original, quality=40))
    groups = duplicates.find_groups(engine=services.engine, viewer=ann, owner_id=ann.user_id)
    assert [g.keeper for g in groups] == [keep] and set(groups[0].others) == {copy, late}
    with transaction(services.engine) as s:
        keys = {i: s.get_one(ImageRow, i).object_key for i in (keep, copy, late)}
    for i in (copy, late):  # their gallery thumbnails (stored by the worker's thumbnail extractor)
        services.store.put(thumbnail_key(keys[i]), b"\xff\xd8thumb", content_type="image/jpeg")

    deleted = delete_images(services=services, viewer=ann, image_ids=list(groups[0].others))

    assert set(deleted) == {copy, late}
    with transaction(services.engine) as s:
        assert s.get(ImageRow, keep) is not None
        assert s.get(ImageRow, copy) is None and s.get(ImageRow, late) is None
        assert s.get(ImageFeatureRow, copy) is None and s.get(ImageFeatureRow, late) is None
    for i in (copy, late):
        assert not services.store.exists(keys[i]) and not services.store.exists(thumbnail_key(keys[i]))
    assert services.store.exists(keys[keep])
    assert services.queue.receive(max_messages=10, wait_seconds=0) == []
    assert duplicates.find_groups(engine=services.engine, viewer=ann, owner_id=ann.user_id) == []


# --------------------------------------------------------------------------- the rule itself


def _hashed(
    image_id: str, phash: str | None, *, sha: str = "", pixels: int = 100, age: int = 0
) -> HashedImage:
    return HashedImage(
        image_id=image_id,
        phash=phash,
        sha256=sha or image_id,
        width=pixels,
        height=1,
        created_at=utcnow() - timedelta(days=age),
    )


def _flip(h: str, bits: int, shift: int = 0) -> str:
    return f"{int(h, 16) ^ (((1 << bits) - 1) << shift):016x}"


def _blob(vec: np.ndarray) -> bytes:
    return (vec / np.linalg.norm(vec)).astype("<f2").tobytes()


def test_identical_files_group_and_embeddings_confirm_borderline_pairs() -> None:
    base = "9db8c2c7445dbb24"
    borderline = duplicates.STRICT_BITS + 2
    images = [
        _hashed("a", base, sha="same", age=2),
        _hashed("b", None, sha="same", age=1),  # the same bytes, not hashed yet
        _hashed("c", _flip(base, borderline), pixels=50),
        _hashed("d", _flip(base, borderline, 20), pixels=40),  # far from c and e as well
        _hashed("e", _flip(base, borderline, 40), pixels=30),
    ]
    rng = np.random.default_rng(0)
    v = rng.normal(size=64)
    embeddings = {
        "a": ("m", _blob(v)),
        "c": ("m", _blob(v + rng.normal(scale=0.05, size=64))),  # same picture: confirmed
        "d": ("m", _blob(rng.normal(size=64))),  # a different picture: not confirmed
        "e": ("other-model", _blob(v)),  # another model: not comparable
    }
    groups = duplicates.group(images, embeddings)
    assert len(groups) == 1
    assert groups[0].image_ids == ("a", "b", "c")  # keeper a (most pixels, older than b)
    assert duplicates.is_near_duplicate(duplicates.STRICT_BITS, None)
    assert not duplicates.is_near_duplicate(duplicates.LOOSE_BITS + 1, 1.0)


def test_close_pairs_matches_a_direct_count() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**63, size=3000, dtype=np.int64).view(np.uint64)
    values[1500:1600] = values[:100] ^ np.uint64(0b1011)  # 100 pairs 3 bits apart
    pairs = duplicates.close_pairs(values, 3)
    assert {(int(i), int(j)) for i, j, _ in pairs} == {(k, 1500 + k) for k in range(100)}
    assert all(int(d) == 3 for d in pairs[:, 2])
