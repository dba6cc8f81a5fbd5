"""The Duplicates page (AppTest over the real entry point, SQLite and MariaDB): a resized copy
is shown in one group with its original marked as the keeper; "keep the marked photo, delete the
rest" asks first, then deletes the copy; a user sees only their own. Another keeper can be picked
per group, and "delete all but the keepers" respects every pick; deleting a copy people labelled
warns first and can copy its labels to the keeper. The upload page names the photo a new upload
looks like."""

from __future__ import annotations

import io

import skimage.data
from PIL import Image

from labelkit import duplicates
from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import LabelSource, ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
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
    assert "Group 1 · 2 photos" in shown and "Keep · suggested" in shown
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


def _tile(services: Services, who: Principal, image_id: str) -> tuple[int, int]:
    """(group index, tile index) of ``image_id`` as the page lays them out (the use case's order)."""
    groups = duplicates.find_groups(engine=services.engine, viewer=who.viewer, owner_id=who.user_id)
    for gi, g in enumerate(groups):
        if image_id in g.image_ids:
            return gi, g.image_ids.index(image_id)
    raise AssertionError(f"{image_id} is in no group")


def _left(services: Services, who: Principal, ids: list[str]) -> set[str]:
    with transaction(services.engine) as s:
        return set(image_q.images_by_ids(session=s, viewer=who.viewer, image_ids=ids))


def test_another_keeper_can_be_picked_and_delete_all_respects_it(
    services: Services, alice: Principal
) -> None:
    # GIVEN two groups, each an original and a half-size copy (the originals suggested)
    china = photo(1200, 800, noise=0)
    astronaut = Image.fromarray(skimage.data.astronaut())
    china_big = upload(services, alice, "china.jpg", _jpeg(china))
    china_small = upload(services, alice, "china-small.jpg", _jpeg(china.resize((600, 400)), 60))
    astro_big = upload(services, alice, "astronaut.jpg", _jpeg(astronaut))
    astro_small = upload(services, alice, "astronaut-small.jpg", _jpeg(astronaut.resize((256, 256)), 60))
    drain(services)
    at = app(alice, PAGE)
    assert texts(at).count("Keep · suggested") == 2 and "Keep · your choice" not in texts(at)

    # WHEN alice picks the small china copy as its group's keeper
    gi, k = _tile(services, alice, china_small)
    at.button(key=f"dup_keep_{gi}_{k}").click().run()

    # THEN that group marks her choice, the other keeps its suggestion, and the pick survives a rerun
    assert not at.exception
    assert texts(at).count("Keep · suggested") == 1 and texts(at).count("Keep · your choice") == 1
    at.run()
    assert texts(at).count("Keep · your choice") == 1

    # WHEN every group's rest is deleted at once
    at.button(key="dup_delete_all").click().run()
    assert "every photo but the keepers (2 photos)" in texts(at)
    at.button(key="dup_delete_confirm").click().run()

    # THEN the china original went (her pick stayed) and the astronaut's copy went (the suggestion stayed)
    assert _left(services, alice, [china_big, china_small, astro_big, astro_small]) == {
        china_small,
        astro_big,
    }
    assert "Deleted 2 photos." in texts(at)


