"""Review, per photo: each photo with every model label nobody has confirmed or rejected yet,
drawn with its boxes; accept or reject each label, or all of a photo's labels at once.

The photo with the least certain label comes first. One photo is the *current* one: the
keyboard acts on it (A accepts all its labels, X rejects them, N / P move to the next /
previous photo). It is marked (a coloured border and a badge), and after a key or a review
moves it, the browser scrolls it into view: each photo's block (the photo beside its labels)
fits a 1000 px high window, and on a narrow screen the photo is small enough that its
"Accept all" / "Reject all" stay in view. Photos can be ticked, or all of them selected
(every page, not only the one shown), and accepted or rejected together.
"""

from __future__ import annotations

import streamlit as st

from dashboard import core
from dashboard.navigation import Page
from labelkit import render, reviewing
from labelkit.db.models import ImageStatus, ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import stats as stats_q
from labelkit.errors import NotFound

PAGE_SIZE = 5  # photos per page
PHOTO_SIDE = 720  # pixels a side of each photo sent (boxes drawn on it)
KEY_ACCEPT, KEY_REJECT, KEY_NEXT, KEY_PREVIOUS = "A", "X", "N", "P"  # "R" is Streamlit's rerun
SELECTED = "review_selected"  # ids of ticked photos, kept across pages
ALL_SHOWN = "review_all_shown"  # the photos "Select all" counted on the last screen shown
FOLLOW = "review_follow"  # set when a key or a review moved the current photo: scroll to it
LABELS_UNSCROLLED = 7  # a photo with more labels lists them in a scrolling box, so its block fits
LABELS_BOX_PX = 400  # that box's height

BLOCK = "photo::"  # a photo's block: its key, and so its CSS class st-key-photo--<id>
# Photos are capped in height (a portrait photo would make its block taller than the window;
# a narrow screen stacks the photo above its labels and needs the actions in view too). A
# label's row keeps its buttons on its line (the name wraps instead). The current photo's
# block gets a coloured border; scroll-margin keeps it clear of Streamlit's header.
BLOCK_CSS = """<style>
div[class*="st-key-photo--"] { scroll-margin-top: 4.5rem; }
div[class*="st-key-photo--"] [data-testid="stImage"] img { max-height: 32rem; object-fit: contain; }
@media (max-width: 640px) {
  div[class*="st-key-photo--"] [data-testid="stImage"] img { max-height: 14rem; }
}
div[class*="st-key-label_row--"] { flex-wrap: nowrap; }
div[class*="st-key-label_row--"] > div:first-child { flex: 1 1 0; min-width: 0; }
div.st-key-photo--%(id)s { border: 3px solid var(--primary-color, #4f46e5); }
</style>"""
# Brings the current photo's block into view (Streamlit has no scroll API). It waits a few
# frames for the rerun's layout to settle, scrolls only when the block is not wholly in view,
# and keeps it there for a moment while late elements shift the page, unless the person
# scrolls first. %(n)s changes on every use, so the script runs again.
SCROLL_JS = """<script data-labelkit="review-scroll">
(() => {
  const block = () => document.querySelector("div.st-key-photo--%(id)s");
  let stop = false;
  const mine = () => { stop = true; };
  const events = ["wheel", "touchstart", "mousedown", "keydown"];
  events.forEach(e => window.addEventListener(e, mine, {once: true, capture: true}));
  const until = Date.now() + 3000;
  let frames = 0;
  const step = () => {
    const el = block();
    if (el && ++frames >= 3) {
      const r = el.getBoundingClientRect();
      const top = parseFloat(getComputedStyle(el).scrollMarginTop) || 0;
      const aligned = Math.abs(r.top - top) <= 2;
      if (r.top < top - 2 || (r.bottom > window.innerHeight + 1 && !aligned)) {
        el.scrollIntoView({block: "start"});
      }
    }
    if (!stop && Date.now() < until) requestAnimationFrame(step);
    else events.forEach(e => window.removeEventListener(e, mine, {capture: true}));
  };
  requestAnimationFrame(step);
})(/* %(n)s */);
</script>"""

user = core.require_user()
viewer = user.viewer

st.title("Review")
st.caption(
    "Photos whose machine labels nobody has reviewed yet: suggestions learned from your own labels "
    "first, then the least certain first. Your answers are kept beside the labellers'."
)

