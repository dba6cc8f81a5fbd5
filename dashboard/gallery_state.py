"""The gallery's view (filters and page) as URL query parameters, so a view survives a
reload, the browser's back button, a bookmark and a trip to an image and back.

``?label=Cat&conf=80&status=labelled&category=Animals&review=unreviewed&from=2026-01-01
&to=2026-01-31&owner=bob&page=2`` — every parameter optional, defaults left out of the URL.
:class:`GalleryState` parses such parameters (tolerantly: a value that does not parse is
ignored, never an error page), writes them back, seeds the gallery's widgets and turns
into the query's :class:`~labelkit.db.queries.images.ImageFilter`. The image page carries
the same parameters (beside ``image``) for its "Back to the gallery" link and its
previous/next buttons, which walk the same filter in the gallery's order.

Pure: no Streamlit here, so it is unit-tested on its own (tests/unit/test_gallery_state.py).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, TypeVar

from labelkit.db.models import ImageStatus
from labelkit.db.queries.images import ImageFilter, ReviewFilter

# Query parameter names, in the order they appear in the URL.
LABEL, CONF, STATUS, CATEGORY, REVIEW, SINCE, UNTIL, OWNER, PAGE = (
    "label",
    "conf",
    "status",
    "category",
    "review",
    "from",
    "to",
    "owner",
    "page",
)
PARAMS: Final = (LABEL, CONF, STATUS, CATEGORY, REVIEW, SINCE, UNTIL, OWNER, PAGE)
_E = TypeVar("_E", ImageStatus, ReviewFilter)
PAGE_SIZE: Final = 24  # images per gallery page
# The longest search text: a longer one (typed, pasted or in ?label=) keeps its first MAX_TEXT
# characters and the gallery says so. Longer category / owner values name nothing: ignored.
MAX_TEXT = 200

# The gallery's widget keys (kept from before the URL held the state: tests use them).
KEY_LABEL, KEY_CONF, KEY_STATUS, KEY_CATEGORY, KEY_REVIEW, KEY_DATES, KEY_OWNER, KEY_PAGE = (
    "flt_label",
    "flt_conf",
    "flt_status",
    "flt_category",
    "flt_review",
    "flt_dates",
    "flt_owner",
    "gallery_page",
)
FILTER_KEYS: Final = (KEY_LABEL, KEY_CONF, KEY_STATUS, KEY_CATEGORY, KEY_REVIEW, KEY_DATES, KEY_OWNER)
# KEY_PAGE holds the page number; the pagination widget's key is KEY_PAGER plus a number that
# set_page renews. Streamlit's pagination always has a default (page 1), and a widget with a
# default whose value is also set through the Session State API makes Streamlit log a
# warning with a stack trace: so the page is moved by drawing a new widget (its default the
# page), never by writing into the widget's state.
KEY_PAGER, KEY_PAGER_RENEWED = "gallery_pager_", "gallery_pager_renewed"


@dataclass(frozen=True, slots=True)
class GalleryState:
    """One view of the gallery. ``owner`` is a username (admins only; others ignore it)."""

    label: str | None = None
    min_conf: int = 0
    status: ImageStatus | None = None
    category: str | None = None
    review: ReviewFilter | None = None
    since: date | None = None
    until: date | None = None  # inclusive: the last day shown
    owner: str | None = None
    page: int = 1

    # ------------------------------------------------------------------ URL

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GalleryState:
        """The view a URL's query parameters describe (``st.query_params`` or a plain dict;
        a repeated parameter counts by its last value)."""

        def get(name: str) -> str | None:
            text = _param(params, name)
            return text if text and len(text) <= MAX_TEXT else None

        label = (_param(params, LABEL) or "")[:MAX_TEXT].strip() or None  # a long search: its start

        since, until = _day(get(SINCE)), _day(get(UNTIL))
        if since is not None and until is not None and until < since:
            since, until = until, since
        return cls(
            label=label,
            min_conf=_confidence(get(CONF)),
            status=_enum(ImageStatus, get(STATUS)),
            category=get(CATEGORY),
            review=_enum(ReviewFilter, get(REVIEW)),
            since=since,
            until=until,
            owner=get(OWNER),
            page=_page(get(PAGE)),
        )

    def to_params(self) -> dict[str, str]:
        """The query parameters of this view; defaults are left out (the plain gallery is ``{}``)."""
        values = {
            LABEL: self.label,
            CONF: str(self.min_conf) if self.min_conf else None,
            STATUS: self.status.value if self.status else None,
            CATEGORY: self.category,
            REVIEW: self.review.value if self.review else None,
            SINCE: self.since.isoformat() if self.since else None,
            UNTIL: self.until.isoformat() if self.until else None,
            OWNER: self.owner,
            PAGE: str(self.page) if self.page > 1 else None,
        }
        return {k: v for k, v in values.items() if v}

    def same_filter(self, other: GalleryState) -> bool:
        return replace(self, page=1) == replace(other, page=1)

    # ------------------------------------------------------------------ query

    def to_filter(self, *, owner_id: str | None = None) -> ImageFilter:
        """The query's filter; ``owner_id`` is the id of :attr:`owner`, looked up by the caller
        (and only for an admin)."""
        since = datetime.combine(self.since, time.min, tzinfo=UTC) if self.since else None
        last = self.until or self.since
        until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC) if last else None
        return ImageFilter(
            label=self.label,
            category=self.category,
            status=self.status,
            min_confidence=float(self.min_conf) if self.min_conf else None,
            since=since,
            until=until,
            owner_id=owner_id,
            review=self.review,
        )

    # ------------------------------------------------------------------ widgets

    def widget_values(self) -> dict[str, Any]:
        """What the gallery's widgets show for this view, by widget key."""
        dates: tuple[date, ...] = ()
        if self.since is not None:
            dates = (self.since, self.until) if self.until is not None else (self.since,)
        return {
            KEY_LABEL: self.label,
            KEY_CONF: self.min_conf,
            KEY_STATUS: self.status.value if self.status else None,
            KEY_CATEGORY: self.category,
            KEY_REVIEW: self.review.value if self.review else None,
            KEY_DATES: dates,
            KEY_OWNER: self.owner,
            KEY_PAGE: self.page,
        }

    def seed(self, state: MutableMapping[Any, Any]) -> None:
        """Put this view into the widgets' state (``st.session_state``) before they are drawn.

        A widget not in the state yet that would show its default anyway is left alone. The
        dates are always written: the date widget is drawn without a value of its own (it
        takes the range from here), since Streamlit warns about a widget given a default
        whose value is also set here. The page goes through :func:`set_page`."""
        defaults = _DEFAULT_WIDGETS
        for key, value in self.widget_values().items():
            if key == KEY_PAGE:
                set_page(state, value)
            elif key in state or value != defaults[key] or key == KEY_DATES:
                state[key] = value

    @classmethod
    def from_widgets(cls, state: Mapping[Any, Any]) -> GalleryState:
        """The view the widgets show now (``st.session_state``), through the same parser as the URL."""
        dates = state.get(KEY_DATES) or ()
        dates = tuple(dates) if isinstance(dates, list | tuple) else (dates,)
        since = dates[0] if dates else None
        until = dates[1] if len(dates) > 1 else None
        params = {
            LABEL: state.get(KEY_LABEL),
            CONF: state.get(KEY_CONF),
            STATUS: state.get(KEY_STATUS),
            CATEGORY: state.get(KEY_CATEGORY),
            REVIEW: state.get(KEY_REVIEW),
            SINCE: since.isoformat() if isinstance(since, date) else None,
            UNTIL: until.isoformat() if isinstance(until, date) else None,
            OWNER: state.get(KEY_OWNER),
            PAGE: state.get(KEY_PAGE),
        }
        return cls.from_params(params)