def test_deleting_a_copy_people_labelled_warns_and_can_copy_its_labels(
    services: Services, alice: Principal
) -> None:
    # GIVEN an original alice confirmed "Pagoda" on, and a half-size copy she reviewed too
    # ("Pagoda" rejected there, "Lantern" added): both labelled, so the bigger one is suggested
    original = photo(1200, 800, noise=0)
    keep = upload(services, alice, "original.jpg", _jpeg(original))
    copy = upload(services, alice, "half.jpg", _jpeg(original.resize((600, 400)), 60))
    drain(services)
    with transaction(services.engine) as s:
        for image_id, name, review in (
            (keep, "Pagoda", ReviewState.CONFIRMED),
            (copy, "Pagoda", ReviewState.REJECTED),
            (copy, "Lantern", ReviewState.CONFIRMED),
        ):
            label_q.set_human_label(
                session=s, viewer=alice.viewer, image_id=image_id, name=name, review=review
            )
    at = app(alice, PAGE)
    assert "2 labels added or reviewed by people" in texts(at)

    # WHEN she deletes the rest of the group
    at.button(key="dup_delete_0").click().run()

    # THEN the dialog warns that the copy carries people's work, and offers to copy it
    shown = texts(at)
    assert "1 photo of these carries people's work: 2 labels added, confirmed or rejected" in shown
    assert at.button(key="dup_delete_copy").label == "Copy their labels to the keeper, then delete"
    assert at.button(key="dup_delete_confirm").label == "Delete without copying"

    # WHEN she cancels THEN nothing is deleted
    at.button(key="dup_delete_cancel").click().run()
    assert _left(services, alice, [keep, copy]) == {keep, copy}

    # WHEN she copies the labels, then deletes
    at.button(key="dup_delete_0").click().run()
    at.button(key="dup_delete_copy").click().run()

    # THEN the copy is gone and the keeper carries "Lantern", its own "Pagoda" confirmation kept
    assert not at.exception
    assert _left(services, alice, [keep, copy]) == {keep}
    assert "Copied 1 label to the keepers. Deleted 1 photo." in texts(at)
    with transaction(services.engine) as s:
        human = {
            r.name: r.review
            for r in label_q.labels_for_image(session=s, viewer=alice.viewer, image_id=keep)
            if r.source == LabelSource.HUMAN
        }
    assert human == {"Pagoda": ReviewState.CONFIRMED, "Lantern": ReviewState.CONFIRMED}


def test_the_confirm_deletes_exactly_what_the_dialog_counted(services: Services, alice: Principal) -> None:
    """Issue 25 finding 4: the groups and keepers were worked out again when "Yes, delete" was
    clicked, so a copy arriving meanwhile (bigger, so the new suggested keeper) got the photo
    the dialog said it would keep deleted, and 2 photos went where it said 1."""
    original = photo(1200, 800, noise=0)
    keep = upload(services, alice, "original.jpg", _jpeg(original))
    copy = upload(services, alice, "half.jpg", _jpeg(original.resize((600, 400)), 60))
    drain(services)
    at = app(alice, PAGE)
    # GIVEN the dialog open for group 1: delete half.jpg, keep original.jpg
    at.button(key="dup_delete_0").click().run()
    assert "(1 photo)" in texts(at)
    # WHEN a bigger copy arrives before the person answers
    bigger = upload(services, alice, "bigger.jpg", _jpeg(original.resize((1500, 1000))))
    drain(services)
    at.button(key="dup_delete_confirm").click().run()
    # THEN exactly the photo the dialog counted went; the keeper it named and the newcomer stay
    with transaction(services.engine) as s:
        left = image_q.images_by_ids(session=s, viewer=alice.viewer, image_ids=[keep, copy, bigger])
    assert set(left) == {keep, bigger}
    assert "Deleted 1 photo." in texts(at)


def test_a_copy_is_not_deleted_when_its_keeper_went_meanwhile(services: Services, alice: Principal) -> None:
    from labelkit.uploads import delete_copies, delete_image

    original = photo(1200, 800, noise=0)
    keep = upload(services, alice, "original.jpg", _jpeg(original))
    copy = upload(services, alice, "half.jpg", _jpeg(original.resize((600, 400)), 60))
    drain(services)
    # GIVEN the keeper deleted in another tab after the dialog was shown
    delete_image(services=services, viewer=alice.viewer, image_id=keep)
    # WHEN the dialog's delete runs THEN the last copy of the photo stays
    result = delete_copies(services=services, viewer=alice.viewer, keepers={copy: keep}, copy_labels=False)
    assert result.deleted == []
    with transaction(services.engine) as s:
        assert set(image_q.images_by_ids(session=s, viewer=alice.viewer, image_ids=[copy])) == {copy}
