"""Upload many photos at once; each goes through intake and gets a clear per-file outcome."""

from __future__ import annotations

import streamlit as st

from dashboard import core
from labelkit.images import ACCEPTED_FORMATS
from labelkit.uploads import UploadResult, upload_image

user = core.require_user()
settings = core.settings()

st.title("Upload photos")
limit_mb = settings.max_upload_bytes / (1024 * 1024)
st.caption(
    f"{', '.join(ACCEPTED_FORMATS)} · up to {limit_mb:g} MB and "
    f"{settings.max_pixels / 1e6:g} megapixels each. New photos are labelled automatically."
)

# The widget's limit is Labelkit's in the browser's decimal megabytes (UploadLimits); the
# server's caps sit above it. The widget is re-keyed after each batch so it empties itself.
widget_mb = settings.upload_limits.widget_mb
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
    for i, f in enumerate(files, start=1):
        progress.progress((i - 1) / len(files), text=f"Checking {i} of {len(files)}…")
        results.append(upload_image(services=svc, owner_id=user.user_id, filename=f.name, data=f.getvalue()))
        core.release_upload(f)  # stored or refused, its bytes are not needed here any more
    progress.progress(1.0, text="Done")
    st.session_state["upload_results"] = results
    st.session_state["upload_batch"] = batch + 1
    core.data_changed()
    st.rerun()

results = st.session_state.get("upload_results") or []
if results:
    accepted = [r for r in results if r.outcome == "accepted"]
    duplicates = [r for r in results if r.outcome == "duplicate"]
    rejected = [r for r in results if r.outcome == "rejected"]
    st.subheader("Last upload")
    c1, c2, c3 = st.columns(3)
    c1.metric("Accepted", len(accepted), border=True)
    c2.metric("Duplicates", len(duplicates), border=True)
    c3.metric("Rejected", len(rejected), border=True)
    for r in results:
        with st.container(border=True):
            left, right = st.columns([5, 1], vertical_alignment="center")
            with left:
                if r.outcome == "accepted":
                    st.markdown(
                        f":green[:material/check_circle:] **{core.md(r.name)}** — queued for labelling"
                    )
                elif r.outcome == "duplicate":
                    st.markdown(
                        f":orange[:material/content_copy:] **{core.md(r.name)}** — duplicate: "
                        f"{core.md(r.reason or 'already uploaded.')}"
                    )
                else:
                    st.markdown(
                        f":red[:material/block:] **{core.md(r.name)}** — rejected: {core.md(r.reason or '')}"
                    )
            with right:
                if r.image_id:
                    st.page_link(core.PAGE_IMAGE, label="Open", query_params={"image": r.image_id})
    cols = st.columns([1, 1, 4])
    with cols[0]:
        st.page_link(core.PAGE_GALLERY, label="Go to the gallery", icon=":material/photo_library:")
    with cols[1]:
        if st.button("Clear this list", key="clear_results", type="tertiary"):
            st.session_state.pop("upload_results", None)
            st.rerun()
elif not files:
    st.info("Pick one photo or many; each file is checked on its own.", icon=":material/info:")