_DEFAULT_WIDGETS: Final = GalleryState().widget_values()


def set_page(state: MutableMapping[Any, Any], page: int) -> None:
    """Show gallery page ``page``: its number, and a new pagination widget that starts there."""
    state[KEY_PAGE] = page
    state[KEY_PAGER_RENEWED] = int(state.get(KEY_PAGER_RENEWED, 0)) + 1


def pager_key(state: Mapping[Any, Any]) -> str:
    """The key of the pagination widget to draw now (see :func:`set_page`)."""
    return f"{KEY_PAGER}{state.get(KEY_PAGER_RENEWED, 0)}"


def search_cut(params: Mapping[str, Any]) -> bool:
    """Whether the URL's search text (``?label=``) is longer than :data:`MAX_TEXT`, so the
    view keeps only its first :data:`MAX_TEXT` characters."""
    return len(_param(params, LABEL) or "") > MAX_TEXT


def _param(params: Mapping[str, Any], name: str) -> str | None:
    """A parameter's text, stripped; a repeated parameter counts by its last value."""
    value = params.get(name)
    if isinstance(value, list | tuple):
        value = value[-1] if value else None
    return None if value is None else str(value).strip()


def gallery_params(params: Mapping[str, Any]) -> dict[str, str]:
    """The gallery's parameters among ``params`` (e.g. the image page's URL), normalised."""
    return GalleryState.from_params(params).to_params()


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _confidence(text: str | None) -> int:
    try:
        value = int(float(text)) if text is not None else 0
    except (ValueError, OverflowError):
        return 0
    return min(100, max(0, value))


def _page(text: str | None) -> int:
    try:
        value = int(text) if text is not None else 1
    except ValueError:
        return 1
    return max(1, min(value, 1_000_000))


def _enum(kind: type[_E], text: str | None) -> _E | None:
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        return None