page_no = int(st.session_state.get("review_page", 1) or 1)
# "Select all N photos" acts on exactly the N photos it counted on the screen the person saw
# (issue 25): a photo that arrives after that is not reviewed by it.
shown_all: list[str] = list(st.session_state.get(ALL_SHOWN) or [])
with core.db() as s:
    all_ids = review_q.review_image_ids(session=s, viewer=viewer)
    photos = len(all_ids)
    waiting = review_q.count_review_queue(session=s, viewer=viewer)
    pages = max(1, -(-photos // PAGE_SIZE))
    page_no = min(page_no, pages)
    items = review_q.review_images(
        session=s, viewer=viewer, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE
    )
    headlines = stats_q.primary_labels(session=s, viewer=viewer, image_ids=[i.image.id for i in items])
    statuses = image_q.status_counts(session=s, viewer=viewer) if photos == 0 else None
owned = sum(statuses.values()) if statuses is not None else None
in_progress = statuses[ImageStatus.PENDING] + statuses[ImageStatus.LABELLING] if statuses is not None else 0


def _label_review(image_id: str, names: list[str], review: ReviewState) -> int:
    """Record one review for these labels of one photo; returns how many were recorded."""
    done = 0
    with core.db() as s:
        for name in names:
            try:
                label_q.set_human_label(session=s, viewer=viewer, image_id=image_id, name=name, review=review)
            except NotFound:
                return done  # deleted meanwhile, or never the viewer's: nothing to record
            done += 1
    core.data_changed()
    st.session_state[FOLLOW] = True
    return done


def _bulk_review(image_ids: list[str], review: ReviewState) -> int:
    """Every label awaiting review on these photos, in short transactions (others' work goes
    on meanwhile), with a progress bar."""
    bar = st.progress(0.0, text="Reviewing…")

    def _progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Reviewing… {done:,} of {total:,} labels")

    n = reviewing.review_images(
        engine=core.services().engine, viewer=viewer, image_ids=image_ids, review=review, progress=_progress
    )
    bar.empty()
    core.data_changed()
    return n


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


if owned == 0:
    st.info(
        "No photos yet — upload some: the model labels them, and its labels wait here for your review.",
        icon=":material/photo_camera:",
    )
    st.page_link(Page.UPLOAD, label="Upload photos", icon=":material/upload:")
    st.stop()
if photos == 0 and in_progress:
    st.info(
        f"Nothing to review yet: {_plural(in_progress, 'photo')} still being labelled. Their labels "
        "wait here once the model is done.",
        icon=":material/autorenew:",
    )
    st.page_link(Page.GALLERY, label="Back to the gallery", icon=":material/photo_library:")
    st.stop()
if photos == 0:
    st.success("Nothing to review — every label has been looked at.", icon=":material/task_alt:")
    st.page_link(Page.GALLERY, label="Back to the gallery", icon=":material/photo_library:")
    st.stop()

st.caption(f"{_plural(photos, 'photo')} with {_plural(waiting, 'label')} waiting for review")

# ------------------------------------------------------------------ the current photo (keyboard)
if st.session_state.get("review_cursor_page") != page_no:
    st.session_state["review_cursor"] = 0  # another page: its first photo is current
cursor = int(st.session_state.get("review_cursor", 0) or 0)
if cursor >= len(items):
    cursor = 0  # the photos before it were reviewed and left the page
st.session_state["review_cursor"] = cursor
st.session_state["review_cursor_page"] = page_no


def _move(step: int) -> None:
    """Make the next (or previous) photo current, turning the page at either end."""
    at = int(st.session_state.get("review_cursor", 0) or 0) + step
    page = int(st.session_state.get("review_page", 1) or 1)
    if at >= len(items):
        page, at = (page % pages) + 1, 0
    elif at < 0:
        page = pages if page == 1 else page - 1
        at = PAGE_SIZE - 1 if page < pages else max(0, (photos - 1) % PAGE_SIZE)
    st.session_state["review_page"] = page
    st.session_state["review_cursor"] = at
    st.session_state["review_cursor_page"] = page
    st.session_state[FOLLOW] = True


# ------------------------------------------------------------------ selection and bulk actions
selected: set[str] = st.session_state.setdefault(SELECTED, set())


def _tick(image_id: str) -> None:
    if st.session_state.get(f"rsel::{image_id}"):
        selected.add(image_id)
    else:
        selected.discard(image_id)


with st.container(border=True):
    bar = st.columns([2.6, 1.6, 1.6, 2.2], vertical_alignment="center")
    every = bar[0].checkbox(
        f"Select all {_plural(photos, 'photo')}",
        key="review_select_all",
        help="Every photo waiting for review, on every page, not only this one.",
    )
    chosen = photos if every else len(selected)
    accept_sel = bar[1].button(
        f"Accept selected ({chosen})",
        key="accept_selected",
        icon=":material/done_all:",
        type="primary",
        disabled=not chosen,
    )
    reject_sel = bar[2].button(
        f"Reject selected ({chosen})", key="reject_selected", icon=":material/close:", disabled=not chosen
    )
    bar[3].caption(
        f"Keys: **{KEY_ACCEPT}** accept all · **{KEY_REJECT}** reject all · **{KEY_NEXT}** next photo · "
        f"**{KEY_PREVIOUS}** previous photo"
    )
if accept_sel or reject_sel:
    verdict = ReviewState.CONFIRMED if accept_sel else ReviewState.REJECTED
    n = _bulk_review((shown_all or all_ids) if every else sorted(selected), verdict)
    selected.clear()
    st.session_state.pop("review_select_all", None)
    core.flash(f"{'Accepted' if accept_sel else 'Rejected'} {_plural(n, 'label')}.")
    st.rerun()
core.show_flash()
st.session_state[ALL_SHOWN] = all_ids  # what "Select all" counted on this screen

nav = st.container(horizontal=True, gap="small")
if nav.button("Previous", key="review_previous", icon=":material/arrow_upward:", shortcut=KEY_PREVIOUS):
    _move(-1)
    st.rerun()
if nav.button("Next photo", key="review_next", icon=":material/arrow_downward:", shortcut=KEY_NEXT):
    _move(1)
    st.rerun()


# ------------------------------------------------------------------ one block per photo
def _photo(item: review_q.ReviewImage) -> None:
    boxes = [
        # The label's name only: its confidence is listed beside the photo (one number per thing).
        render.Box(left=b[0], top=b[1], width=b[2], height=b[3], caption=lab.name)
        for lab in item.labels
        for b in lab.boxes
    ]
    photo = core.display_copy(item.image, boxes, side=PHOTO_SIDE)
    if photo:
        st.image(photo, width="stretch")
    else:
        st.caption(":material/broken_image: preview unavailable")


def _label_row(img_id: str, lab: review_q.ReviewLabel) -> None:
    """One label on one line: its name and confidence (parents and boxes below, small), then
    its two buttons."""
    row = st.container(
        horizontal=True, gap="small", vertical_alignment="center", key=f"label_row::{img_id}::{lab.name}"
    )
    extra = []
    if lab.parents:
        extra.append("parents: " + ", ".join(core.md(p) for p in lab.parents))
    if lab.boxes:
        extra.append(f"{len(lab.boxes)} box{'es' if len(lab.boxes) > 1 else ''}")
    text = f"**{core.md(lab.name)}** · {lab.confidence:.1f}%"
    if lab.suggested:
        text += " · :violet-badge[suggested]"
        extra.append("learned from the photos you gave this label")
    if extra:
        text += "  \n:small[:gray[" + " · ".join(extra) + "]]"
    row.markdown(text, width="stretch")
    if row.button(
        "Accept", key=f"accept::{img_id}::{lab.name}", icon=":material/check:", help=f"Accept {lab.name}"
    ):
        _label_review(img_id, [lab.name], ReviewState.CONFIRMED)
        st.rerun()
    if row.button(
        "Reject", key=f"reject::{img_id}::{lab.name}", icon=":material/close:", help=f"Reject {lab.name}"
    ):
        _label_review(img_id, [lab.name], ReviewState.REJECTED)
        st.rerun()


current_id = items[cursor].image.id if items else ""
st.html(BLOCK_CSS % {"id": current_id})
for i, item in enumerate(items):
    img, labels = item.image, item.labels
    current = i == cursor
    names = [lab.name for lab in labels]
    with st.container(border=True, key=f"{BLOCK}{img.id}"):
        c_photo, c_labels = st.columns(2, gap="medium")
        with c_photo:
            _photo(item)
        with c_labels:
            # (a horizontal container, not columns: a narrow screen would stack columns)
            head = st.container(horizontal=True, gap="small", vertical_alignment="center")
            if every:
                head.markdown(":material/check_box:", help="Selected with all the others", width="content")
            else:
                head.checkbox(
                    "Select",
                    key=f"rsel::{img.id}",
                    value=img.id in selected,
                    on_change=_tick,
                    args=(img.id,),
                    label_visibility="collapsed",
                )
            head.markdown(f"**{core.md(img.original_name)}**")
            if img.id in headlines:
                # The photo's headline label (what its gallery card shows), labels accepted or not.
                head.markdown(
                    f":gray[{core.md(headlines[img.id][0])}]",
                    help="What this photo is of: its headline label",
                )
            tags = st.container(horizontal=True, gap="small", vertical_alignment="center")
            if current:
                with tags:
                    st.badge("Current photo — the keys act here", icon=":material/keyboard:", color="violet")
            tags.page_link(Page.IMAGE, label="Open image", query_params={"image": img.id})
            # The photo's own actions come before its labels: on a narrow screen (photo above
            # labels) they stay in view with the photo.
            a, b = st.columns(2)
            # Only the current photo's buttons carry the shortcuts (a key can trigger one button).
            if a.button(
                f"Accept all ({len(labels)})",
                key=f"accept_all::{img.id}",
                icon=":material/done_all:",
                type="primary" if current else "secondary",
                shortcut=KEY_ACCEPT if current else None,
                width="stretch",
            ):
                _label_review(img.id, names, ReviewState.CONFIRMED)
                st.rerun()
            if b.button(
                f"Reject all ({len(labels)})",
                key=f"reject_all::{img.id}",
                icon=":material/close:",
                shortcut=KEY_REJECT if current else None,
                width="stretch",
            ):
                _label_review(img.id, names, ReviewState.REJECTED)
                st.rerun()
            box = st.container(height=LABELS_BOX_PX) if len(labels) > LABELS_UNSCROLLED else st.container()
            with box:
                for lab in labels:
                    _label_row(img.id, lab)

if st.session_state.pop(FOLLOW, False) and current_id:
    st.session_state["review_scrolls"] = int(st.session_state.get("review_scrolls", 0)) + 1
    st.html(
        SCROLL_JS % {"id": current_id, "n": st.session_state["review_scrolls"]},
        unsafe_allow_javascript=True,
    )

if pages > 1:
    st.pagination(pages, key="review_page")
