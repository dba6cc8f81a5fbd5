"""Near-duplicates (labelkit.duplicates) through the real upload path and worker: a resized and a
recompressed copy are grouped with their original, a different photo is not, the largest copy
is the keeper, another user's copy is never grouped, embeddings confirm borderline pairs, the
upload says which photo a new one looks like, and deleting the rest removes objects, rows and
queue entries. The keeper rule (issue 24): a copy people labelled, then pixels, then bytes per
pixel, then the oldest; copying people's labels from a copy to its keeper (the keeper's own
verdicts win; another user's image is refused). SQLite and MariaDB. Photos from scikit-learn /
scikit-image (never the devset)."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelkit import duplicates, uploads
from labelkit.db import counts
from labelkit.db.engine import transaction
from labelkit.db.models import Image as ImageRow
from labelkit.db.models import ImageFeatureRow, LabelRow, LabelSource, ReviewState, utcnow
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.db.queries.duplicates import HashedImage
from labelkit.domain import Label, LabelResult, Viewer
from labelkit.errors import NotFound
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
    image_id: str,
    phash: str | None,
    *,
    sha: str = "",
    pixels: int = 100,
    nbytes: int = 1000,
    age: int = 0,
) -> HashedImage:
    return HashedImage(
        image_id=image_id,
        phash=phash,
        sha256=sha or image_id,
        width=pixels,
        height=1,
        bytes=nbytes,
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


# --------------------------------------------------------------------------- the keeper (issue 24)


def _review(s: Session, who: Viewer, image_id: str, name: str, review: ReviewState) -> None:
    label_q.set_human_label(session=s, viewer=who, image_id=image_id, name=name, review=review)


def _age(services: Services, image_id: str, days: int) -> None:
    """Make ``image_id`` ``days`` older (uploads a moment apart may share a second on MariaDB)."""
    with transaction(services.engine) as s:
        row = s.get_one(ImageRow, image_id)
        row.created_at = row.created_at - timedelta(days=days)


def test_the_original_is_kept_over_an_older_recompressed_copy_of_the_same_pixels(services: Services) -> None:
    # GIVEN a quality-35 re-save of a photo, uploaded first (the oldest), and the quality-95
    # original of the same pixels uploaded later: the case (38.7 kB kept over 119.7 kB)
    ann = _user(services, "ann")
    original = photo(1280, 854, noise=6)
    q35, q95 = _jpeg(original, quality=35), _jpeg(original, quality=95)
    assert len(q35) * 2 < len(q95)
    squashed = _upload(services, ann, "recompressed.jpg", q35)
    _age(services, squashed, 1)
    best = _upload(services, ann, "original.jpg", q95)
    drain(services)

    # WHEN the groups are found
    groups = duplicates.find_groups(engine=services.engine, viewer=ann, owner_id=ann.user_id)

    # THEN the original (same pixels, three times the bytes per pixel) is the keeper and the
    # recompressed copy is what "delete the rest" would delete
    assert len(groups) == 1
    assert groups[0].keeper == best
    assert groups[0].others == (squashed,)


def test_a_copy_people_labelled_is_kept_over_a_bigger_one_without(services: Services) -> None:
    # GIVEN a photo and a half-size copy of it that a person reviewed (its model label
    # rejected, another label added)
    ann = _user(services, "ann")
    original = photo(1280, 854, noise=0)
    big = _upload(services, ann, "original.jpg", _jpeg(original))
    small = _upload(services, ann, "small.jpg", _jpeg(original.resize((640, 427), Image.Resampling.LANCZOS)))
    drain(services)
    before = duplicates.find_groups(engine=services.engine, viewer=ann, owner_id=ann.user_id)
    assert [g.keeper for g in before] == [big]  # nobody labelled either yet: the bigger one
    with transaction(services.engine) as s:
        _review(s, ann, small, "Pagoda", ReviewState.CONFIRMED)
        _review(s, ann, small, "Tree", ReviewState.REJECTED)

    # WHEN the groups are found again, and when a grouping cached before the review is passed
    # through choose_keepers (what the page does on every run)
    after = duplicates.find_groups(engine=services.engine, viewer=ann, owner_id=ann.user_id)
    refreshed = duplicates.choose_keepers(
        engine=services.engine, viewer=ann, owner_id=ann.user_id, groups=before
    )

    # THEN the reviewed copy is the keeper, and the group says how many labels people gave it
    for groups in (after, refreshed):
        assert [g.keeper for g in groups] == [small]
        assert groups[0].others == (big,)
        assert groups[0].labels_by_people(small) == 2 and groups[0].labels_by_people(big) == 0
    # another user reads no facts of ann's photos: no groups
    bob = _user(services, "bob")
    assert (
        duplicates.choose_keepers(engine=services.engine, viewer=bob, owner_id=ann.user_id, groups=before)
        == []
    )


def test_keeper_rule_pixels_then_bytes_per_pixel_then_oldest_then_id() -> None:
    base = "9db8c2c7445dbb24"
    # GIVEN copies (all within the strict distance) that differ in one thing at a time
    more_pixels = [
        _hashed("wide", base, pixels=120, nbytes=500, age=0),  # more pixels, fewer bytes per pixel
        _hashed("dense", _flip(base, 2), pixels=100, nbytes=5000, age=9),
    ]
    denser = [
        _hashed("light", base, pixels=100, nbytes=400, age=9),  # older, more compressed
        _hashed("heavy", _flip(base, 2), pixels=100, nbytes=1200, age=0),
    ]
    older = [
        _hashed("new", base, pixels=100, nbytes=1000, age=0),
        _hashed("old", _flip(base, 2), pixels=100, nbytes=1000, age=3),
    ]
    # WHEN grouped THEN pixels beat bytes, bytes per pixel beat age, and age decides a tie
    assert duplicates.group(more_pixels)[0].keeper == "wide"
    assert duplicates.group(denser)[0].keeper == "heavy"
    assert duplicates.group(older)[0].keeper == "old"
    # a copy people labelled beats every one of those
    assert duplicates.group(more_pixels, human_labels={"dense": 1})[0].keeper == "dense"
    # and the image id settles a full tie, whatever the input order
    same = utcnow()
    twins = [
        HashedImage(image_id=i, phash=base, sha256=i, width=10, height=10, bytes=100, created_at=same)
        for i in ("b2", "a1")
    ]
    assert duplicates.group(twins)[0].keeper == duplicates.group(twins[::-1])[0].keeper == "a1"


# --------------------------------------------------------------------------- copying people's labels


def _human(services: Services, viewer: Viewer, image_id: str) -> dict[tuple[str, int], LabelRow]:
    with transaction(services.engine) as s:
        rows = label_q.labels_for_image(session=s, viewer=viewer, image_id=image_id)
        for r in rows:
            s.expunge(r)
    return {(r.name, r.instance): r for r in rows if r.source == LabelSource.HUMAN}


def test_copy_human_labels_to_the_keeper_keeps_the_keepers_own_verdicts(services: Services) -> None:
    # GIVEN a copy a person worked on (a label confirmed, one rejected, one added with its
    # parents, aliases, categories and two boxes; the model's "Cat" rejected, which implies
    # rejecting its roll-up parent "Feline"), and a keeper with its own verdict on "pagoda"
    ann = _user(services, "ann")
    original = photo(1280, 854, noise=0)
    keeper = _upload(services, ann, "original.jpg", _jpeg(original))
    copy = _upload(services, ann, "small.jpg", _jpeg(original.resize((640, 427))))
    with transaction(services.engine) as s:
        cat = Label(name="Cat", confidence=70.0, parents=["Feline"])
        feline = Label(name="Feline", confidence=70.0)
        worker_q.save_model_labels(
            session=s, image_id=copy, result=LabelResult(model_version="m-1", labels=[cat, feline])
        )
    with transaction(services.engine) as s:
        _review(s, ann, copy, "Pagoda", ReviewState.CONFIRMED)
        _review(s, ann, copy, "Tree", ReviewState.REJECTED)
        _review(s, ann, copy, "Cat", ReviewState.REJECTED)
        label_q.import_human_label(
            session=s,
            viewer=ann,
            image_id=copy,
            name="Lantern",
            review=ReviewState.CONFIRMED,
            parents=["Lamp"],
            aliases=["Paper lantern"],
            categories=["Home"],
            boxes=[(0.1, 0.2, 0.3, 0.4, 90.0), (0.5, 0.5, 0.2, 0.2, 80.0)],
        )
        _review(s, ann, keeper, "pagoda", ReviewState.REJECTED)
    on_copy = _human(services, ann, copy)
    assert on_copy[("Feline", 0)].implied_by == "Cat"  # no person's verdict: follows from "Cat"

    # WHEN its labels are copied to the keeper
    copied = duplicates.copy_human_labels(
        engine=services.engine, viewer=ann, source_id=copy, keeper_id=keeper
    )

    # THEN the three names a person gave and the keeper had no verdict on are copied with their
    # details and boxes; the keeper's own rejection of "pagoda" stands (any case); the implied
    # "Feline" is not made a person's verdict; the copy is untouched
    assert copied == 3
    kept = _human(services, ann, keeper)
    assert kept[("pagoda", 0)].review == ReviewState.REJECTED and ("Pagoda", 0) not in kept
    assert kept[("Tree", 0)].review == ReviewState.REJECTED
    assert kept[("Cat", 0)].review == ReviewState.REJECTED and kept[("Cat", 0)].implied_by is None
    assert ("Feline", 0) not in kept
    lantern = kept[("Lantern", 0)]
    assert lantern.review == ReviewState.CONFIRMED
    assert (lantern.parents, lantern.aliases, lantern.categories) == (["Lamp"], ["Paper lantern"], ["Home"])
    boxes = sorted(
        (r.box_left, r.box_top, r.box_width, r.box_height, r.confidence)
        for (name, inst), r in kept.items()
        if name == "Lantern" and inst > 0
    )
    assert boxes == [pytest.approx(b) for b in [(0.1, 0.2, 0.3, 0.4, 90.0), (0.5, 0.5, 0.2, 0.2, 80.0)]]
    assert _human(services, ann, copy).keys() == on_copy.keys()
    # the running totals and terms followed the writes (counts.counting): a rebuild agrees
    with transaction(services.engine) as s:
        running = counts.dump(s)
        counts.rebuild(s)
        assert counts.dump(s) == running
    # copying again adds nothing (the keeper now has a person's verdict on every name)
    assert (
        duplicates.copy_human_labels(engine=services.engine, viewer=ann, source_id=copy, keeper_id=keeper)
        == 0
    )


def test_copy_human_labels_refuses_another_users_image(services: Services) -> None:
    # GIVEN ann's labelled copy and keeper, and bob's own photo
    ann, bob = _user(services, "ann"), _user(services, "bob")
    original = photo(1280, 854, noise=0)
    keeper = _upload(services, ann, "original.jpg", _jpeg(original))
    copy = _upload(services, ann, "small.jpg", _jpeg(original.resize((640, 427))))
    bobs = _upload(services, bob, "mine.jpg", _jpeg(_other_photo()))
    with transaction(services.engine) as s:
        _review(s, ann, copy, "Pagoda", ReviewState.CONFIRMED)
    admin = Viewer(user_id=ann.user_id, is_admin=True)

    # WHEN bob copies ann's labels (to ann's keeper, or to his own photo), or ann copies to
    # bob's photo, THEN each is NotFound and nothing is written
    for viewer, source, target in (
        (bob, copy, keeper),
        (bob, copy, bobs),
        (ann, copy, bobs),
        (ann, bobs, keeper),
    ):
        with pytest.raises(NotFound):
            duplicates.copy_human_labels(
                engine=services.engine, viewer=viewer, source_id=source, keeper_id=target
            )
    # and an administrator, who sees both, may not copy across owners
    with pytest.raises(ValueError, match="different people"):
        duplicates.copy_human_labels(engine=services.engine, viewer=admin, source_id=copy, keeper_id=bobs)
    assert _human(services, ann, keeper) == {}
    assert _human(services, bob, bobs) == {}


def test_delete_copies_copies_labels_first_and_never_deletes_a_keeper(services: Services) -> None:
    # GIVEN a keeper and two copies, one of them labelled by a person
    ann = _user(services, "ann")
    original = photo(1280, 854, noise=0)
    keeper = _upload(services, ann, "original.jpg", _jpeg(original))
    labelled = _upload(services, ann, "small.jpg", _jpeg(original.resize((640, 427))))
    plain = _upload(services, ann, "q40.jpg", _jpeg(original, quality=40))
    with transaction(services.engine) as s:
        _review(s, ann, labelled, "Pagoda", ReviewState.CONFIRMED)

    # WHEN both copies are deleted with their labels copied (the keeper listed as a copy too)
    result = uploads.delete_copies(
        services=services,
        viewer=ann,
        keepers={labelled: keeper, plain: keeper, keeper: keeper},
        copy_labels=True,
    )

    # THEN the copies are gone, the keeper stays and carries the person's label
    assert set(result.deleted) == {labelled, plain} and result.labels_copied == 1
    with transaction(services.engine) as s:
        assert s.get(ImageRow, keeper) is not None
        assert s.get(ImageRow, labelled) is None and s.get(ImageRow, plain) is None
    assert _human(services, ann, keeper)[("Pagoda", 0)].review == ReviewState.CONFIRMED
