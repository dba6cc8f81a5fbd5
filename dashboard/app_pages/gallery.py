"""The gallery: the viewer's images, newest first, filtered, paginated; refreshes while labelling runs.

The filters and the page live in the URL (``dashboard/gallery_state.py``): a reload, the
back button or a link restores the view. A whole card opens its image (the image page's
URL carries the view, for its "Back to the gallery" and previous / next). Cards are laid out
one ``st.columns`` row at a time, so a narrow screen, which stacks columns, keeps them newest first.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st
from sqlalchemy.orm import Session

from dashboard import core
from dashboard import gallery_state as gs
from dashboard.navigation import Page
from labelkit.db.models import ImageStatus, TermKind
from labelkit.db.queries import bulk as bulk_q
from labelkit.db.queries import images as image_q
from labelkit.db.queries import stats as stats_q
from labelkit.search.service import SearchResult, get_searcher

PAGE_SIZE = gs.PAGE_SIZE
COLUMNS = 6
REFRESH_SECONDS = 3
CARD_KEY = "gallery_card_"  # a card's container key: its CSS class is st-key-gallery_card_<id>
# The card's "Open" link stretched over the whole card (its ::after fills the card, the
# nearest positioned box), so a click anywhere on the card, the photo included, opens the
# image with Streamlit's own page navigation (the session and its state stay).
CARD_CSS = f"""<style>
div[class*="st-key-{CARD_KEY}"] {{ position: relative; }}
div[class*="st-key-{CARD_KEY}"] [data-testid="stElementContainer"]:has([data-testid="stPageLink"]),
div[class*="st-key-{CARD_KEY}"] [data-testid="stPageLink"],
div[class*="st-key-{CARD_KEY}"] [data-testid="stPageLink"] * {{ position: static; }}
div[class*="st-key-{CARD_KEY}"] [data-testid="stPageLink"] a::after {{
  content: ""; position: absolute; inset: 0; z-index: 2; cursor: pointer;
}}
div[class*="st-key-{CARD_KEY}"]:hover {{ border-color: var(--primary-color, #4f46e5); }}
</style>"""


def _search(s: Session, text: str, flt: image_q.ImageFilter, page_no: int) -> SearchResult:
    return get_searcher(core.settings().resolved_model_dir).search(
        session=s, viewer=viewer, text=text, flt=flt, page=page_no, page_size=PAGE_SIZE
    )


def _use_suggestion(name: str) -> None:
    st.session_state[gs.KEY_LABEL] = f'"{name}"' if " " in name else name
    st.session_state[gs.KEY_PAGE] = 1


user = core.require_user()
viewer = user.viewer

st.title("Gallery")
core.show_flash()

# ------------------------------------------------------------------ the view in the URL
WRITTEN = "_gallery_url"  # the parameters this page last put in the URL


def _write_url(view: gs.GalleryState) -> None:
    """Keep the URL in step with the view (Streamlit pushes a history entry for a change)."""
    params = view.to_params()
    if params != gs.gallery_params(st.query_params.to_dict()) or set(st.query_params) - set(params):
        st.query_params.from_dict(params)
    st.session_state[WRITTEN] = params


url_view = gs.GalleryState.from_params(st.query_params.to_dict())
widgets_missing = any(k not in st.session_state for k in gs.FILTER_KEYS)
if widgets_missing or st.session_state.get(WRITTEN) != url_view.to_params():
    # A fresh load, back from another page (Streamlit forgot the widgets), the browser's back
    # button or a link (e.g. the Labels page's ?label=): the URL says what to show.
    url_view.seed(st.session_state)
    st.session_state[WRITTEN] = url_view.to_params()

with core.db() as s:
    categories = [t for t, _ in stats_q.term_counts(session=s, viewer=viewer, kind=TermKind.CATEGORY)]
    counts = image_q.status_counts(session=s, viewer=viewer)
    # id -> username of everyone whose photos the viewer sees: admins only (a user sees their own)
    owners = dict(bulk_q.image_owners(session=s, viewer=viewer)) if viewer.is_admin else {}
owner_ids = {name: uid for uid, name in owners.items()}
current_category = st.session_state.get(gs.KEY_CATEGORY)
if current_category and current_category not in categories:
    categories = [current_category, *categories]
if st.session_state.get(gs.KEY_OWNER) not in owner_ids:
    st.session_state[gs.KEY_OWNER] = None  # not an owner (or not an admin): no owner filter

REVIEW_CHOICES = {
    image_q.ReviewFilter.UNREVIEWED: "Awaiting review",
    image_q.ReviewFilter.REVIEWED: "Reviewed",
    image_q.ReviewFilter.REJECTED: "Has rejections",
}

with st.container(border=True):
    f1, f2, f3, f4, f5, f6 = st.columns([2.2, 1.4, 1.3, 1.5, 1.5, 1.9])
    # The search text lives in the URL's ?label= (a label name is a search for it).
    f1.text_input(
        "Search",
        key=gs.KEY_LABEL,
        placeholder="dog beach · dog -cat · dog | cat",
        max_chars=gs.MAX_TEXT,
        help="Words match label names, aliases, parents and categories, ignoring case, and related "
        "words (“puppy” finds dogs). `dog beach`: both; `dog -cat`: not cats; `dog | cat`: either "
        '(| binds tighter than a space); `"hot dog"`: a phrase.',
    )
    f2.slider("Min confidence", 0, 100, step=5, key="flt_conf")
    f3.selectbox(
        "Status",
        [s.value for s in ImageStatus],
        index=None,
        key="flt_status",
        placeholder="Any status",
        format_func=lambda v: core.STATUS_STYLE[ImageStatus(v)][0],
    )
    f4.selectbox("Category", categories, index=None, key="flt_category", placeholder="Any category")
    f5.selectbox(
        "Review",
        [r.value for r in REVIEW_CHOICES],
        index=None,
        key="flt_review",
        placeholder="Any",
        format_func=lambda v: REVIEW_CHOICES[image_q.ReviewFilter(v)],
        help="Awaiting review: a model label nobody has confirmed or rejected yet. "
        "Reviewed: looked at by a person, nothing left to review. "
        "Has rejections: a person rejected at least one label.",
    )
    f6.date_input("Uploaded between", value=[], key="flt_dates", format="YYYY-MM-DD")

    if owners:  # admins: whose photos
        o1, _ = st.columns([2.2, 7.6])
        o1.selectbox(
            "Owner",
            sorted(owner_ids),
            index=None,
            key=gs.KEY_OWNER,
            placeholder="Everyone",
            help="Only this person's photos.",
        )

view = gs.GalleryState.from_widgets(st.session_state)
last = gs.GalleryState.from_params(st.session_state.get(WRITTEN) or {})
if not view.same_filter(last):
    view = replace(view, page=1)  # another filter: its first page
    st.session_state[gs.KEY_PAGE] = 1
_write_url(view)

flt = view.to_filter(owner_id=owner_ids.get(view.owner or ""))
filtering = flt != image_q.ImageFilter()
query_text = (flt.label or "").strip()  # searched (labelkit.search), not matched literally
flt = replace(flt, label=None)

m = st.columns(4)
for col, status in zip(m, ImageStatus, strict=True):
    name, icon, _ = core.STATUS_STYLE[status]
    col.metric(name, counts[status], border=True)

busy = counts[ImageStatus.PENDING] + counts[ImageStatus.LABELLING] > 0


def _grid() -> None:
    core.require_live_session()  # a fragment rerun skips the entry point's check
    page_no = int(st.session_state.get(gs.KEY_PAGE, 1) or 1)
    found: SearchResult | None = None
    why: dict[str, list[str]] = {}
    more = ""  # "+" when the search stopped counting (labelkit.db.queries.search.COUNT_CAP)
    with core.db() as s:
        if query_text:
            with st.spinner("Searching…"):
                found = _search(s, query_text, flt, page_no)
                if not found.page.items and found.page.total and page_no > found.page.pages:
                    found = _search(s, query_text, flt, found.page.pages)
                    st.session_state[gs.KEY_PAGE] = found.page.page
            page = image_q.Page(
                items=[h.image for h in found.page.items],
                total=found.page.total,
                page=found.page.page,
                page_size=PAGE_SIZE,
            )
            why = {h.image.id: h.why for h in found.page.items}
            more = "+" if found.page.capped else ""
        else:
            page = image_q.list_images(session=s, viewer=viewer, flt=flt, page=page_no, page_size=PAGE_SIZE)
        if not query_text and not page.items and page.total and page_no > page.pages:
            # The filters shrank the result below the page we were on: show its last page.
            page = image_q.list_images(
                session=s, viewer=viewer, flt=flt, page=page.pages, page_size=PAGE_SIZE
            )
            st.session_state[gs.KEY_PAGE] = page.page
        still_busy = image_q.status_counts(session=s, viewer=viewer)
        best = stats_q.top_labels(session=s, viewer=viewer, image_ids=[i.id for i in page.items])
    shown = replace(view, page=page.page)
    _write_url(shown)  # (also after a page change, which reruns only this fragment while busy)
    if busy and still_busy[ImageStatus.PENDING] + still_busy[ImageStatus.LABELLING] == 0:
        # Labelling finished: a full rerun refreshes counts and suggestions and stops the timer.
        core.data_changed()
        st.rerun()
    if page.total == 0:
        if found is not None:
            _nothing_found(found)
        elif filtering:
            st.info("No images match these filters.", icon=":material/filter_alt_off:")
        else:
            st.info("No images yet — upload some.", icon=":material/photo_library:")
            st.page_link(Page.UPLOAD, label="Upload photos", icon=":material/upload:")
        return
    plural = "s" if page.total != 1 else ""
    st.caption(f"{page.total:,}{more} image{plural}" + (" match" if filtering else ""))
    st.html(CARD_CSS)
    link_params = shown.to_params()
    thumbs = core.thumbnails(page.items, square=True)  # the stored ones, read with one query
    # One st.columns per row: a narrow screen stacks a row's columns, so the order stays
    # newest first (one st.columns for the whole grid would stack it column by column).
    for start in range(0, len(page.items), COLUMNS):
        row = page.items[start : start + COLUMNS]
        for col, img in zip(st.columns(COLUMNS), row, strict=False):
            with col.container(border=True, key=f"{CARD_KEY}{img.id}"):
                thumb = thumbs[img.id]
                if thumb:
                    st.image(thumb, width="stretch")
                else:
                    st.caption(":material/broken_image: preview unavailable")
                st.markdown(f"**{core.md(img.original_name)}**")
                core.status_badge(img.status)
                if why.get(img.id):
                    st.caption(":material/search: " + core.md("; ".join(why[img.id][:2])))
                if img.id in best:
                    name, conf = best[img.id]
                    st.caption(f"{core.md(name)} · {conf:.0f}%")
                if img.status == ImageStatus.FAILED and img.failure_reason:
                    st.caption(core.md(img.failure_reason))
                if owners:
                    st.caption(f":material/person: {core.md(owners.get(img.owner_id, '?'))}")
                # The link covers the whole card (CARD_CSS): clicking the photo opens it.
                st.page_link(
                    Page.IMAGE,
                    label="Open",
                    icon=":material/open_in_full:",
                    query_params={"image": img.id, **link_params},
                    help=f"Open {img.original_name}",
                )
    if page.pages > 1:
        st.pagination(page.pages, key=gs.KEY_PAGE)


def _nothing_found(found: SearchResult) -> None:
    """Say so, name the words that stand for no label, and offer the nearest labels."""
    words = ", ".join(f"“{core.md(w)}”" for w in found.unmatched)
    st.info(
        f"No photos match “{core.md(str(found.query))}”."
        + (f" No label is called or related to {words}." if words else ""),
        icon=":material/search_off:",
    )
    if found.suggestions:
        st.caption("Nearest labels you have:")
        cols = st.columns(len(found.suggestions))
        for col, name in zip(cols, found.suggestions, strict=True):
            col.button(name, key=f"suggest_{name}", on_click=_use_suggestion, args=(name,))


if busy:
    st.caption(f":material/autorenew: Labelling in progress — refreshing every {REFRESH_SECONDS} s.")
    st.fragment(_grid, run_every=REFRESH_SECONDS)()
else:
    _grid()
