"""The Duplicates page (AppTest over the real entry point, SQLite and MariaDB): a resized copy
is shown in one group with its original marked as the keeper; "keep suggested, delete the rest"
asks first, then deletes the copy; a user sees only their own. The upload page names the photo a
new upload looks like."""

from __future__ import annotations

import io

from PIL import Image

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.queries import images as image_q
from labelkit.services import Services
from labelkit.testing.photos import photo
from tests.dashboard.conftest import app, drain, texts, upload

PAGE = "app_pages/duplicates.py"


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def test_duplicates_page_shows_a_group_and_deletes_the_rest(
    services: Services, alice: Principal, bob: Principal
) -> None:
    original = photo(1200, 800, noise=0)
    keep = upload(services, alice, "original.jpg", _jpeg(original))
    copy = upload(services, alice, "half.jpg", _jpeg(original.resize((600, 400)), 60))
    upload(services, bob, "bobs-copy.jpg", _jpeg(original.resize((900, 600))))
    drain(services)

    at = app(alice, PAGE)
    shown = texts(at)
    assert "Group 1 · 2 photos" in shown and "Keep" in shown
    assert "original.jpg" in shown and "half.jpg" in shown and "bobs-copy.jpg" not in shown

    at.button(key="dup_delete_0").click().run()
    assert "cannot be undone" in texts(at)
    at.button(key="dup_delete_cancel").click().run()
    with transaction(services.engine) as s:
        assert image_q.list_images(session=s, viewer=alice.viewer).total == 3  # admin: all owners'

    at.button(key="dup_delete_0").click().run()
    at.button(key="dup_delete_confirm").click().run()
    with transaction(services.engine) as s:
        left = image_q.images_by_ids(session=s, viewer=alice.viewer, image_ids=[keep, copy])
    assert set(left) == {keep}
    assert "Deleted 1 photo." in texts(at)
    assert "No duplicates found." in texts(at)

    # bob has one photo of it: no group, and never alice's
    at_bob = app(bob, PAGE)
    assert "No duplicates found." in texts(at_bob)


def test_upload_page_says_what_a_new_photo_looks_like(services: Services, alice: Principal) -> None:
    original = photo(1200, 800, noise=0)
    upload(services, alice, "beach.jpg", _jpeg(original))
    at = app(alice, "app_pages/upload.py")
    at.file_uploader[0].set_value([("beach-small.jpg", _jpeg(original.resize((400, 267)), 50), "image/jpeg")])
    at.run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["1", "0", "0"]  # accepted all the same
    assert "Looks like **beach.jpg** you already have" in texts(at)
