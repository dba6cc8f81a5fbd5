"""Upload many photos at once; each goes through intake and gets a clear per-file outcome, grouped
(accepted, with its labelling status live from the database; duplicates; rejected with the reason)."""

from __future__ import annotations

import streamlit as st

from dashboard import core
from dashboard.navigation import Page
from labelkit.db.models import Image, ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.db.queries import stats as stats_q
from labelkit.filenames import safe_display_name
from labelkit.images import ACCEPTED_FORMATS
from labelkit.uploads import DATABASE_FAILED, UploadResult, upload_image

NOT_TRIED = "Not saved: the database is not accepting writes just now; try again later."

REFRESH_SECONDS = 3

user = core.require_user()
settings = core.settings()

st.title("Upload photos")
limit_mb = settings.max_upload_bytes / (1024 * 1024)  # MiB, said "MB" as people do (20 MiB: "20 MB")
limit = f"{limit_mb:.0f}" if limit_mb == int(limit_mb) else f"{limit_mb:.1f}"
st.caption(
    f"{', '.join(ACCEPTED_FORMATS)} · {limit} MB per photo, at most "
    f"{settings.max_pixels / 1e6:g} megapixels. New photos are labelled automatically."
)

# The widget's limit is Labelkit's in the browser's decimal megabytes (UploadLimits), so 20 MiB
# shows as "21MB per file": that text is hidden, the caption above says the limit once. The
# server's caps sit above it. The widget is re-keyed after each batch so it empties itself.
widget_mb = settings.upload_limits.widget_mb
st.html(
    '<style>[class*="st-key-uploader_"] [data-testid="stFileUploaderDropzoneInstructions"]'
    " { display: none; }</style>"
)
batch = st.session_state.setdefault("upload_batch", 0)
files = st.file_uploader(
    "Drop photos here or browse",
    accept_multiple_files=True,
    key=f"uploader_{batch}",
    max_upload_size=widget_mb,
    help="The file type is decided from the file's contents, not its name.",
)

if files:
    progress = st.progress(0.0, text="Starting…")
    results: list[UploadResult] = []
    svc = core.services()
    refusing = False  # the database stopped taking writes: the rest are not tried
    for i, f in enumerate(files, start=1):
        progress.progress((i - 1) / len(files), text=f"Checking {i} of {len(files)}…")
        if refusing:
            results.append(UploadResult(name=safe_display_name(f.name), outcome="rejected", reason=NOT_TRIED))
        else:
            result = upload_image(services=svc, owner_id=user.user_id, filename=f.name, data=f.getvalue())
            refusing = result.reason == DATABASE_FAILED
            results.append(result)
        core.release_upload(f)  # stored or refused, its bytes are not needed here any more
    progress.progress(1.0, text="Done")
    st.session_state["upload_results"] = results
    st.session_state["upload_batch"] = batch + 1
    core.data_changed()
    st.rerun()

results = st.session_state.get("upload_results") or []


def _status_line(r: UploadResult, image: Image | None, best: dict[str, tuple[str, float]]) -> str:
    """One accepted file and where its labelling stands now (read from the database)."""
    name = f"**{core.md(r.name)}**"
    if image is None:
        return f":gray[:material/delete:] {name} — no longer there (deleted)"
    if image.status == ImageStatus.PENDING:
        return f":gray[:material/schedule:] {name} — queued for labelling"
    if image.status == ImageStatus.LABELLING:
        return f":blue[:material/autorenew:] {name} — labelling…"
    if image.status == ImageStatus.FAILED:
        reason = core.md(image.failure_reason or "unknown reason")
        return f":red[:material/error:] {name} — labelling failed: {reason}"
    if image.id in best:
        label, conf = best[image.id]
        return f":green[:material/check_circle:] {name} — labelled: {core.md(label)} · {conf:.0f}%"
    return f":green[:material/check_circle:] {name} — labelled (nothing above the confidence threshold)"


def _open_link(image_id: str | None) -> None:
    if image_id:
        st.page_link(
            Page.IMAGE, label="Open", icon=":material/open_in_new:", query_params={"image": image_id}
        )


