"""The gallery: the viewer's images, newest first, filtered, paginated; refreshes while labelling runs.

The filters and the page live in the URL (``dashboard/gallery_state.py``): a reload, the
back button or a link restores the view. A whole card opens its image (the image page's
URL carries the view, for its "Back to the gallery" and previous / next). Cards are laid out
one ``st.columns`` row at a time, so a narrow screen, which stacks columns, keeps them newest first.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from dashboard import core
from dashboard import gallery_state as gs
from dashboard.navigation import Page
from labelkit.db.models import ImageStatus, TermKind
from labelkit.db.queries import images as image_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import users as user_q

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

suggestions = core.suggestions(viewer)
current_label = st.session_state.get(gs.KEY_LABEL)
if current_label and current_label not in suggestions:
    suggestions = [current_label, *suggestions]

with core.db() as s:
    categories = [t for t, _ in stats_q.term_counts(session=s, viewer=viewer, kind=TermKind.CATEGORY)]
    counts = image_q.status_counts(session=s, viewer=viewer)
    owners = dict(user_q.image_owners(session=s, viewer=viewer))  # id -> username; admins only
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
    f1.selectbox(
        "Label",
        suggestions,
        index=None,
        key="flt_label",
        placeholder="Any label — type to search",
        accept_new_options=True,
        help="A parent label finds its children too: “Animal” finds cats and dogs.",
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

m = st.columns(4)
for col, status in zip(m, ImageStatus, strict=True):
    name, icon, _ = core.STATUS_STYLE[status]
    col.metric(name, counts[status], border=True)

busy = counts[ImageStatus.PENDING] + counts[ImageStatus.LABELLING] > 0


def _grid() -> None:
    core.require_live_session()  # a fragment rerun skips the entry point's check
    page_no = int(st.session_state.get(gs.KEY_PAGE, 1) or 1)
    with core.db() as s:
        page = image_q.list_images(session=s, viewer=viewer, flt=flt, page=page_no, page_size=PAGE_SIZE)
        if not page.items and page.total and page_no > page.pages:
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
        if filtering:
            st.info("No images match these filters.", icon=":material/filter_alt_off:")
        else:
            st.info("No images yet — upload some.", icon=":material/photo_library:")
            st.page_link(Page.UPLOAD, label="Upload photos", icon=":material/upload:")
        return
    st.caption(f"{page.total} image{'s' if page.total != 1 else ''}" + (" match" if filtering else ""))
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


if busy:
    st.caption(f":material/autorenew: Labelling in progress — refreshing every {REFRESH_SECONDS} s.")
    st.fragment(_grid, run_every=REFRESH_SECONDS)()
else:
    _grid()
