"""Thresholds from reviews (issue 27 item 3), on SQLite and MariaDB: per label the review
precision with its interval and the lowest minimum confidence keeping the target; applying it
hides the machine label below it everywhere (filters, counts) for that person only, never a
person's own label; clearing it brings them back; an admin's minimum for everyone gives way to
a person's own. The running totals stay exactly a rebuild's."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from labelkit import thresholds
from labelkit.db import counts
from labelkit.db.engine import transaction
from labelkit.db.models import ALL_OWNERS, ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import Label, LabelResult, Viewer
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.uploads import upload_image


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)


def _user(services: Services, name: str) -> Viewer:
    with transaction(services.engine) as s:
        return Viewer(user_id=user_q.create_user(session=s, username=name, password_hash="x").id)


def _photo_with_cat(services: Services, who: Viewer, i: int, confidence: float) -> str:
    out = io.BytesIO()
    pixels = np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    PILImage.fromarray(pixels).save(out, format="PNG")
    r = upload_image(services=services, owner_id=who.user_id, filename=f"p{i}.png", data=out.getvalue())
    assert r.image_id is not None, r
    with transaction(services.engine) as s:
        worker_q.save_model_labels(
            session=s,
            image_id=r.image_id,
            result=LabelResult(model_version="m-1", labels=[Label(name="Cat", confidence=confidence)]),
        )
    return r.image_id


def _verdict(services: Services, who: Viewer, image_id: str, review: ReviewState) -> None:
    with transaction(services.engine) as s:
        label_q.set_human_label(session=s, viewer=who, image_id=image_id, name="Cat", review=review)


def _cats(services: Services, who: Viewer) -> set[str]:
    with transaction(services.engine) as s:
        page = image_q.list_images(session=s, viewer=who, flt=image_q.ImageFilter(label="Cat"), page_size=100)
    return {i.id for i in page.items}


def _totals_exact(services: Services) -> None:
    with transaction(services.engine) as s:
        running = counts.dump(s)
        counts.rebuild(s)
        assert counts.dump(s) == running


def test_a_minimum_from_reviews_hides_the_doubtful_labels_of_one_person(services: Services) -> None:
    alice, bob = _user(services, "alice"), _user(services, "bob")
    # GIVEN alice's Cats: she confirmed the six at 50-100 and rejected four at 10-40; three
    # more (15, 25, 35) nobody reviewed; and bob's Cat at 20
    reviewed = {
        c: _photo_with_cat(services, alice, c, float(c)) for c in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    }
    unreviewed = {c: _photo_with_cat(services, alice, 200 + c, float(c)) for c in (15, 25, 35)}
    bobs = _photo_with_cat(services, bob, 999, 20.0)
    for c, image_id in reviewed.items():
        _verdict(services, alice, image_id, ReviewState.CONFIRMED if c >= 50 else ReviewState.REJECTED)
    # WHEN the review figures are read with a 90% target
    (cat,) = thresholds.from_reviews(services.engine, owner_id=alice.user_id, target=0.9)
    # THEN Cat: 10 reviews, 60% right (95% interval around it), 50 suggested, 9 photos now, 6 after
    assert (cat.name, cat.reviewed, cat.confirmed, cat.suggested) == ("Cat", 10, 6, 50.0)
    assert cat.low < 0.6 < cat.high and cat.interval_text().startswith("60% (")
    assert (cat.floor, cat.images_now, cat.images_after) == (None, 9, 6)

    # WHEN alice applies it
    thresholds.apply(
        services.engine, owner_id=alice.user_id, name="Cat", min_confidence=50.0, set_by=alice.user_id
    )
    # THEN her unreviewed Cats below 50 are not carried any more; bob's Cat at 20 still is
    assert _cats(services, alice) == {reviewed[c] for c in (50, 60, 70, 80, 90, 100)}
    assert _cats(services, bob) == {bobs}
    (cat,) = thresholds.from_reviews(services.engine, owner_id=alice.user_id, target=0.9)
    assert (cat.floor, cat.images_now) == (50.0, 6)
    _totals_exact(services)
    # AND a Cat she confirms below the minimum is hers: it stays
    _verdict(services, alice, unreviewed[15], ReviewState.CONFIRMED)
    assert unreviewed[15] in _cats(services, alice)
    # AND clearing the minimum brings the rest back
    thresholds.apply(
        services.engine, owner_id=alice.user_id, name="Cat", min_confidence=None, set_by=alice.user_id
    )
    assert _cats(services, alice) == {reviewed[c] for c in (50, 60, 70, 80, 90, 100)} | set(
        unreviewed.values()
    )
    _totals_exact(services)


def test_a_minimum_for_everyone_gives_way_to_a_persons_own(services: Services) -> None:
    admin, bob = _user(services, "admin"), _user(services, "bob")
    low, high = _photo_with_cat(services, bob, 1, 20.0), _photo_with_cat(services, bob, 2, 80.0)
    # WHEN an admin sets Cat >= 50 for everyone
    thresholds.apply(
        services.engine, owner_id=ALL_OWNERS, name="cat", min_confidence=50.0, set_by=admin.user_id
    )
    # THEN bob's Cat at 20 is hidden (the name matched in any case)
    assert _cats(services, bob) == {high}
    # AND once bob sets his own lower minimum, his wins
    thresholds.apply(
        services.engine, owner_id=bob.user_id, name="Cat", min_confidence=10.0, set_by=bob.user_id
    )
    assert _cats(services, bob) == {low, high}
    _totals_exact(services)


def test_a_minimum_outside_0_to_100_is_refused(services: Services) -> None:
    bob = _user(services, "bob")
    for bad in (-1.0, 101.0, float("nan")):
        with pytest.raises(ValueError, match="between 0 and 100"):
            thresholds.apply(
                services.engine, owner_id=bob.user_id, name="Cat", min_confidence=bad, set_by="x"
            )
