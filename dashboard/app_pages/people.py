"""People: the faces in the viewer's photos grouped into persons (labelkit.people), as a grid of
faces with photo counts; one person (``?person=<id>``) with their faces and photos, where they are
named, merged with another, told apart from a face that is not them, hidden or removed. A name
becomes the label ``Person: <name>`` on every photo of them (searchable: ``alice``,
``person:alice``). Face data is personal: everyone sees only their own people, admins included;
each person can turn grouping off (which deletes their face data) and an admin can turn it off
for everyone."""

from __future__ import annotations

import streamlit as st

from dashboard import core
from dashboard import gallery_state as gs
from dashboard.navigation import Page
from labelkit import people
from labelkit.db.models import Image
from labelkit.db.queries import images as image_q
from labelkit.db.queries import people as people_q
from labelkit.errors import NotFound

COLUMNS = 6
SHOWN = 120  # people on the grid (the most photographed, named first)
FACES_SHOWN = 60  # faces on a person's page
CONFIRM_OFF = "people_confirm_off"
CONFIRM_REMOVE = "people_confirm_remove"

NARROW = 640  # px: Streamlit stacks columns at this width; the grids keep two a row there
PAGE_CSS = f"""<style>
@media (max-width: {NARROW}px) {{
  .st-key-people_grid [data-testid="stHorizontalBlock"],
  .st-key-people_faces [data-testid="stHorizontalBlock"] {{ flex-wrap: wrap; gap: 0.5rem; }}
  .st-key-people_grid [data-testid="stColumn"],
  .st-key-people_faces [data-testid="stColumn"] {{ min-width: 0; flex: 1 1 calc(50% - 0.5rem); }}
}}
</style>"""

user = core.require_user()
viewer = user.viewer
owner = viewer.user_id  # face data is never anyone else's, an admin's view included
person_id = str(st.query_params.get("person") or "")
if person_id:
    # Written back: a link to this same page passes its parameters to one run only, and the
    # next run (a button on the person's page) would lose them.
    st.query_params["person"] = person_id


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _title(name: str | None) -> str:
    return core.md(name) if name else "Unnamed"


def _grouping_settings() -> None:
    with core.db() as s:
        mine_off = people_q.own_grouping_off(session=s, owner_id=owner)
        everyone_off = people_q.grouping_off_for_everyone(session=s)
    with st.expander("Face grouping settings", icon=":material/settings:"):
        st.caption(
            "Faces are personal data. Only you see the people in your photos; they are deleted with "
            "the photo, and exports leave them out unless you ask for people."
        )
        on = st.toggle("Group the faces in my photos", value=not mine_off, key="people_mine_on")
        if on != (not mine_off):
            if on:
                with core.db() as s:
                    people.set_grouping(s, owner_id=owner, on=True, by=owner)
                core.flash("Face grouping is on: faces in photos labelled from now on are grouped.")
                st.rerun()
            else:
                st.session_state[CONFIRM_OFF] = True
        if viewer.is_admin:
            everyone = st.toggle(
                "Group faces for everyone (admin)",
                value=not everyone_off,
                key="people_everyone_on",
                help="Off: nobody's new photos have their faces grouped.",
            )
            if everyone != (not everyone_off):
                with core.db() as s:
                    people.set_grouping_for_everyone(s, on=everyone, by=owner)
                core.flash(f"Face grouping is {'on' if everyone else 'off'} for everyone.")
                st.rerun()


def _keep_on() -> None:
    # A callback: it runs before the toggle is drawn again, so its state can be set back.
    st.session_state.pop(CONFIRM_OFF, None)
    st.session_state["people_mine_on"] = True


@st.dialog("Turn face grouping off?", on_dismiss=_keep_on)
def _confirm_off() -> None:
    st.warning(
        "This deletes the faces found in your photos, your people and their names (the Person labels "
        "on your photos). Your photos and other labels stay. New photos' faces are not grouped until "
        "you turn it on again.",
        icon=":material/warning:",
    )
    c1, c2 = st.columns(2)
    if c1.button("Turn off and delete", key="people_off_confirm", type="primary", width="stretch"):
        st.session_state.pop(CONFIRM_OFF, None)
        with core.db() as s:
            people.set_grouping(s, owner_id=owner, on=False, by=owner)
        core.data_changed()
        core.flash("Face grouping is off, and your face data is deleted.")
        st.rerun()
    if c2.button("Cancel", key="people_off_cancel", width="stretch", on_click=_keep_on):
        st.rerun()


