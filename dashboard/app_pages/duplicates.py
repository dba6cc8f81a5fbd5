"""Duplicates: the viewer's near-duplicate groups (labelkit.duplicates) as rows of thumbnails with
the suggested keeper marked; per group "keep suggested, delete the rest", and "delete all
suggested" for every group at once, each behind a confirmation dialog. Admins may pick an owner."""

from __future__ import annotations

import logging

import streamlit as st

from dashboard import core
from dashboard.navigation import Page
from labelkit.db.models import Image
from labelkit.db.queries import duplicates as dup_q
from labelkit.db.queries import images as image_q
from labelkit.db.queries import users as user_q
from labelkit.domain import Viewer
from labelkit.duplicates import DuplicateGroup, find_groups
from labelkit.uploads import delete_images

logger = logging.getLogger(__name__)

GROUPS_SHOWN = 50
COLUMNS = 6
CONFIRM = "dup_confirm"  # ("one", group index) or ("all", None) while a dialog is open

user = core.require_user()
viewer = user.viewer

st.title("Duplicates")
core.show_flash()
st.caption(
    "Photos that look like copies of one another (resized, recompressed, slightly cropped or "
    "recoloured, burst shots), grouped by their perceptual hash and image embedding. The suggested "
    "keeper is the largest copy, then the sharpest, then the oldest."
)


@st.cache_data(ttl=3600, show_spinner="Looking for duplicates…", max_entries=50)
def _cached_groups(
    user_id: str, is_admin: bool, owner_id: str, version: tuple[int, str]
) -> list[DuplicateGroup]:
    # Compares every hash with every other (seconds at tens of thousands of photos): cached
    # until the owner's images or hashes change (``version``), and dropped after a delete.
    return find_groups(engine=core.services().engine, viewer=Viewer(user_id, is_admin), owner_id=owner_id)


def _groups(owner_id: str) -> list[DuplicateGroup]:
    with core.db() as s:
        version = dup_q.hash_version(session=s, viewer=viewer, owner_id=owner_id)
    return _cached_groups(viewer.user_id, viewer.is_admin, owner_id, version)


owner_id = viewer.user_id
if viewer.is_admin:
    with core.db() as s:
        owners = dup_q.owners_with_hashes(session=s, viewer=viewer)
        names = user_q.usernames(session=s, user_ids=[*owners, viewer.user_id])
    choices = [viewer.user_id, *(o for o in owners if o != viewer.user_id)]
    owner_id = st.selectbox(
        "Owner", choices, format_func=lambda o: f"{names.get(o, o)}{' (you)' if o == viewer.user_id else ''}"
    )

groups = _groups(owner_id)
shown = groups[:GROUPS_SHOWN]
with core.db() as s:
    images = image_q.images_by_ids(
        session=s, viewer=viewer, image_ids=[i for g in shown for i in g.image_ids]
    )


def _close() -> None:
    st.session_state.pop(CONFIRM, None)


def _delete(ids: list[str]) -> None:
    deleted = delete_images(services=core.services(), viewer=viewer, image_ids=ids)
    _cached_groups.clear()
    core.data_changed()
    if len(deleted) < len(ids):
        core.flash(f"Deleted {len(deleted)} of {len(ids)} photos; the others could not be deleted just now.")
    else:
        core.flash(f"Deleted {len(deleted)} photo{'s' if len(deleted) != 1 else ''}.")


@st.dialog("Delete duplicates?", on_dismiss=_close)
def _confirm(ids: list[str], what: str) -> None:
    st.warning(
        f"Delete {what} ({len(ids)} photo{'s' if len(ids) != 1 else ''}) with their labels? "
        "The suggested keepers stay. This cannot be undone.",
        icon=":material/warning:",
    )
    d1, d2 = st.columns(2)
    if d1.button("Yes, delete", key="dup_delete_confirm", type="primary", width="stretch"):
        _close()
        _delete(ids)
        st.rerun()
    if d2.button("Cancel", key="dup_delete_cancel", width="stretch"):
        _close()
        st.rerun()


def _tile(img: Image, keeper: bool) -> None:
    with st.container(border=True):
        thumb = core.thumbnail(img, square=True)
        if thumb:
            st.image(thumb, width="stretch")
        else:
            st.caption(":material/broken_image: preview unavailable")
        if keeper:
            st.markdown(":green-badge[:material/star: Keep]")
        st.markdown(f"**{core.md(img.original_name)}**")
        st.caption(
            f"{img.width} × {img.height} px · {core.human_size(img.bytes)} · {img.created_at:%Y-%m-%d}"
        )
        st.page_link(Page.IMAGE, label="Open", icon=":material/open_in_full:", query_params={"image": img.id})


if not groups:
    st.info("No duplicates found.", icon=":material/check_circle:")
    st.stop()

extra = sum(len(g.others) for g in groups)
top = st.columns([3, 2], vertical_alignment="center")
top[0].markdown(
    f"**{len(groups)}** group{'s' if len(groups) != 1 else ''}, **{extra}** photo{'s' if extra != 1 else ''} "
    "beyond the suggested keepers"
    + (f" (the first {GROUPS_SHOWN} groups are shown)" if len(groups) > GROUPS_SHOWN else "")
)
if top[1].button(
    f"Delete all suggested ({extra})", key="dup_delete_all", type="primary", icon=":material/delete_sweep:"
):
    st.session_state[CONFIRM] = ("all", None)

for gi, g in enumerate(shown):
    with st.container(border=True, key=f"dup_group_{gi}"):
        head = st.columns([3, 2], vertical_alignment="center")
        head[0].markdown(f"#### Group {gi + 1} · {len(g.image_ids)} photos")
        if head[1].button(
            f"Keep suggested, delete the rest ({len(g.others)})",
            key=f"dup_delete_{gi}",
            icon=":material/delete:",
        ):
            st.session_state[CONFIRM] = ("one", gi)
        cols = st.columns(COLUMNS)
        for k, image_id in enumerate(i for i in g.image_ids if i in images):
            with cols[k % COLUMNS]:
                _tile(images[image_id], image_id == g.keeper)

pending = st.session_state.get(CONFIRM)
if pending is not None:
    kind, index = pending
    if kind == "all":
        _confirm([i for g in groups for i in g.others], "every photo but the suggested keepers")
    elif isinstance(index, int) and index < len(shown):
        _confirm(list(shown[index].others), f"the rest of group {index + 1}")
    else:
        _close()
