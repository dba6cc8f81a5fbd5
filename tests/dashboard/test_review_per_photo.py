"""Review per photo (issue 16, item 3): one entry per photo with all its labels awaiting
review and their boxes, accept / reject per label or per photo, keyboard shortcuts on the
current photo, select-all across pages, and the gallery's review filter."""

from __future__ import annotations

import re

from sqlalchemy import select

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import LabelRow, LabelSource, ReviewState
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import reviews as review_q
from labelkit.services import Services
from tests.dashboard.conftest import BLUE, GREEN, RED, app, drain, elements, jpeg, texts, upload


def _card_ids(at) -> list[str]:
    ids = []
    for b in elements(at, "button"):
        key = b.key or ""
        if key.startswith("accept_all::"):
            ids.append(key.split("::", 1)[1])
    return ids


def _human(services: Services) -> dict[tuple[str, str], ReviewState]:
    with transaction(services.engine) as s:
        return {
            (r.image_id, r.name): r.review
            for r in s.scalars(
                select(LabelRow).where(LabelRow.source == LabelSource.HUMAN, LabelRow.instance == 0)
            )
        }


def test_each_photo_is_listed_once_with_all_its_labels_and_boxes(
    services: Services, alice: Principal
) -> None:
    # GIVEN three labelled photos, each with two model labels (one of them with a box)
    ids = [
        upload(services, alice, n, d) for n, d in (("red.jpg", RED), ("green.jpg", GREEN), ("blue.jpg", BLUE))
    ]
    drain(services)
    # WHEN alice opens the review page
    at = app(alice, "app_pages/review.py")
    assert not at.exception
    # THEN there is one entry per photo (not one per label), each with both of its labels
    cards = _card_ids(at)
    assert sorted(cards) == sorted(ids) and len(cards) == 3
    assert "3 photos with 6 labels waiting for review" in texts(at)
    keys = {b.key for b in elements(at, "button")}
    for image_id, colour in zip(ids, ("Red", "Green", "Blue"), strict=True):
        for name in (f"{colour} Thing", "Thing"):
            assert {f"accept::{image_id}::{name}", f"reject::{image_id}::{name}"} <= keys
    assert "1 box" in texts(at)  # the label with a box says so, and the photo is drawn with it
    assert len(at.image) == 3
    # WHEN she rejects all of one photo's labels
    at.button(key=f"reject_all::{cards[1]}").click().run()
    # THEN both its labels are rejected and it leaves the queue; the others are untouched
    human = _human(services)
    assert set(human.values()) == {ReviewState.REJECTED}
    assert {i for i, _ in human} == {cards[1]}
    assert len(human) == 2
    assert sorted(_card_ids(at)) == sorted(set(ids) - {cards[1]})
    assert "2 photos with 4 labels waiting for review" in texts(at)


def test_keyboard_shortcuts_act_on_the_current_photo(services: Services, alice: Principal) -> None:
    for n, d in (("red.jpg", RED), ("green.jpg", GREEN), ("blue.jpg", BLUE)):
        upload(services, alice, n, d)
    drain(services)
    at = app(alice, "app_pages/review.py")
    first, second, third = _card_ids(at)

    def shortcuts() -> dict[str, str]:
        return {b.key: b.proto.shortcut.upper() for b in elements(at, "button") if b.proto.shortcut}

    # GIVEN the first photo is current: A accepts all its labels, X rejects them, N / P move
    assert shortcuts() == {
        f"accept_all::{first}": "A",
        f"reject_all::{first}": "X",
        "review_next": "N",
        "review_previous": "P",
    }
    # WHEN "next" is pressed (the N key clicks this button) THEN the second photo is current
    at.button(key="review_next").click().run()
    assert shortcuts()[f"accept_all::{second}"] == "A"
    assert f"accept_all::{first}" not in shortcuts()
    # WHEN A is pressed THEN every label of the current photo is accepted, and the photo
    # after it becomes current
    at.button(key=f"accept_all::{second}").click().run()
    human = _human(services)
    assert len(human) == 2 and {i for i, _ in human} == {second}
    assert set(human.values()) == {ReviewState.CONFIRMED}
    assert _card_ids(at) == [first, third]
    assert shortcuts()[f"accept_all::{third}"] == "A"
    # and "previous" goes back
    at.button(key="review_previous").click().run()
    assert shortcuts()[f"accept_all::{first}"] == "A"


def test_select_all_acts_on_every_page(services: Services, alice: Principal) -> None:
    # GIVEN more photos awaiting review than one page shows
    ids = [upload(services, alice, f"p{i}.jpg", jpeg((250 - 10 * i, 10 * i, 0))) for i in range(8)]
    drain(services)
    at = app(alice, "app_pages/review.py")
    assert len(_card_ids(at)) == 5  # a page
    # WHEN one photo is ticked on page 1 and another on page 2
    page1 = _card_ids(at)[0]
    at.checkbox(key=f"rsel::{page1}").check().run()
    at.session_state["review_page"] = 2
    at.run()
    assert len(_card_ids(at)) == 3 and page1 not in _card_ids(at)
    page2 = _card_ids(at)[0]
    at.checkbox(key=f"rsel::{page2}").check().run()
    # THEN "reject selected" acts on both (the selection survives turning the page)
    assert at.button(key="reject_selected").proto.label == "Reject selected (2)"
    at.button(key="reject_selected").click().run()
    assert {i for (i, _) in _human(services)} == {page1, page2}
    assert "6 photos" in texts(at)
    # WHEN "select all" is ticked THEN accepting covers every photo on every page
    at.checkbox(key="review_select_all").check().run()
    assert at.button(key="accept_selected").proto.label == "Accept selected (6)"
    at.button(key="accept_selected").click().run()
    assert "Nothing to review" in texts(at)
    human = _human(services)
    assert {i for (i, _) in human} == set(ids) and len(human) == 16
    assert sum(r == ReviewState.REJECTED for r in human.values()) == 4  # earlier answers kept


