"""The gallery's view in the URL (dashboard.gallery_state) and sign-in deep links
(dashboard.deep_link): parsing is tolerant, writing is minimal, and no ``next`` leads
outside the app."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dashboard import deep_link
from dashboard import gallery_state as gs
from dashboard.navigation import Page
from labelkit.db.models import ImageStatus
from labelkit.db.queries.images import ImageFilter, ReviewFilter

FULL = {
    "label": "Red Thing",
    "conf": "80",
    "status": "labelled",
    "category": "Animals",
    "review": "unreviewed",
    "from": "2026-01-01",
    "to": "2026-01-31",
    "owner": "bob",
    "page": "3",
}


def test_a_view_round_trips_through_the_url_and_defaults_stay_out_of_it() -> None:
    view = gs.GalleryState.from_params(FULL)
    assert view == gs.GalleryState(
        label="Red Thing",
        min_conf=80,
        status=ImageStatus.LABELLED,
        category="Animals",
        review=ReviewFilter.UNREVIEWED,
        since=date(2026, 1, 1),
        until=date(2026, 1, 31),
        owner="bob",
        page=3,
    )
    assert view.to_params() == FULL
    assert gs.GalleryState().to_params() == {}
    assert gs.gallery_params({"image": "abc", **FULL}) == FULL  # the image page's URL


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"conf": "abc", "page": "-4", "status": "bogus", "review": "x"}, gs.GalleryState()),
        ({"conf": "250", "page": "2.5"}, gs.GalleryState(min_conf=100)),
        ({"conf": "nan"}, gs.GalleryState()),
        ({"conf": "1e999"}, gs.GalleryState()),
        ({"from": "2026-02-30", "to": "yesterday"}, gs.GalleryState()),
        ({"label": "   "}, gs.GalleryState()),
        ({"category": "x" * 201, "owner": "y" * 201}, gs.GalleryState()),  # no such name
        ({"label": ["Cat", "Dog"]}, gs.GalleryState(label="Dog")),  # a repeated parameter: the last
        (
            {"from": "2026-03-10", "to": "2026-03-01"},  # backwards: swapped
            gs.GalleryState(since=date(2026, 3, 1), until=date(2026, 3, 10)),
        ),
    ],
)
def test_what_does_not_parse_is_ignored(params: dict[str, object], expected: gs.GalleryState) -> None:
    assert gs.GalleryState.from_params(params) == expected


def test_the_filter_covers_whole_days() -> None:
    flt = gs.GalleryState.from_params(FULL).to_filter(owner_id="u-bob")
    assert flt == ImageFilter(
        label="Red Thing",
        category="Animals",
        status=ImageStatus.LABELLED,
        min_confidence=80.0,
        since=datetime(2026, 1, 1, tzinfo=UTC),
        until=datetime(2026, 2, 1, tzinfo=UTC),
        owner_id="u-bob",
        review=ReviewFilter.UNREVIEWED,
    )
    one_day = gs.GalleryState(since=date(2026, 1, 5)).to_filter()
    assert (one_day.since, one_day.until) == (
        datetime(2026, 1, 5, tzinfo=UTC),
        datetime(2026, 1, 6, tzinfo=UTC),
    )
    assert gs.GalleryState(owner="bob").to_filter() == ImageFilter()  # the caller looks up the id


def test_a_long_search_keeps_its_first_200_characters() -> None:
    # (issue 24, item 6) GIVEN a search text of 260 characters in the URL
    words = "dog beach " * 26
    params = {"label": words}
    # THEN the view searches its first 200 (not nothing), and says it was cut
    assert gs.GalleryState.from_params(params).label == words[:200].strip()
    assert gs.search_cut(params)
    assert gs.GalleryState.from_widgets({gs.KEY_LABEL: words}).label == words[:200].strip()
    # AND 200 characters exactly are not cut
    assert gs.GalleryState.from_params({"label": "x" * 200}).label == "x" * 200
    assert not gs.search_cut({"label": "x" * 200}) and not gs.search_cut({})
    assert gs.search_cut({"label": ["Cat", "x" * 201]})  # a repeated parameter: the last


def test_widgets_are_seeded_from_the_view_and_read_back() -> None:
    view = gs.GalleryState.from_params(FULL)
    state: dict[str, object] = {}
    view.seed(state)
    assert state[gs.KEY_DATES] == (date(2026, 1, 1), date(2026, 1, 31))
    assert gs.GalleryState.from_widgets(state) == view
    # a default the widget would show anyway is not written (Streamlit warns about a widget
    # given a default and a state value), but the dates always are: their widget has no
    # default of its own, it takes the range (or no range) from here
    fresh: dict[str, object] = {}
    gs.GalleryState(label="Cat").seed(fresh)
    assert {k: v for k, v in fresh.items() if k in gs.FILTER_KEYS} == {gs.KEY_LABEL: "Cat", gs.KEY_DATES: ()}
    # ... but a widget already showing something else is put back to the default
    gs.GalleryState().seed(state)
    assert gs.GalleryState.from_widgets(state) == gs.GalleryState()
    assert gs.GalleryState(page=4).same_filter(gs.GalleryState(page=1))
    assert not gs.GalleryState(label="Cat").same_filter(gs.GalleryState())


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "https://evil.example/",
        "//evil.example/image",
        "/\\evil.example",
        "\\\\evil.example",
        "image?image=1",  # not absolute
        "/nowhere",
        "/sign_in",  # not a signed-in page
        "javascript:alert(1)",
        "/" + "x" * 3000,
    ],
)
def test_next_never_names_anything_outside_the_app(target: str | None) -> None:
    assert deep_link.resolve(target) is None
    assert deep_link.location(target) == "/"


def test_next_names_a_page_and_keeps_its_parameters() -> None:
    assert deep_link.resolve("/image?image=abc&label=Red+Thing") == (
        Page.IMAGE,
        {"image": "abc", "label": "Red Thing"},
    )
    assert deep_link.location("/image?image=abc&label=Red+Thing&next=//evil") == (
        "/image?image=abc&label=Red+Thing"
    )
    assert deep_link.resolve("/?label=Cat&page=2") == (Page.GALLERY, {"label": "Cat", "page": "2"})
    assert deep_link.location("/gallery?label=Cat") == "/?label=Cat"
    assert deep_link.location("/labels") == "/labels"


def test_the_sign_in_page_remembers_where_it_was_asked_for() -> None:
    assert deep_link.target_of("image", {"image": "abc", "label": ["Cat"]}) == "/image?image=abc&label=Cat"
    assert deep_link.pending({"next": "/image?image=abc"}) == "/image?image=abc"
    assert deep_link.pending({"next": "https://evil.example"}) is None
    assert deep_link.pending({"label": "Cat"}) == "/?label=Cat"  # a filtered gallery, signed out
    assert deep_link.pending({}) is None
    paths = [path for path, _ in deep_link.signed_out_pages(lambda _: None)]
    assert "image" in paths and "gallery" in paths and "sign_in" not in paths


def test_a_page_is_shown_by_a_new_pagination_widget_never_by_writing_into_one() -> None:
    # (issue 24, item 8) Streamlit's pagination always has a default, and a widget with a
    # default whose value is also set through the Session State API logs a warning with a
    # stack trace: moving the page draws a new widget (its default the page) instead
    state: dict[str, object] = {}
    gs.GalleryState(page=3).seed(state)
    first = gs.pager_key(state)
    assert state[gs.KEY_PAGE] == 3 and first not in state
    gs.set_page(state, 1)
    assert state[gs.KEY_PAGE] == 1 and gs.pager_key(state) != first
    assert gs.GalleryState.from_widgets(state).page == 1
