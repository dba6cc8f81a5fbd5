"""Duplicates: the viewer's near-duplicate groups (labelkit.duplicates) as rows of thumbnails with
the keeper marked (the suggested one, or another the person picked with "Keep this one", kept in
the session while they stay); per group "keep the marked photo, delete the rest", and "delete all
but the keepers" for every group at once, each behind a confirmation dialog that warns when a
copy carries people's labels and offers to copy them to the keeper first. Admins may pick an owner."""

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
from labelkit.duplicates import DuplicateGroup, choose_keepers, find_groups
from labelkit.uploads import delete_copies

logger = logging.getLogger(__name__)

GROUPS_SHOWN = 50
COLUMNS = 4  # wide enough for a tile's "Keep this one" button on one line
# While a dialog is open: what it asks about, frozen when its button was clicked (what to
# delete, what it says), so "Yes, delete" deletes exactly the photos the dialog counted, even if
# a copy arrived or the groups changed meanwhile (issue 25).
CONFIRM = "dup_confirm"
PICKED = "dup_picked"  # image ids the person chose as keepers, the latest last

user = core.require_user()
viewer = user.viewer

st.title("Duplicates")
core.show_flash()
st.caption(
    "Photos that look like copies of one another (resized, recompressed, slightly cropped or "
    "recoloured, burst shots), grouped by their perceptual hash and image embedding. The suggested "
    "keeper is a copy people labelled, then the one with the most pixels, then the least compressed "
    "(most bytes per pixel), then the oldest; pick another with “Keep this one”."
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


def _picked() -> list[str]:
    picked = st.session_state.get(PICKED)
    return list(picked) if isinstance(picked, list) else []


def _pick(group: DuplicateGroup, image_id: str) -> None:
    # One pick per group: the latest replaces the earlier; picking the suggested one undoes it.
    picks = [i for i in _picked() if i not in group.image_ids]
    if image_id != group.suggested:
        picks.append(image_id)
    st.session_state[PICKED] = picks


def _chosen(group: DuplicateGroup, picks: list[str]) -> DuplicateGroup:
    for image_id in reversed(picks):
        if image_id in group.image_ids:
            return group.with_keeper(image_id)
    return group


# The grouping is cached; the keepers are chosen again on every run (people's labels change
# without changing any hash), then the person's picks are applied.
picks = _picked()
groups = [
    _chosen(g, picks)
    for g in choose_keepers(
        engine=core.services().engine, viewer=viewer, owner_id=owner_id, groups=_groups(owner_id)
    )
]
shown = groups[:GROUPS_SHOWN]
with core.db() as s:
    images = image_q.images_by_ids(
        session=s, viewer=viewer, image_ids=[i for g in shown for i in g.image_ids]
    )


def _close() -> None:
    st.session_state.pop(CONFIRM, None)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _delete(plan: dict[str, str], copy_labels: bool) -> None:
    result = delete_copies(services=core.services(), viewer=viewer, keepers=plan, copy_labels=copy_labels)
    _cached_groups.clear()
    core.data_changed()
    n = len(result.deleted)
    copied = f"Copied {_plural(result.labels_copied, 'label')} to the keepers. " if copy_labels else ""
    if n < len(plan):
        core.flash(f"{copied}Deleted {n} of {len(plan)} photos; the others could not be deleted just now.")
    else:
        core.flash(f"{copied}Deleted {_plural(n, 'photo')}.")


@st.dialog("Delete duplicates?", on_dismiss=_close)
def _confirm(plan: dict[str, str], what: str, people: dict[str, int]) -> None:
    """``plan``: copy id -> the keeper of its group; ``people``: copy id -> labels people gave it."""
    st.warning(
        f"Delete {what} ({_plural(len(plan), 'photo')}) with their labels? "
        "The marked keepers stay. This cannot be undone.",
        icon=":material/warning:",
    )
    labelled = [i for i in plan if people.get(i, 0) > 0]
    if labelled:
        st.error(
            f"{_plural(len(labelled), 'photo')} of these {'carry' if len(labelled) != 1 else 'carries'} "
            f"people's work: {_plural(sum(people[i] for i in labelled), 'label')} added, confirmed or "
            "rejected by a person (with their boxes). Copy them to the photo kept in each group before "
            "deleting? Where the keeper already has a person's verdict on the same label, the keeper's "
            "stays.",
            icon=":material/person:",
        )
        d1, d2, d3 = st.columns(3)
        if d1.button(
            "Copy their labels to the keeper, then delete",
            key="dup_delete_copy",
            type="primary",
            width="stretch",
        ):
            _close()
            _delete(plan, copy_labels=True)
            st.rerun()
        if d2.button("Delete without copying", key="dup_delete_confirm", width="stretch"):
            _close()
            _delete(plan, copy_labels=False)
            st.rerun()
    else:
        d1, d3 = st.columns(2)
        if d1.button("Yes, delete", key="dup_delete_confirm", type="primary", width="stretch"):
            _close()
            _delete(plan, copy_labels=False)
            st.rerun()
    if d3.button("Cancel", key="dup_delete_cancel", width="stretch"):
        _close()
        st.rerun()


def _tile(img: Image, group: DuplicateGroup, gi: int, k: int) -> None:
    with st.container(border=True, key=f"dup_tile_{gi}_{k}"):
        thumb = core.thumbnail(img, square=True)
        if thumb:
            st.image(thumb, width="stretch")
        else:
            st.caption(":material/broken_image: preview unavailable")
        if img.id == group.keeper:
            why = "suggested" if img.id == group.suggested else "your choice"
            st.markdown(f":green-badge[:material/star: Keep · {why}]")
        else:
            st.button(
                "Keep this one",
                key=f"dup_keep_{gi}_{k}",
                icon=":material/star_outline:",
                on_click=_pick,
                args=(group, img.id),
                width="stretch",
            )
            if img.id == group.suggested:
                st.caption("The suggested keeper")
        st.markdown(f"**{core.md(img.original_name)}**")
        st.caption(
            f"{img.width} × {img.height} px · {core.human_size(img.bytes)} · {img.created_at:%Y-%m-%d}"
        )
        people = group.labels_by_people(img.id)
        if people:
            st.caption(f":material/person: {_plural(people, 'label')} added or reviewed by people")
        st.page_link(Page.IMAGE, label="Open", icon=":material/open_in_full:", query_params={"image": img.id})


if not groups:
    st.info("No duplicates found.", icon=":material/check_circle:")
    st.stop()

extra = sum(len(g.others) for g in groups)
top = st.columns([3, 2], vertical_alignment="center")
top[0].markdown(
    f"**{len(groups)}** group{'s' if len(groups) != 1 else ''}, **{extra}** photo{'s' if extra != 1 else ''} "
    "beyond the keepers"
    + (f" (the first {GROUPS_SHOWN} groups are shown)" if len(groups) > GROUPS_SHOWN else "")
)


def _plan(chosen: list[DuplicateGroup]) -> tuple[dict[str, str], dict[str, int]]:
    """Copy id -> its group's keeper, and copy id -> labels people gave it."""
    plan = {c: g.keeper for g in chosen for c in g.others}
    people = {c: g.labels_by_people(c) for g in chosen for c in g.others}
    return plan, people


def _ask(chosen: list[DuplicateGroup], what: str) -> None:
    plan, people = _plan(chosen)
    st.session_state[CONFIRM] = {"plan": plan, "people": people, "what": what}


if top[1].button(
    f"Delete all but the keepers ({extra})",
    key="dup_delete_all",
    type="primary",
    icon=":material/delete_sweep:",
):
    _ask(groups, "every photo but the keepers")

for gi, g in enumerate(shown):
    with st.container(border=True, key=f"dup_group_{gi}"):
        head = st.columns([3, 2], vertical_alignment="center")
        head[0].markdown(f"#### Group {gi + 1} · {len(g.image_ids)} photos")
        if head[1].button(
            f"Keep the marked photo, delete the rest ({len(g.others)})",
            key=f"dup_delete_{gi}",
            icon=":material/delete:",
        ):
            _ask([g], f"the rest of group {gi + 1}")
        cols = st.columns(COLUMNS)
        for k, image_id in enumerate(i for i in g.image_ids if i in images):
            with cols[k % COLUMNS]:
                _tile(images[image_id], g, gi, k)


pending = st.session_state.get(CONFIRM)
if isinstance(pending, dict):
    _confirm(dict(pending["plan"]), str(pending["what"]), dict(pending["people"]))
elif pending is not None:
    _close()
