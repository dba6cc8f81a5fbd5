"""Review queue: model labels nobody has confirmed or rejected yet, lowest confidence first.
Accept or reject one at a time, or tick several and act on them together."""

from __future__ import annotations

import streamlit as st

from dashboard import core
from labelkit.db import repository as repo
from labelkit.db.models import ReviewState
from labelkit.errors import NotFound

PAGE_SIZE = 20
THUMB = 160

user = core.require_user()
viewer = user.viewer

st.title("Review")
st.caption("The model's least certain labels come first. Your answers are kept beside the model's.")

page_no = int(st.session_state.get("review_page", 1) or 1)
with core.db() as s:
    total = repo.count_review_queue(session=s, viewer=viewer)
    pages = max(1, -(-total // PAGE_SIZE))
    page_no = min(page_no, pages)
    rows = repo.review_queue(session=s, viewer=viewer, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE)
    images = repo.images_by_ids(session=s, viewer=viewer, image_ids=[r.image_id for r in rows])


def _apply(items: list[tuple[str, str]], review: ReviewState) -> int:
    """Record a review for (image id, label name) pairs; returns how many were recorded."""
    done = 0
    with core.db() as s:
        for image_id, name in items:
            try:
                repo.set_human_label(session=s, viewer=viewer, image_id=image_id, name=name, review=review)
            except NotFound:
                continue  # deleted meanwhile, or never the viewer's: nothing to record
            done += 1
    core.data_changed()
    return done


if total == 0:
    st.success("Nothing to review — every label has been looked at.", icon=":material/task_alt:")
    st.page_link(core.PAGE_GALLERY, label="Back to the gallery", icon=":material/photo_library:")
    st.stop()

st.caption(f"{total} label{'s' if total != 1 else ''} waiting for review")

selected = [r for r in rows if st.session_state.get(f"sel::{r.id}")]
bar = st.columns([1.2, 2, 2, 3], vertical_alignment="center")
if bar[0].button("Select all", key="select_all", icon=":material/select_all:"):
    for r in rows:
        st.session_state[f"sel::{r.id}"] = True
    st.rerun()
accept_sel = bar[1].button(
    f"Accept selected ({len(selected)})",
    key="accept_selected",
    icon=":material/done_all:",
    type="primary",
    disabled=not selected,
)
reject_sel = bar[2].button(
    f"Reject selected ({len(selected)})",
    key="reject_selected",
    icon=":material/close:",
    disabled=not selected,
)
if accept_sel or reject_sel:
    n = _apply(
        [(r.image_id, r.name) for r in selected],
        ReviewState.CONFIRMED if accept_sel else ReviewState.REJECTED,
    )
    for r in selected:
        st.session_state.pop(f"sel::{r.id}", None)
    core.flash(f"{'Accepted' if accept_sel else 'Rejected'} {n} label{'s' if n != 1 else ''}.")
    st.rerun()
core.show_flash()

for r in rows:
    img = images.get(r.image_id)
    if img is None:
        continue
    with st.container(border=True):
        c_sel, c_img, c_text, c_act = st.columns([0.4, 1.2, 4, 2.2], vertical_alignment="center")
        c_sel.checkbox("Select", key=f"sel::{r.id}", label_visibility="collapsed")
        thumb = core.thumbnail(img)
        if thumb:
            c_img.image(thumb, width=THUMB)
        with c_text:
            st.markdown(f"**{core.md(r.name)}** · {r.confidence:.1f}%")
            st.progress(min(1.0, r.confidence / 100))
            extra = []
            if r.parents:
                extra.append("parents: " + ", ".join(core.md(p) for p in r.parents))
            extra.append("in " + core.md(img.original_name))
            st.caption(" · ".join(extra))
            st.page_link(core.PAGE_IMAGE, label="Open image", query_params={"image": img.id})
        with c_act:
            a, b = st.columns(2)
            if a.button("Accept", key=f"accept::{r.id}", icon=":material/check:", width="stretch"):
                _apply([(r.image_id, r.name)], ReviewState.CONFIRMED)
                st.rerun()
            if b.button("Reject", key=f"reject::{r.id}", icon=":material/close:", width="stretch"):
                _apply([(r.image_id, r.name)], ReviewState.REJECTED)
                st.rerun()

if pages > 1:
    st.pagination(pages, key="review_page")
