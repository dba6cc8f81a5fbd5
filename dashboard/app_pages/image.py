"""One image: the photo with its boxes, labels with confidence, parents and categories,
image properties, the text read in it, and the owner's actions (confirm / reject / add
labels, retry, delete).

The id comes from ``?image=<id>``. An id that is not the viewer's behaves exactly like
a missing one (the queries raise ``NotFound`` for both). The gallery's view rides along in
the URL (``dashboard/gallery_state.py``): "Back to the gallery" returns to it, and previous /
next (keys Left / Right) walk the same filter in the gallery's order.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import streamlit as st

from dashboard import core
from dashboard import gallery_state as gs
from dashboard.image_view import LabelView, boxes_to_draw, label_views, with_people
from dashboard.navigation import Page
from labelkit import render, similar, vocabulary
from labelkit.db.models import Image, ImageStatus, LabelRow, LabelSource, ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import people as people_q
from labelkit.db.queries import text as text_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries.text import ImageText
from labelkit.errors import LabelkitError, NotFound
from labelkit.search.expand import catalog_label, known_details
from labelkit.search.service import get_searcher
from labelkit.uploads import delete_image, retry_image

REFRESH_SECONDS = 3
logger = logging.getLogger(__name__)

user = core.require_user()
viewer = user.viewer
image_id = str(st.query_params.get("image") or "")


def _not_found() -> None:
    st.title("Image not found")
    st.error(
        "Image not found. It may have been deleted, or the link is wrong.",
        icon=":material/image_not_supported:",
    )
    st.page_link(Page.GALLERY, label="Back to the gallery", icon=":material/photo_library:")
    st.stop()


def _load() -> tuple[Image, list[LabelRow], dict[str, str], list[ImageText]]:
    try:
        with core.db() as s:
            image = image_q.get_image(session=s, viewer=viewer, image_id=image_id)
            rows = label_q.labels_for_image(session=s, viewer=viewer, image_id=image_id)
            names = user_q.usernames(session=s, user_ids=[r.created_by or "" for r in rows])
            owner = user_q.usernames(session=s, user_ids=[image.owner_id]) if viewer.is_admin else {}
            texts = text_q.text_of_image(session=s, viewer=viewer, image_id=image_id)
    except NotFound:
        _not_found()
        raise  # unreachable: st.stop() raised
    names.update(owner)
    return image, rows, names, texts


def _faces(image: Image) -> list[tuple[people_q.FaceRecord, str | None]]:
    """The faces on the photo with their people's names: the owner's own only (face data is
    personal; an admin looking at someone else's photo sees none)."""
    if image.owner_id != viewer.user_id:
        return []
    with core.db() as s:
        return people_q.image_faces(session=s, owner_id=viewer.user_id, image_id=image.id)


def _people_line(faces: list[tuple[people_q.FaceRecord, str | None]]) -> None:
    """Who is in the photo, each a link to their page on People."""
    people = {face.person_id: name for face, name in faces if face.person_id}
    if not people:
        return
    cols = st.columns(min(len(people), 4) + 1, vertical_alignment="center")
    cols[0].caption(":material/groups: In this photo")
    for col, (pid, name) in zip(
        cols[1:], sorted(people.items(), key=lambda p: (p[1] is None, p[1] or "")), strict=False
    ):
        col.page_link(
            Page.PEOPLE,
            label=name or "Unnamed person",
            icon=":material/person:",
            query_params={"person": str(pid)},
        )


#: The tag the local labeller's model version carries when its text model ran (LocalLabeler).
TEXT_MODEL_TAG = "+ocr"


def _text_boxes(texts: list[ImageText]) -> list[render.Box]:
    """The lines read, as boxes captioned with their text (cut to 40 characters)."""
    return [
        render.Box(
            left=line.box.left,
            top=line.box.top,
            width=line.box.width,
            height=line.box.height,
            caption=line.text if len(line.text) <= 40 else line.text[:39] + "…",
        )
        for found in texts
        for line in found.lines
    ]


def _text_section(image: Image, texts: list[ImageText]) -> None:
    """ "Text in the photo": the lines read, top to bottom, each with how sure the model is."""
    if image.status != ImageStatus.LABELLED:
        return
    lines = [line for found in texts for line in found.lines]
    st.subheader("Text in the photo")
    if not lines:
        if TEXT_MODEL_TAG in (image.model_version or ""):
            st.caption("No text was read in this photo.")
        else:
            st.caption("This photo was labelled without the text model: `labelkit relabel` reads its text.")
        return
    st.caption(
        f"{len(lines)} line{'s' if len(lines) != 1 else ''} read, top to bottom; % = how sure the text "
        "model is of the line (its letters' mean). Search the gallery for any of these words."
    )
    with st.container(border=True, key="image_text"):
        for line in lines:
            st.markdown(f"{core.md(line.text)} · {line.confidence:.0f}%")


def _review(name: str, review: ReviewState) -> None:
    try:
        with core.db() as s:
            label_q.set_human_label(session=s, viewer=viewer, image_id=image_id, name=name, review=review)
    except NotFound:
        _not_found()
    core.data_changed()


QUALITY = (
    ("brightness", "Brightness", "Mean luminance on Rekognition's scale: 0 is black, 100 is white."),
    (
        "sharpness",
        "Sharpness",
        "How crisp the edges are (variance of the Laplacian, mapped to 0-100): "
        "blurred photos score low, crisp ones high.",
    ),
    (
        "contrast",
        "Contrast",
        "RMS contrast on a 0-100 scale: a flat grey image is 0, half black and half white is 100.",
    ),
)
ADD_KEY = "add_label_round"  # bumped after each added label, so the form's widgets start empty


def _add_keys() -> tuple[str, str, str, str]:
    n = int(st.session_state.get(ADD_KEY, 0))
    return f"new_label::{n}", f"new_box::{n}", f"new_box_x::{n}", f"new_box_y::{n}"


def _draft_box() -> render.Box | None:
    """The box being drawn for a new label (from its sliders), or None when none is drawn."""
    name_key, on_key, x_key, y_key = _add_keys()
    if not st.session_state.get(on_key):
        return None
    (x0, x1), (y0, y1) = st.session_state.get(x_key, BOX_X), st.session_state.get(y_key, BOX_Y)
    name = vocabulary.tidy(str(st.session_state.get(name_key) or "")) or "new label"
    return render.Box(
        left=x0 / 100, top=y0 / 100, width=(x1 - x0) / 100, height=(y1 - y0) / 100, caption=name
    )


BOX_X, BOX_Y = (25, 75), (25, 75)  # the draft box starts in the middle, half the photo


def _add(name: str, box: render.Box | None) -> None:
    """Add (confirm) a label as a person, with the box drawn for it if any. A catalogue name
    gets the catalogue's parents, aliases and categories (Beach: Outdoors, "seaside")."""
    known = known_details(name)
    try:
        with core.db() as s:
            if box is None or box.width <= 0 or box.height <= 0:
                label_q.set_human_label(
                    session=s,
                    viewer=viewer,
                    image_id=image_id,
                    name=name,
                    review=ReviewState.CONFIRMED,
                    known=known,
                )
            else:
                label_q.import_human_label(
                    session=s,
                    viewer=viewer,
                    image_id=image_id,
                    name=name,
                    review=ReviewState.CONFIRMED,
                    boxes=[(box.left, box.top, box.width, box.height, 100.0)],
                    known=known,
                )
    except NotFound:
        _not_found()
    core.data_changed()
    st.session_state.pop("label_choice", None)
    st.session_state[ADD_KEY] = int(st.session_state.get(ADD_KEY, 0)) + 1
    st.rerun()


def _vocabulary(labels: list[LabelView], rows: list[LabelRow]) -> list[vocabulary.Term]:
    """Names people may mean: this image's labels (with their aliases) and parents, then every
    label name and parent on the viewer's images."""
    own = {r.name: tuple(r.aliases or ()) for r in rows if r.instance == 0}
    terms = [vocabulary.Term(name, aliases) for name, aliases in own.items()]
    terms += [vocabulary.Term(p) for lab in labels for p in lab.parents]
    terms += [vocabulary.Term(t) for t in core.suggestions(viewer)]
    return terms


def _add_label_section(labels: list[LabelView]) -> None:
    name_key, on_key, x_key, y_key = _add_keys()
    st.markdown("**Add a label**")
    typed = st.text_input(
        "Add a label",
        key=name_key,
        max_chars=vocabulary.MAX_NAME,
        placeholder="e.g. Sofa",
        label_visibility="collapsed",
        help="Matched against the labels you already have: case and spaces do not matter.",
    )
    draw = st.toggle("Draw a box for it", key=on_key, help="Mark where it is; the box shows on the photo.")
    box = None
    if draw:
        st.slider("Box left – right (% of the width)", 0, 100, BOX_X, key=x_key)
        st.slider("Box top – bottom (% of the height)", 0, 100, BOX_Y, key=y_key)
        box = _draft_box()
        if box is not None and (box.width <= 0 or box.height <= 0):
            st.warning("The box has no area: move the sliders apart.", icon=":material/crop_free:")
    if st.button("Add", key="add_label", icon=":material/add:"):
        found = vocabulary.match_label(typed, _vocabulary(labels, rows))
        if not found.typed:
            st.warning("Type a label first.")
            return
        catalogued = catalog_label(typed)
        if catalogued is not None:
            # A label the labeller knows, typed in any case ("beach"): it is that label,
            # spelled its way ("Beach"), so search, counts and aliases ("seaside") find it.
            _add(catalogued.name, box)
        if not found.suggestions:
            _add(found.name, box)  # a known name (spelled the known way), or a new one
        known = ([found.exact] if found.exact else []) + found.suggestions
        options = known if found.exact else [*known, found.typed]
        st.session_state["label_choice"] = {"typed": found.typed, "options": options, "known": known}
    choice = st.session_state.get("label_choice")
    if not choice or vocabulary.fold(choice["typed"]) != vocabulary.fold(typed):
        return  # nothing asked, or the text changed since
    st.caption(f"Did you mean one of these? “{core.md(vocabulary.tidy(typed))}” is close to labels you have.")
    cols = st.columns(len(choice["options"]))
    for i, (col, option) in enumerate(zip(cols, choice["options"], strict=True)):
        keep = option == choice["typed"] and option not in choice["known"]
        if col.button(
            f"Keep “{option}”" if keep else option,
            key=f"label_choice::{i}",
            type="primary" if i == 0 else "secondary",
            width="stretch",
        ):
            _add(option, box)


CONFIRM_DELETE = "confirm_delete"  # the image whose delete dialog is open


def _close_delete_dialog() -> None:
    st.session_state.pop(CONFIRM_DELETE, None)


# Open while the state names this image (asked for on every run, so any rerun keeps it open);
# closing it with × or Escape forgets the question.
@st.dialog("Delete image?", on_dismiss=_close_delete_dialog)
def _confirm_delete() -> None:
    st.warning(
        f"Delete **{core.md(image.original_name)}** and all its labels? This cannot be undone.",
        icon=":material/warning:",
    )
    d1, d2 = st.columns(2)
    if d1.button("Yes, delete", key="delete_confirm", type="primary", width="stretch"):
        _close_delete_dialog()
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
        st.switch_page(Page.GALLERY)
    if d2.button("Cancel", key="delete_cancel", width="stretch"):
        _close_delete_dialog()
        st.rerun()


SIMILAR_SHOWN = 12
SIMILAR_COLUMNS = 6


def _similar_section(image: Image) -> None:
    """Up to 12 of the owner's photos most like this one (labelkit.similar), each opening
    its own page, and a link to all of them in the gallery (``?label=similar:<id>``)."""
    st.subheader("Similar photos")
    settings = core.settings()
    if "local" not in settings.labeler_names or "classifier" not in settings.local_model_names:
        st.caption("Similar photos need the local model (the local classifier is not enabled here).")
        return
    try:
        with core.db() as s:
            found = similar.similar_images(session=s, viewer=viewer, image_id=image.id, limit=SIMILAR_SHOWN)
            shown = image_q.images_by_ids(session=s, viewer=viewer, image_ids=[i for i, _ in found])
    except NotFound:
        _not_found()
        return
    alike = [(i, sc) for i, sc in found if sc >= similar.SIMILAR_CUTOFF]
    if found and not alike:
        st.caption(
            f"No photo of yours is much like this one (similarity {similar.SIMILAR_CUTOFF:.2f} or more; "
            "1 is the same photo)."
        )
    if not found:
        if image.status == ImageStatus.LABELLED:
            st.caption(
                "No similar photos yet (or this photo was labelled before similar photos existed: "
                "`labelkit relabel --missing-features` adds what they need)."
            )
        else:
            st.caption("Similar photos appear here once this photo is labelled.")
        return
    cols = st.columns(SIMILAR_COLUMNS)
    for n, (other_id, score) in enumerate((i, sc) for i, sc in alike if i in shown):
        other = shown[other_id]
        with cols[n % SIMILAR_COLUMNS]:
            thumb = core.thumbnail(other, square=True)
            if thumb:
                st.image(thumb, width="stretch")
            st.page_link(Page.IMAGE, label=other.original_name, query_params={"image": other.id})
            st.caption(
                f"similarity {score:.2f}", help="Cosine similarity of the two photos: 1 is the same photo."
            )
    st.page_link(
        Page.GALLERY,
        label="Show all similar" if alike else "Show the closest photos anyway",
        icon=":material/photo_library:",
        query_params={gs.LABEL: f"similar:{image.id}"},
    )


if not image_id:
    _not_found()
image, rows, names, texts = _load()
labels = label_views(rows, names)

KEY_PREVIOUS, KEY_NEXT = "Left", "Right"


def _browse_bar() -> None:
    """Back to the gallery's view, and the previous / next image within its filter."""
    view = gs.GalleryState.from_params(st.query_params.to_dict())
    try:
        with core.db() as s:
            owner = user_q.get_user_by_username(session=s, username=view.owner) if view.owner else None
            owner_id = owner.id if owner is not None and viewer.is_admin else None
            flt = view.to_filter(owner_id=owner_id)
            text = (flt.label or "").strip()  # the gallery's search text (labelkit.search)
            found = None
            if text:
                # The gallery ranks a search best match first: walk that order, not upload order.
                found = get_searcher(core.settings().resolved_model_dir).neighbours(
                    session=s,
                    viewer=viewer,
                    text=text,
                    flt=replace(flt, label=None),
                    image_id=image_id,
                    page=view.page,
                    page_size=gs.PAGE_SIZE,
                )
            around = found or image_q.neighbours(
                session=s, viewer=viewer, flt=replace(flt, label=None) if text else flt, image_id=image_id
            )
    except NotFound:
        _not_found()
        raise  # unreachable: st.stop() raised
    back = replace(view, page=around.position // gs.PAGE_SIZE + 1).to_params()
    filtered = view.to_filter() != image_q.ImageFilter()
    b, prev, nxt = st.columns([6, 1.2, 1.2], vertical_alignment="center")
    b.page_link(Page.GALLERY, label="Back to the gallery", icon=":material/arrow_back:", query_params=back)
    for col, target, text, icon, key, shortcut in (
        (prev, around.newer, "Previous", ":material/chevron_left:", "image_previous", KEY_PREVIOUS),
        (nxt, around.older, "Next", ":material/chevron_right:", "image_next", KEY_NEXT),
    ):
        if col.button(
            text,
            key=key,
            icon=icon,
            disabled=target is None,
            shortcut=shortcut,
            width="stretch",
            help=f"{text} {'in this filter' if filtered else 'in the gallery'} ({shortcut} key)",
        ):
            st.switch_page(Page.IMAGE, query_params={"image": str(target), **back})


_browse_bar()
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
with st.expander("Image id", icon=":material/tag:"):
    # st.code has a copy button: the id (or the search for photos like it) is one click away.
    st.code(image.id, language=None)
    st.caption("Search the gallery for photos like this one:")
    st.code(f"similar:{image.id}", language=None)

if image.status in (ImageStatus.PENDING, ImageStatus.LABELLING):

    def _watch() -> None:
        core.require_live_session()  # a fragment rerun skips the entry point's check
        with core.db() as s:
            try:
                now = image_q.get_image(session=s, viewer=viewer, image_id=image_id).status
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
    standing_boxes = boxes_to_draw(rows)  # a rejected label's boxes are not drawn
    faces = _faces(image)
    named = [(face.box, name) for face, name in faces if name]
    if named:
        standing_boxes = with_people(standing_boxes, named)
    text_boxes = _text_boxes(texts)
    t1, t2 = st.columns(2)
    show_boxes = bool(standing_boxes) and t1.toggle("Show boxes", value=True, key="show_boxes")
    show_text = bool(text_boxes) and t2.toggle(
        "Show text boxes", value=False, key="show_text_boxes", help="Outline each line of text read."
    )
    boxes = (standing_boxes if show_boxes else []) + (text_boxes if show_text else [])
    draft = _draft_box()
    if draft is not None:  # the box being drawn for a new label, shown live
        boxes.append(draft)
    photo = core.display_copy(image, boxes)
    if photo:
        st.image(photo, width="stretch")
    else:
        st.warning("The photo could not be read from storage.", icon=":material/broken_image:")
    _people_line(faces)

    props = image.properties or {}
    if props:
        st.subheader("Image properties")
        for col, (key, title, meaning) in zip(st.columns(len(QUALITY)), QUALITY, strict=True):
            col.metric(f"{title} (0-100)", f"{float(props.get(key, 0)):.0f} / 100", help=meaning, border=True)
        swatches = render.colour_swatches_html(props.get("dominant_colors") or [])
        if swatches:
            st.caption("Dominant colours")
            # Only validated hex codes and escaped text are in this HTML (see labelkit.render).
            st.markdown(swatches, unsafe_allow_html=True)

    _text_section(image, texts)
    _similar_section(image)

with right:
    st.subheader("Labels")
    if any(lab.confidence is not None for lab in labels):
        st.caption("% = how sure the labeller is that the photo shows the label.")
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
            if lab.suggested and lab.review is None:
                title += " · :violet[suggested from your labels]"
            st.markdown(title)
            if lab.confidence is not None:
                st.progress(min(1.0, lab.confidence / 100))
            details = []
            if lab.parents:
                details.append("parents: " + ", ".join(core.md(p) for p in lab.parents))
            if lab.categories:
                details.append("categories: " + ", ".join(core.md(c) for c in lab.categories))
            if lab.boxes:
                details.append(lab.box_text())
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
                if lab.implied_by:
                    # Not the person's own verdict: it went with the label it rolled up from.
                    note.caption(
                        f":{colour}[Rejected with {core.md(lab.implied_by)}] by "
                        f"{core.md(lab.reviewed_by or '?')}{when}",
                        help=f"{lab.name} was only there because of {lab.implied_by}. Confirm it to keep it.",
                    )
                else:
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

    _add_label_section(labels)

    st.divider()
    if st.button("Delete image…", key="delete", icon=":material/delete:"):
        st.session_state[CONFIRM_DELETE] = image_id
    if st.session_state.get(CONFIRM_DELETE) == image_id:
        _confirm_delete()