def _grid() -> None:
    with core.db() as s:
        everyone = people_q.people_of(session=s, owner_id=owner)
        covers = people_q.cover_faces(session=s, owner_id=owner)
        images = image_q.images_by_ids(
            session=s, viewer=viewer, image_ids=[f.image_id for f in covers.values()]
        )
    visible = [p for p in everyone if not p.hidden]
    hidden = [p for p in everyone if p.hidden]
    if not everyone:
        st.info(
            "No people yet. Faces in your photos are grouped into people as the photos are labelled.",
            icon=":material/groups:",
        )
        st.page_link(Page.UPLOAD, label="Upload photos", icon=":material/upload:")
        return
    named = sum(1 for p in visible if p.name)
    st.caption(
        f"{len(visible)} {'person' if len(visible) == 1 else 'people'} ({named} named) in your photos. "
        "Open one to name them, merge them with another or take out a face that is not them."
    )
    with st.container(key="people_grid"):
        _tiles(visible[:SHOWN], covers, images, "people_tile")
    if len(visible) > SHOWN:
        st.caption(f"{len(visible) - SHOWN} more people with fewer photos are not shown.")
    if hidden:
        with st.expander(f"Hidden people ({len(hidden)})", icon=":material/visibility_off:"):
            _tiles(hidden, covers, images, "people_hidden")


def _tiles(
    shown: list[people_q.PersonSummary],
    covers: dict[str, people_q.FaceRecord],
    images: dict[str, Image],
    key: str,
) -> None:
    for start in range(0, len(shown), COLUMNS):
        for col, person in zip(st.columns(COLUMNS), shown[start : start + COLUMNS], strict=False):
            with col, st.container(border=True, key=f"{key}_{person.id}"):
                cover = covers.get(person.id)
                image = images.get(cover.image_id) if cover else None
                crop = core.face_crop(image, cover.box) if image is not None and cover is not None else None
                if crop:
                    st.image(crop, width="stretch")
                st.page_link(
                    Page.PEOPLE,
                    label=_title(person.name),
                    icon=":material/person:",
                    query_params={"person": person.id},
                )
                st.caption(_plural(person.photos, "photo"))


def _ask_remove(pid: str) -> None:
    st.session_state[CONFIRM_REMOVE] = pid  # before the run: the dialog opens in it


def _cover_name(cover: people_q.FaceRecord | None, images: dict[str, Image]) -> str:
    image = images.get(cover.image_id) if cover is not None else None
    return image.original_name[:40] if image is not None else "no photo"


