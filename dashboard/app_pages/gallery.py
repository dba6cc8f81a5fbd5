"""The gallery: the viewer's images, newest first, filtered, paginated; refreshes while labelling runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from dashboard import core
from dashboard.navigation import Page
from labelkit.db.models import ImageStatus, TermKind
from labelkit.db.queries import images as image_q
from labelkit.db.queries import stats as stats_q

PAGE_SIZE = 24
COLUMNS = 6
REFRESH_SECONDS = 3

user = core.require_user()
viewer = user.viewer

st.title("Gallery")
core.show_flash()

# ?label=X (from the Labels page or a shared link) seeds the label filter once per new value.
qp_label = st.query_params.get("label")
if qp_label is not None and st.session_state.get("_applied_label_qp") != qp_label:
    st.session_state["flt_label"] = qp_label or None
    st.session_state["_applied_label_qp"] = qp_label
    st.session_state["gallery_page"] = 1

suggestions = core.suggestions(viewer)
current_label = st.session_state.get("flt_label")
if current_label and current_label not in suggestions:
    suggestions = [current_label, *suggestions]

with core.db() as s:
    categories = [t for t, _ in stats_q.term_counts(session=s, viewer=viewer, kind=TermKind.CATEGORY)]
    counts = image_q.status_counts(session=s, viewer=viewer)

REVIEW_CHOICES = {
    image_q.ReviewFilter.UNREVIEWED: "Awaiting review",
    image_q.ReviewFilter.REVIEWED: "Reviewed",
    image_q.ReviewFilter.REJECTED: "Has rejections",
}

with st.container(border=True):
    f1, f2, f3, f4, f5, f6 = st.columns([2.2, 1.4, 1.3, 1.5, 1.5, 1.9])
    label = f1.selectbox(
        "Label",
        suggestions,
        index=None,
        key="flt_label",
        placeholder="Any label — type to search",
        accept_new_options=True,
        help="A parent label finds its children too: “Animal” finds cats and dogs.",
    )
    min_conf = f2.slider("Min confidence", 0, 100, 0, step=5, key="flt_conf")
    status_name = f3.selectbox(
        "Status",
        [s.value for s in ImageStatus],
        index=None,
        key="flt_status",
        placeholder="Any status",
        format_func=lambda v: core.STATUS_STYLE[ImageStatus(v)][0],
    )
    category = f4.selectbox(
        "Category", categories, index=None, key="flt_category", placeholder="Any category"
    )
    review_name = f5.selectbox(
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
    dates = f6.date_input("Uploaded between", value=[], key="flt_dates", format="YYYY-MM-DD")

# Keep the URL in step with the label filter, so a filtered gallery can be shared or bookmarked.
if (label or "") != (st.query_params.get("label") or ""):
    if label:
        st.query_params["label"] = label
    elif "label" in st.query_params:
        del st.query_params["label"]
    st.session_state["_applied_label_qp"] = label or ""

since = until = None
if isinstance(dates, tuple | list) and dates:
    start: date = dates[0]
    since = datetime.combine(start, time.min, tzinfo=UTC)
    end: date = dates[1] if len(dates) > 1 else dates[0]
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)

flt = image_q.ImageFilter(
    label=label or None,
    category=category or None,
    status=ImageStatus(status_name) if status_name else None,
    min_confidence=float(min_conf) if min_conf else None,
    since=since,
    until=until,
    review=image_q.ReviewFilter(review_name) if review_name else None,
)
filtering = flt != image_q.ImageFilter()

m = st.columns(4)
for col, status in zip(m, ImageStatus, strict=True):
    name, icon, _ = core.STATUS_STYLE[status]
    col.metric(name, counts[status], border=True)

busy = counts[ImageStatus.PENDING] + counts[ImageStatus.LABELLING] > 0


def _grid() -> None:
    core.require_live_session()  # a fragment rerun skips the entry point's check
    page_no = int(st.session_state.get("gallery_page", 1) or 1)
    with core.db() as s:
        page = image_q.list_images(session=s, viewer=viewer, flt=flt, page=page_no, page_size=PAGE_SIZE)
        if not page.items and page.total and page_no > page.pages:
            # The filters shrank the result below the page we were on: show its last page.
            page = image_q.list_images(
                session=s, viewer=viewer, flt=flt, page=page.pages, page_size=PAGE_SIZE
            )
        still_busy = image_q.status_counts(session=s, viewer=viewer)
        best = stats_q.top_labels(session=s, viewer=viewer, image_ids=[i.id for i in page.items])
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
    thumbs = core.thumbnails(page.items, square=True)  # the stored ones, read with one query
    cols = st.columns(COLUMNS)
    for i, img in enumerate(page.items):
        with cols[i % COLUMNS].container(border=True):
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
            st.page_link(
                Page.IMAGE,
                label="Open",
                icon=":material/open_in_full:",
                query_params={"image": img.id},
            )
    if page.pages > 1:
        st.pagination(page.pages, key="gallery_page")


if busy:
    st.caption(f":material/autorenew: Labelling in progress — refreshing every {REFRESH_SECONDS} s.")
    st.fragment(_grid, run_every=REFRESH_SECONDS)()
else:
    _grid()