def _statuses(ids: list[str]) -> tuple[dict[str, Image], dict[str, tuple[str, float]]]:
    with core.db() as s:
        images = image_q.images_by_ids(session=s, viewer=user.viewer, image_ids=ids)
        best = stats_q.primary_labels(session=s, viewer=user.viewer, image_ids=ids)
    return images, best


def _lookalikes(accepted: list[UploadResult]) -> dict[str, Image]:
    """The photos the owner already had that accepted uploads look like (near-duplicates)."""
    ids = [r.looks_like for r in accepted if r.looks_like]
    if not ids:
        return {}
    with core.db() as s:
        return image_q.images_by_ids(session=s, viewer=user.viewer, image_ids=ids)


def _looks_like(r: UploadResult, lookalikes: dict[str, Image]) -> None:
    """ "Looks like <photo> you already have", linked; the upload was kept all the same."""
    other = lookalikes.get(r.looks_like or "")
    if other is None:
        return
    left, right = st.columns([5, 1], vertical_alignment="center")
    left.caption(
        f":orange[:material/content_copy:] Looks like **{core.md(other.original_name)}** you already have "
        "(kept anyway; see Duplicates)."
    )
    with right:
        st.page_link(Page.IMAGE, label="View it", icon=":material/compare:", query_params={"image": other.id})


def _busy(images: dict[str, Image]) -> bool:
    return any(i.status in (ImageStatus.PENDING, ImageStatus.LABELLING) for i in images.values())


if results:
    accepted = [r for r in results if r.outcome == "accepted"]
    duplicates = [r for r in results if r.outcome == "duplicate"]
    rejected = [r for r in results if r.outcome == "rejected"]
    st.subheader("Last upload")
    c1, c2, c3 = st.columns(3)
    c1.metric("Accepted", len(accepted), border=True)
    c2.metric("Duplicates", len(duplicates), border=True)
    c3.metric("Rejected", len(rejected), border=True)
    accepted_ids = [r.image_id for r in accepted if r.image_id]
    lookalikes = _lookalikes(accepted)
    busy = _busy(_statuses(accepted_ids)[0])

    def _accepted() -> None:
        """The accepted files with their live status; reruns itself while any is being labelled."""
        core.require_live_session()  # a fragment rerun skips the entry point's check
        images, best = _statuses(accepted_ids)
        if busy and not _busy(images):
            core.data_changed()
            st.rerun()  # all done: a full run stops the timer
        st.markdown(f"#### :green[:material/check_circle:] Accepted ({len(accepted)})")
        if busy:
            st.caption(f":material/autorenew: Labelling — this list refreshes every {REFRESH_SECONDS} s.")
        for r in accepted:
            with st.container(border=True):
                left, right = st.columns([5, 1], vertical_alignment="center")
                left.markdown(_status_line(r, images.get(r.image_id or ""), best))
                with right:
                    _open_link(r.image_id)
                _looks_like(r, lookalikes)

    if accepted:
        if busy:
            st.fragment(_accepted, run_every=REFRESH_SECONDS)()
        else:
            _accepted()
    if duplicates:
        st.markdown(f"#### :orange[:material/content_copy:] Duplicates ({len(duplicates)})")
        st.caption("The same file was uploaded before; nothing new was stored.")
        for r in duplicates:
            with st.container(border=True):
                left, right = st.columns([5, 1], vertical_alignment="center")
                left.markdown(f"**{core.md(r.name)}** — {core.md(r.reason or 'already uploaded.')}")
                with right:
                    _open_link(r.image_id)
    if rejected:
        st.markdown(f"#### :red[:material/block:] Rejected ({len(rejected)})")
        st.caption("These files were not stored.")
        for r in rejected:
            with st.container(border=True):
                st.markdown(f"**{core.md(r.name)}** — rejected: {core.md(r.reason or '')}")
    cols = st.columns([1, 1, 4])
    with cols[0]:
        st.page_link(Page.GALLERY, label="Go to the gallery", icon=":material/photo_library:")
    with cols[1]:
        if st.button("Clear this list", key="clear_results", type="tertiary"):
            st.session_state.pop("upload_results", None)
            st.rerun()
elif not files:
    st.info("Pick one photo or many; each file is checked on its own.", icon=":material/info:")