def _person_page(pid: str) -> None:
    with core.db() as s:
        person = people_q.get_person(session=s, owner_id=owner, person_id=pid)
        if person is None:
            st.error("No such person. They may have been merged or removed.", icon=":material/person_off:")
            st.page_link(Page.PEOPLE, label="All people", icon=":material/groups:")
            return
        faces = people_q.person_faces(session=s, owner_id=owner, person_id=pid)
        others = [p for p in people_q.people_of(session=s, owner_id=owner) if p.id != pid]
        covers = people_q.cover_faces(session=s, owner_id=owner)
        images = image_q.images_by_ids(
            session=s,
            viewer=viewer,
            image_ids=[f.image_id for f in faces] + [c.image_id for c in covers.values()],
        )
        name, hidden = person.name, bool(person.hidden)
    st.page_link(Page.PEOPLE, label="All people", icon=":material/arrow_back:")
    st.subheader(_title(name))
    photos = len({f.image_id for f in faces})
    st.caption(f"{_plural(len(faces), 'face')} on {_plural(photos, 'photo')}")

    with st.form("people_name_form", border=True):
        new_name = st.text_input(
            "Name", value=name or "", max_chars=people.MAX_NAME, placeholder="Who is this?", key="people_name"
        )
        if st.form_submit_button("Save name", icon=":material/badge:", type="primary"):
            try:
                with core.db() as s:
                    people.name_person(s, owner_id=owner, person_id=pid, name=new_name)
            except NotFound:
                st.error("This person is gone (merged or removed meanwhile).")
                st.stop()
            core.data_changed()
            given = core.md(new_name.strip())
            core.flash(f"Named {given}: their photos carry “Person: {given}”." if given else "Name removed.")
            st.rerun()

    a1, a4, a2, a3 = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
    if others:
        # Each named by their name, or the photo they are shown from, so two "Unnamed" differ.
        choices = {
            p.id: f"{p.name or 'Unnamed'} · "
            f"{_cover_name(covers.get(p.id), images)} ({_plural(p.photos, 'photo')})"
            for p in others
        }
        choice = a1.selectbox(
            "Merge with (the same person)",
            [p.id for p in others],
            index=None,
            format_func=lambda o: choices[o],
            key="people_merge_with",
        )
        if a4.button("Merge", key="people_merge", icon=":material/merge:", disabled=choice is None):
            assert choice is not None
            with core.db() as s:
                people.merge(s, owner_id=owner, keep_id=pid, other_id=choice)
            core.data_changed()
            core.flash("Merged: they are one person now.")
            st.rerun()
    if a2.button(
        "Show" if hidden else "Hide",
        key="people_hide",
        icon=":material/visibility:" if hidden else ":material/visibility_off:",
        help="Hidden people leave the grid (their name stays on their photos).",
    ):
        with core.db() as s:
            people.hide_person(s, owner_id=owner, person_id=pid, hidden=not hidden)
        st.rerun()
    a3.button("Remove", key="people_remove", icon=":material/delete:", on_click=_ask_remove, args=(pid,))
    if name:
        st.page_link(
            Page.GALLERY,
            label=f"Their photos in the gallery (Person: {core.md(name)})",
            icon=":material/photo_library:",
            query_params={gs.LABEL: people_q.person_label(name)},
        )

    st.markdown("**Faces**")
    shown = faces[:FACES_SHOWN]
    faces_box = st.container(key="people_faces")
    for start in range(0, len(shown), COLUMNS):
        for col, face in zip(faces_box.columns(COLUMNS), shown[start : start + COLUMNS], strict=False):
            image = images.get(face.image_id)
            if image is None:
                continue
            with col, st.container(border=True, key=f"people_face_{face.id}"):
                crop = core.face_crop(image, face.box)
                if crop:
                    st.image(crop, width="stretch")
                st.page_link(
                    Page.IMAGE,
                    label=image.original_name[:40],
                    icon=":material/image:",
                    query_params={"image": image.id},
                )
                if st.button(
                    f"Not {name}" if name else "Not them",
                    key=f"people_split_{face.id}",
                    icon=":material/person_remove:",
                    help="Take this face out: it becomes a person of its own and never joins this one again.",
                    width="stretch",
                ):
                    with core.db() as s:
                        people.split_face(s, owner_id=owner, face_id=face.id)
                    core.data_changed()
                    core.flash("Taken out: that face is a person of its own now (merge it back to undo).")
                    st.rerun()
    if len(faces) > FACES_SHOWN:
        st.caption(f"{len(faces) - FACES_SHOWN} more faces are not shown.")


@st.dialog("Remove this person?", on_dismiss=lambda: st.session_state.pop(CONFIRM_REMOVE, None))
def _confirm_remove(pid: str) -> None:
    st.warning(
        "This forgets the person: their faces, their name and its label on their photos. The photos "
        "stay. New photos of them start a new, unnamed person.",
        icon=":material/warning:",
    )
    c1, c2 = st.columns(2)
    if c1.button("Remove", key="people_remove_confirm", type="primary", width="stretch"):
        st.session_state.pop(CONFIRM_REMOVE, None)
        try:
            with core.db() as s:
                people.remove_person(s, owner_id=owner, person_id=pid)
        except NotFound:
            pass  # gone already
        core.data_changed()
        core.flash("Removed.")
        st.query_params.pop("person", None)
        st.rerun()
    if c2.button("Cancel", key="people_remove_cancel", width="stretch"):
        st.session_state.pop(CONFIRM_REMOVE, None)
        st.rerun()


st.title("People")
st.html(PAGE_CSS)
core.show_flash()
_grouping_settings()
if st.session_state.get(CONFIRM_OFF):
    _confirm_off()
pending = st.session_state.get(CONFIRM_REMOVE)
if isinstance(pending, str):
    _confirm_remove(pending)
if person_id:
    _person_page(person_id)
else:
    _grid()
