"""Two users: bob must not see or change alice's images anywhere in the dashboard."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus, LabelRow, LabelSource
from labelkit.db.queries import images as image_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import Viewer
from labelkit.services import Services
from tests.dashboard.conftest import BLUE, RED, app, drain, texts, upload


@pytest.fixture
def alices_image(services: Services, alice: Principal, bob: Principal) -> str:
    image_id = upload(services, alice, "alice-secret.jpg", RED)
    upload(services, bob, "bob.jpg", BLUE)
    drain(services)
    return image_id


def _everything(at: AppTest) -> str:
    return texts(at) + "\n".join(str(d.value.to_dict()) for d in at.dataframe)


@pytest.mark.parametrize(
    "page", ["app_pages/gallery.py", "app_pages/labels.py", "app_pages/review.py", "app_pages/upload.py"]
)
def test_other_users_images_appear_on_no_page(
    services: Services, alice: Principal, bob: Principal, alices_image: str, page: str
) -> None:
    at = app(bob, page, label="Red Thing")
    assert not at.exception
    shown = _everything(at)
    assert "alice-secret" not in shown and "Red Thing" not in shown
    if page == "app_pages/labels.py":
        assert sorted(at.dataframe[0].value["label"]) == ["Blue Thing", "Thing"]  # bob's own only


def test_other_users_image_page_looks_missing_and_offers_no_actions(
    services: Services, bob: Principal, alices_image: str
) -> None:
    mine = app(bob, "app_pages/image.py", image=alices_image)
    missing = app(bob, "app_pages/image.py", image="0" * 32)
    assert [t.value for t in mine.title] == [t.value for t in missing.title] == ["Image not found"]
    assert texts(mine) == texts(missing)
    assert not [
        b for b in mine.button if b.key and b.key.startswith(("confirm", "reject", "delete", "retry"))
    ]


def test_actions_on_other_users_image_change_nothing(
    services: Services, alice: Principal, bob: Principal, alices_image: str
) -> None:
    # GIVEN bob with alice's image open in a stale tab (it was never his: the page refuses)
    with transaction(services.engine) as s:
        worker_q.mark_failed(session=s, image_id=alices_image, reason="boom")
    at = app(bob, "app_pages/image.py", image=alices_image)
    assert "Image not found" in texts(at)
    # WHEN bob uses the use cases the page would call, with alice's id
    from labelkit.errors import NotFound
    from labelkit.uploads import delete_image, retry_image

    with pytest.raises(NotFound):
        retry_image(services=services, viewer=bob.viewer, image_id=alices_image)
    with pytest.raises(NotFound):
        delete_image(services=services, viewer=bob.viewer, image_id=alices_image)
    # THEN alice's image is untouched
    with transaction(services.engine) as s:
        img = image_q.get_image(session=s, viewer=alice.viewer, image_id=alices_image)
        humans = s.scalar(
            select(func.count()).select_from(LabelRow).where(LabelRow.source == LabelSource.HUMAN)
        )
    assert img.status == ImageStatus.FAILED and humans == 0


def test_review_actions_only_reach_own_labels(
    services: Services, alice: Principal, bob: Principal, alices_image: str
) -> None:
    at = app(bob, "app_pages/review.py")
    with transaction(services.engine) as s:
        # alice is the admin: scope to her own images to get "her" labels
        alice_rows = review_q.review_queue(session=s, viewer=Viewer(user_id=alice.user_id))
        bob_rows = review_q.review_queue(session=s, viewer=bob.viewer)
    keys = {b.key for b in at.button}
    assert all(f"accept::{r.image_id}::{r.name}" not in keys for r in alice_rows)
    assert all(f"accept::{r.image_id}::{r.name}" in keys for r in bob_rows)
    assert not any(r.image_id in (k or "") for r in alice_rows for k in keys)
    # "select all" covers every photo bob may review, and only those
    at.checkbox(key="review_select_all").check().run()
    at.button(key="accept_selected").click().run()
    with transaction(services.engine) as s:
        assert review_q.count_review_queue(session=s, viewer=Viewer(user_id=alice.user_id)) == len(alice_rows)
        assert review_q.count_review_queue(session=s, viewer=bob.viewer) == 0


def test_admin_sees_everyones_images(
    services: Services, alice: Principal, bob: Principal, alices_image: str
) -> None:
    at = app(alice, "app_pages/gallery.py")
    assert "bob.jpg" in texts(at) and "alice-secret.jpg" in texts(at)
    with transaction(services.engine) as s:
        bobs = image_q.list_images(session=s, viewer=bob.viewer).items[0].id
    at = app(alice, "app_pages/image.py", image=bobs)
    assert "owner bob" in texts(at)


def test_a_non_admin_opening_the_pipeline_is_told_it_is_for_admins(
    services: Services, alice: Principal, bob: Principal, alices_image: str
) -> None:
    # GIVEN bob (not an admin) opening the pipeline page's URL (the menu does not offer it)
    at = app(bob, "app_pages/pipeline.py")
    assert not at.exception
    # THEN the page says why it shows nothing, and shows none of the pipeline
    assert "Only admins can see the pipeline" in texts(at)
    assert not at.metric and not at.dataframe
    assert not [b for b in at.button if b.key and b.key.startswith(("retry", "redrive"))]
    # WHEN alice (the admin) opens it THEN she sees the pipeline
    at = app(alice, "app_pages/pipeline.py")
    assert "Only admins" not in texts(at)
    assert [m.label for m in at.metric][:3] == ["Waiting in queue", "In flight", "Dead letters"]
