"""Pipeline health (admins only): queue depth, in-flight and dead-lettered messages,
status counts, throughput, failed images (retry) and dead letters (redrive). Refreshes itself."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard import core
from dashboard.navigation import Page
from labelkit import analytics
from labelkit.db.models import ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.db.queries import users as user_q
from labelkit.errors import LabelkitError, NotFound
from labelkit.queue.events import MalformedEvent, parse_s3_event
from labelkit.uploads import relabel_outdated, retry_image

REFRESH_SECONDS = 5

user = core.require_user()
if not user.is_admin:
    # Navigation offers this page to non-admins only by URL (hidden from the menu), so that
    # a typed or shared link says why it shows nothing rather than showing the gallery.
    st.title("Pipeline")
    st.error("Only admins can see the pipeline.", icon=":material/lock:")
    st.page_link(Page.GALLERY, label="Back to the gallery", icon=":material/photo_library:")
    st.stop()
viewer = user.viewer
svc = core.services()

st.title("Pipeline")
st.caption(f"Refreshes every {REFRESH_SECONDS} s. Admin view: every user's images.")


def _retry(image_ids: list[str]) -> int:
    done = 0
    for image_id in image_ids:
        try:
            retry_image(services=svc, viewer=viewer, image_id=image_id)
            done += 1
        except NotFound:
            continue  # deleted meanwhile
    core.data_changed()
    return done


def _dead_letter_key(body: str) -> str | None:
    try:
        events = parse_s3_event(body)
    except MalformedEvent:
        return None
    return svc.store.relative_key(events[0].key) if events else None


@st.fragment(run_every=REFRESH_SECONDS)
def _live() -> None:
    core.require_live_session()  # a fragment rerun skips the entry point's check
    try:
        stats = svc.queue.stats()
        dead = list(svc.queue.dead_letters(limit=100))
    except LabelkitError as e:
        st.error(f"The queue cannot be reached: {core.md(e)}", icon=":material/cloud_off:")
        stats, dead = None, []
    with core.db() as s:
        counts = image_q.status_counts(session=s, viewer=viewer)
        failed = image_q.failed_images(session=s, viewer=viewer, limit=100)
        per_minute = analytics.labelled_per_minute(session=s, viewer=viewer, minutes=60)
        keys = {m.receipt_handle: _dead_letter_key(m.body) for m in dead}
        by_key = image_q.images_by_object_keys(session=s, viewer=viewer, keys=[k for k in keys.values() if k])
        owners = user_q.usernames(session=s, user_ids=[i.owner_id for i in failed])

    q = st.columns(3)
    q[0].metric("Waiting in queue", stats.visible if stats else "—", border=True)
    q[1].metric("In flight", stats.in_flight if stats else "—", border=True)
    q[2].metric("Dead letters", stats.dead if stats else "—", border=True)
    c = st.columns(4)
    for col, status in zip(c, ImageStatus, strict=True):
        col.metric(core.STATUS_STYLE[status][0], counts[status], border=True)

    st.subheader("Images labelled per minute (last hour)")
    st.caption(f"{int(per_minute['images'].sum())} in the last hour")
    chart = (
        alt.Chart(per_minute)
        .mark_bar()
        .encode(
            x=alt.X("minute:T", title=None),
            y=alt.Y("images:Q", title="Images"),
            tooltip=["minute:T", "images"],
        )
        .properties(height=180)
    )
    st.altair_chart(chart, width="stretch")

    st.subheader(f"Failed images ({len(failed)})")
    if not failed:
        st.caption("No failures.")
    else:
        if st.button("Retry all failed", key="retry_all", icon=":material/refresh:", type="primary"):
            n = _retry([i.id for i in failed])
            st.toast(f"Queued {n} image{'s' if n != 1 else ''} again.")
            st.rerun(scope="fragment")
        for img in failed:
            with st.container(border=True):
                a, b, d = st.columns([3, 4, 1.2], vertical_alignment="center")
                a.markdown(f"**{core.md(img.original_name)}**")
                a.caption(f"{core.md(owners.get(img.owner_id, '?'))} · {img.attempts} attempt(s)")
                b.caption(core.md(img.failure_reason or "unknown reason"))
                if d.button("Retry", key=f"retry::{img.id}", icon=":material/refresh:", width="stretch"):
                    _retry([img.id])
                    st.rerun(scope="fragment")

    st.subheader(f"Dead letters ({len(dead)})")
    if not dead:
        st.caption("The dead-letter queue is empty.")
    for m in dead:
        key = keys.get(m.receipt_handle)
        dead_img = by_key.get(key or "")
        with st.container(border=True):
            a, d = st.columns([7, 1.2], vertical_alignment="center")
            name = dead_img.original_name if dead_img else (key or "unreadable message")
            a.markdown(f"**{core.md(name)}** · delivered {m.receive_count}×")
            a.caption(core.md(key or m.body[:200]))
            if d.button("Redrive", key=f"redrive::{m.message_id}", icon=":material/replay:", width="stretch"):
                try:
                    svc.queue.redrive(m.receipt_handle)
                except LabelkitError as e:
                    st.error(f"Redrive failed: {core.md(e)}")
                else:
                    st.rerun(scope="fragment")


_live()


@st.cache_resource
def _current_model_version() -> str:
    """What the workers write now (the configured labellers' versions); models load lazily."""
    from labelkit.labelers import make_labelers

    return "+".join(lab.model_version for lab in make_labelers(svc.settings))


st.subheader("Relabel")
current = _current_model_version()
st.caption(
    f"New labels come from `{current}`. Images labelled by earlier model versions keep their "
    "labels until relabelled; relabelling replaces the old model labels and keeps every review."
)
if st.button("Relabel images from earlier versions", key="relabel", icon=":material/autorenew:"):
    n = relabel_outdated(services=svc, viewer=viewer, model_version=current)
    core.data_changed()
    st.toast(f"Queued {n} image{'s' if n != 1 else ''} for relabelling.")
