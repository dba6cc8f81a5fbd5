"""One image: the photo with its boxes, labels with confidence, parents and categories,
image properties, and the owner's actions (confirm / reject / add labels, retry, delete).

The id comes from ``?image=<id>``. An id that is not the viewer's behaves exactly like
a missing one (the repository raises ``NotFound`` for both).
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

import streamlit as st

from dashboard import core
from labelkit.db import repository as repo
from labelkit.db.models import Image, ImageStatus, LabelRow, LabelSource, ReviewState
from labelkit.errors import LabelkitError, NotFound
from labelkit.uploads import delete_image, retry_image

REFRESH_SECONDS = 3
logger = logging.getLogger(__name__)
_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")

user = core.require_user()
viewer = user.viewer
image_id = str(st.query_params.get("image") or "")


def _not_found() -> None:
    st.title("Image not found")
    st.error(
        "Image not found. It may have been deleted, or the link is wrong.",
        icon=":material/image_not_supported:",
    )
    st.page_link(core.PAGE_GALLERY, label="Back to the gallery", icon=":material/photo_library:")
    st.stop()


@dataclass
class LabelView:
    name: str
    confidence: float | None = None  # the model's, None for labels people added
    parents: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    boxes: int = 0
    review: ReviewState | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None


def _label_views(rows: list[LabelRow], names: dict[str, str]) -> list[LabelView]:
    views: dict[str, LabelView] = {}
    for r in rows:
        v = views.setdefault(r.name, LabelView(name=r.name))
        if r.source == LabelSource.MODEL:
            if r.instance == 0:
                v.confidence = max(v.confidence or 0.0, r.confidence)
                v.parents = list(r.parents or [])
                v.categories = list(r.categories or [])
            else:
                v.boxes += 1
        else:
            v.review = ReviewState(r.review)
            v.reviewed_by = names.get(r.created_by or "", "someone")
            v.reviewed_at = r.created_at
            v.parents = v.parents or list(r.parents or [])
            v.categories = v.categories or list(r.categories or [])
    return sorted(views.values(), key=lambda v: (v.confidence is None, -(v.confidence or 0), v.name))


def _load() -> tuple[Image, list[LabelRow], dict[str, str]]:
    try:
        with core.db() as s:
            image = repo.get_image(session=s, viewer=viewer, image_id=image_id)
            rows = repo.labels_for_image(session=s, viewer=viewer, image_id=image_id)
            names = repo.usernames(session=s, user_ids=[r.created_by or "" for r in rows])
            owner = repo.usernames(session=s, user_ids=[image.owner_id]) if viewer.is_admin else {}
    except NotFound:
        _not_found()
        raise  # unreachable: st.stop() raised
    names.update(owner)
    return image, rows, names


def _review(name: str, review: ReviewState) -> None:
    try:
        with core.db() as s:
            repo.set_human_label(session=s, viewer=viewer, image_id=image_id, name=name, review=review)
    except NotFound:
        _not_found()
    core.data_changed()


if not image_id:
    _not_found()
image, rows, names = _load()
labels = _label_views(rows, names)

st.page_link(core.PAGE_GALLERY, label="Gallery", icon=":material/arrow_back:")
st.title(core.md(image.original_name))
meta = [
    f"{image.width} × {image.height} px",
    core.human_size(image.bytes),
    f"uploaded {image.created_at:%Y-%m-%d %H:%M} UTC",
]
if viewer.is_admin and image.owner_id != user.user_id:
    meta.append(f"owner {names.get(image.owner_id, '?')}")
if image.model_version:
    meta.append(f"model {image.model_version}")
core.status_badge(image.status)
st.caption(" · ".join(core.md(m) for m in meta))

if image.status in (ImageStatus.PENDING, ImageStatus.LABELLING):

    def _watch() -> None:
        core.require_live_session()  # a fragment rerun skips the entry point's check
        with core.db() as s:
            try:
                now = repo.get_image(session=s, viewer=viewer, image_id=image_id).status
            except NotFound:
                now = None
        if now != image.status:
            st.rerun()
        st.info("Labelling in progress — this page refreshes by itself.", icon=":material/autorenew:")

    st.fragment(_watch, run_every=REFRESH_SECONDS)()

if image.status == ImageStatus.FAILED:
    with st.container(border=True):
        st.error(
            f"Labelling failed: {core.md(image.failure_reason or 'unknown reason')}", icon=":material/error:"
        )
        if st.button("Retry labelling", key="retry", icon=":material/refresh:", type="primary"):
            try:
                retry_image(services=core.services(), viewer=viewer, image_id=image_id)
            except NotFound:
                _not_found()
            except LabelkitError:
                logger.exception("retrying image %s failed", image_id)
                st.error("Could not queue the image again; try again in a moment.", icon=":material/error:")
                st.stop()
            core.data_changed()
            st.rerun()

left, right = st.columns([3, 2], gap="large")

with left:
    box_rows = [
        r for r in rows if r.source == LabelSource.MODEL and r.instance > 0 and r.box_left is not None
    ]
    show_boxes = bool(box_rows) and st.toggle("Show boxes", value=True, key="show_boxes")
    boxes = (
        [
            core.Box(
                left=r.box_left or 0.0,
                top=r.box_top or 0.0,
                width=r.box_width or 0.0,
                height=r.box_height or 0.0,
                caption=f"{r.name} {r.confidence:.0f}%",
            )
            for r in box_rows
        ]
        if show_boxes
        else []
    )
    photo = core.display_copy(image, boxes)
    if photo:
        st.image(photo, width="stretch")
    else:
        st.warning("The photo could not be read from storage.", icon=":material/broken_image:")

    props = image.properties or {}
    if props:
        st.subheader("Image properties")
        q1, q2, q3 = st.columns(3)
        q1.metric("Brightness", f"{float(props.get('brightness', 0)):.0f}", border=True)
        q2.metric("Sharpness", f"{float(props.get('sharpness', 0)):.0f}", border=True)
        q3.metric("Contrast", f"{float(props.get('contrast', 0)):.0f}", border=True)
        swatches = []
        for c in props.get("dominant_colors") or []:
            hex_code = str(c.get("hex_code", ""))
            if not _HEX.match(hex_code):
                continue
            name = html.escape(str(c.get("simplified_color", "")))
            pct = float(c.get("pixel_percent", 0.0))
            swatches.append(
                f'<div style="display:inline-block;margin:0 10px 8px 0;text-align:center;font-size:0.8rem">'
                f'<div style="width:56px;height:40px;border-radius:6px;border:1px solid #ddd;'
                f'background:{hex_code}"></div>{html.escape(hex_code)}<br>{name} {pct:.0f}%</div>'
            )
        if swatches:
            st.caption("Dominant colours")
            # Only validated hex codes and escaped text go into this HTML.
            st.markdown("".join(swatches), unsafe_allow_html=True)

with right:
    st.subheader("Labels")
    if not labels:
        if image.status == ImageStatus.LABELLED:
            st.caption("The model found nothing above its confidence threshold. Add labels below.")
        elif image.status != ImageStatus.FAILED:
            st.caption("Labels appear here once labelling is done.")
    for lab in labels:
        with st.container(border=True):
            title = f"**{core.md(lab.name)}**"
            if lab.confidence is not None:
                title += f" · {lab.confidence:.1f}%"
            else:
                title += " · added by a person"
            st.markdown(title)
            if lab.confidence is not None:
                st.progress(min(1.0, lab.confidence / 100))
            details = []
            if lab.parents:
                details.append("parents: " + ", ".join(core.md(p) for p in lab.parents))
            if lab.categories:
                details.append("categories: " + ", ".join(core.md(c) for c in lab.categories))
            if lab.boxes:
                details.append(f"{lab.boxes} box{'es' if lab.boxes > 1 else ''}")
            if details:
                st.caption(" · ".join(details))
            b1, b2, note = st.columns([1.3, 1.1, 2], vertical_alignment="center")
            if b1.button(
                "Confirm",
                key=f"confirm::{lab.name}",
                icon=":material/check:",
                disabled=lab.review == ReviewState.CONFIRMED,
                type="tertiary",
            ):
                _review(lab.name, ReviewState.CONFIRMED)
                st.rerun()
            if b2.button(
                "Reject",
                key=f"reject::{lab.name}",
                icon=":material/close:",
                disabled=lab.review == ReviewState.REJECTED,
                type="tertiary",
            ):
                _review(lab.name, ReviewState.REJECTED)
                st.rerun()
            if lab.review is not None and lab.review != ReviewState.UNREVIEWED:
                verb = "Confirmed" if lab.review == ReviewState.CONFIRMED else "Rejected"
                colour = "green" if lab.review == ReviewState.CONFIRMED else "red"
                when = f" · {lab.reviewed_at:%Y-%m-%d %H:%M} UTC" if lab.reviewed_at else ""
                note.caption(f":{colour}[{verb}] by {core.md(lab.reviewed_by or '?')}{when}")

    # Compare mode: every labeller's own answer, side by side.
    by_version: dict[str, list[LabelRow]] = {}
    for r in rows:
        if r.source == LabelSource.MODEL and r.instance == 0:
            by_version.setdefault(r.model_version, []).append(r)
    if len(by_version) > 1:
        with st.expander("Labellers side by side", expanded=True, icon=":material/compare:"):
            for col, (version, version_rows) in zip(
                st.columns(len(by_version)), sorted(by_version.items()), strict=True
            ):
                col.caption(f"**{core.md(version)}**")
                col.markdown(
                    "  \n".join(
                        f"{core.md(r.name)} · {r.confidence:.0f}%"
                        for r in sorted(version_rows, key=lambda r: (-r.confidence, r.name))
                    )
                )

    with st.form("add_label_form", clear_on_submit=True, border=False):
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        new_label = c1.text_input("Add a label", key="new_label", max_chars=128, placeholder="e.g. Sofa")
        added = c2.form_submit_button("Add", icon=":material/add:", width="stretch")
    if added:
        if new_label.strip():
            _review(new_label, ReviewState.CONFIRMED)
            st.rerun()
        else:
            st.warning("Type a label first.")

    st.divider()
    if not st.session_state.get("confirm_delete") == image_id:
        if st.button("Delete image…", key="delete", icon=":material/delete:"):
            st.session_state["confirm_delete"] = image_id
            st.rerun()
    else:
        st.warning(
            f"Delete **{core.md(image.original_name)}** and all its labels? This cannot be undone.",
            icon=":material/warning:",
        )
        d1, d2 = st.columns(2)
        if d1.button("Yes, delete", key="delete_confirm", type="primary", width="stretch"):
            st.session_state.pop("confirm_delete", None)
            try:
                delete_image(services=core.services(), viewer=viewer, image_id=image_id)
            except NotFound:
                _not_found()
            except LabelkitError:
                logger.exception("deleting image %s failed", image_id)
                st.error(
                    "Could not delete the image: the storage or the queue is not available. "
                    "Nothing was deleted; try again in a moment.",
                    icon=":material/error:",
                )
                st.stop()
            core.data_changed()
            core.flash(f"Deleted {image.original_name}.")
            st.switch_page(core.PAGE_GALLERY)
        if d2.button("Cancel", key="delete_cancel", width="stretch"):
            st.session_state.pop("confirm_delete", None)
            st.rerun()