def test_gallery_filters_by_review_state(services: Services, alice: Principal) -> None:
    # GIVEN one photo fully reviewed, one with a rejection still partly awaiting, one untouched
    done, partly, untouched = (
        upload(services, alice, n, d)
        for n, d in (("done.jpg", RED), ("partly.jpg", GREEN), ("new.jpg", BLUE))
    )
    drain(services)
    with transaction(services.engine) as s:
        review_q.set_review_for_images(
            session=s, viewer=alice.viewer, image_ids=[done], review=ReviewState.CONFIRMED
        )
        label_q.set_human_label(
            session=s, viewer=alice.viewer, image_id=partly, name="Thing", review=ReviewState.REJECTED
        )
    at = app(alice, "app_pages/gallery.py")

    def names() -> list[str]:
        return sorted(
            m.value.strip("*").replace("\\", "") for m in at.main.markdown if m.value.startswith("**")
        )

    assert names() == ["done.jpg", "new.jpg", "partly.jpg"]
    at.selectbox(key="flt_review").set_value("unreviewed").run()
    assert names() == ["new.jpg", "partly.jpg"]
    at.selectbox(key="flt_review").set_value("reviewed").run()
    assert names() == ["done.jpg"]
    at.selectbox(key="flt_review").set_value("rejected").run()
    assert names() == ["partly.jpg"]
    assert untouched not in (done, partly)


def _marked(at) -> list[str]:
    """The photos whose block the page's style marks as current (a coloured border)."""
    bodies = [e.proto.body for e in elements(at, "html")]
    return [m for b in bodies for m in re.findall(r"div\.st-key-photo--(\w+) \{ border", b)]


SCROLL_MARK = '<script data-labelkit="review-scroll">'


def _scrolls_to(at) -> list[str]:
    """The photos whose block a script of the page brings into view."""
    scripts = [e.proto for e in elements(at, "html") if SCROLL_MARK in e.proto.body]
    assert all(p.unsafe_allow_javascript for p in scripts)  # else the browser ignores them
    return [m for p in scripts for m in re.findall(r'querySelector\("div\.st-key-photo--(\w+)"\)', p.body)]


def test_the_current_photo_is_marked_and_brought_into_view_after_a_key(
    services: Services, alice: Principal
) -> None:
    for n, d in (("red.jpg", RED), ("green.jpg", GREEN), ("blue.jpg", BLUE)):
        upload(services, alice, n, d)
    drain(services)
    # GIVEN the review page as first opened: the first photo is marked current, and nothing
    # scrolls (the title and the bulk actions stay in view)
    at = app(alice, "app_pages/review.py")
    first, second, third = _card_ids(at)
    assert _marked(at) == [first] and _scrolls_to(at) == []
    # WHEN N (next photo) is pressed
    at.button(key="review_next").click().run()
    # THEN the second photo is marked and the browser is told to bring it into view
    assert _marked(at) == [second] and _scrolls_to(at) == [second]
    first_script = next(e.proto.body for e in elements(at, "html") if SCROLL_MARK in e.proto.body)
    # WHEN a photo is ticked (no key, no review) THEN the page does not scroll
    at.checkbox(key=f"rsel::{third}").check().run()
    assert _marked(at) == [second] and _scrolls_to(at) == []
    # WHEN X rejects the current photo THEN the next one is marked and brought into view
    at.button(key=f"reject_all::{second}").click().run()
    assert _card_ids(at) == [first, third]
    assert _marked(at) == [third] and _scrolls_to(at) == [third]
    # WHEN P goes back THEN the first photo is brought into view, by a script that differs
    # from every earlier one (the browser runs a script again only when it changes)
    at.button(key="review_previous").click().run()
    assert _scrolls_to(at) == [first]
    assert first_script not in [e.proto.body for e in elements(at, "html")]


def test_a_user_without_photos_is_told_to_upload_some(
    services: Services, alice: Principal, bob: Principal
) -> None:
    # GIVEN alice, whose only photo has every label reviewed, and bob, who has no photo
    image_id = upload(services, alice, "red.jpg", RED)
    drain(services)
    with transaction(services.engine) as s:
        review_q.set_review_for_images(
            session=s, viewer=alice.viewer, image_ids=[image_id], review=ReviewState.CONFIRMED
        )
    # WHEN bob opens the review page
    at = app(bob, "app_pages/review.py")
    assert not at.exception
    # THEN it says he has no photos yet and links to the upload page; it does not claim
    # that every label has been looked at
    assert "No photos yet — upload some" in texts(at)
    assert "Nothing to review" not in texts(at)
    assert [p.proto.page for p in elements(at, "page_link")] == ["upload"]  # the Upload page's URL
    # WHEN alice opens it THEN she is told that everything has been reviewed
    at = app(alice, "app_pages/review.py")
    assert "Nothing to review — every label has been looked at" in texts(at)
    assert "No photos yet" not in texts(at)


def test_photos_still_being_labelled_are_not_called_reviewed(services: Services, bob: Principal) -> None:
    # GIVEN bob's photo, uploaded but not labelled yet
    upload(services, bob, "red.jpg", RED)
    # WHEN he opens the review page THEN it says the labels are on their way, not that all is done
    at = app(bob, "app_pages/review.py")
    assert not at.exception
    assert "Nothing to review yet: 1 photo still being labelled" in texts(at)
    assert "every label has been looked at" not in texts(at)
    # AND once it is labelled, its labels wait for review
    drain(services)
    at = app(bob, "app_pages/review.py")
    assert "1 photo with" in texts(at)
