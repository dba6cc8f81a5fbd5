"""Export labels (CSV, JSON Lines, COCO, Ground Truth / Rekognition Custom Labels manifest)
with filters, and import a JSON Lines export or a manifest back as the signed-in user's
human labels. The files are built by ``labelkit.exports`` (also ``python -m labelkit.export``)."""

from __future__ import annotations

from datetime import date

import streamlit as st

from dashboard import core
from labelkit import exports
from labelkit.db import repository as repo
from labelkit.errors import LabelkitError

user = core.require_user()
viewer = user.viewer

st.title("Export")
st.caption(
    "Take your labels anywhere: a spreadsheet, a COCO training set, or a SageMaker Ground Truth / "
    "Rekognition Custom Labels manifest. JSON Lines can be imported back."
)

with core.db() as s:
    owners = repo.image_owners(session=s, viewer=viewer)

with st.container(border=True):
    c1, c2 = st.columns([2, 2])
    fmt = c1.selectbox(
        "Format",
        list(exports.ExportFormat),
        format_func=lambda f: exports.FORMAT_TITLES[exports.ExportFormat(f)],
        key="export_format",
    )
    if user.is_admin:
        owner = c2.selectbox(
            "Owner",
            [name for _, name in owners],
            index=None,
            placeholder="Every user",
            key="export_owner",
        )
    else:
        owner = None  # a user's export only ever holds their own images
        c2.text_input("Owner", value=user.username, disabled=True, key="export_owner_self")
    f1, f2, f3, f4 = st.columns([2.4, 1.4, 1.6, 1.4], vertical_alignment="bottom")
    labels = f1.multiselect(
        "Labels",
        core.suggestions(viewer),
        key="export_labels",
        placeholder="Any label",
        accept_new_options=True,
        help="A parent label takes its children too: “Animal” exports cats and dogs.",
    )
    min_conf = f2.slider("Min confidence", 0, 100, 0, step=5, key="export_conf")
    dates = f3.date_input("Uploaded between", value=[], key="export_dates", format="YYYY-MM-DD")
    reviewed_only = f4.toggle(
        "Reviewed only",
        key="export_reviewed",
        help="Only labels a person confirmed, plus labels people added.",
    )

since = until = None
if isinstance(dates, tuple | list) and dates:
    since = dates[0] if isinstance(dates[0], date) else None
    until = dates[-1] if isinstance(dates[-1], date) else None

options = exports.ExportOptions(
    owner=owner,
    labels=tuple(labels),
    reviewed_only=reviewed_only,
    since=since,
    until=until,
    min_confidence=float(min_conf) if min_conf else None,
)
try:
    with core.db() as s:
        result = exports.build_export(
            session=s,
            viewer=viewer,
            fmt=fmt or exports.ExportFormat.JSONL,
            options=options,
            storage_url=core.settings().resolved_storage_url,
        )
except LabelkitError as e:
    st.error(core.md(e), icon=":material/error:")
    st.stop()

st.write(f"**{result.images}** images, **{result.labels}** labels selected.")
st.download_button(
    f"Download {result.file_name}",
    data=result.data,
    file_name=result.file_name,
    mime=result.mime,
    icon=":material/download:",
    key="export_download",
    on_click="ignore",
    disabled=result.images == 0,
    type="primary",
)

with st.expander("Import labels", icon=":material/upload_file:"):
    st.caption(
        "A JSON Lines export or a Ground Truth manifest. Its labels become your human labels "
        "(confirmed or rejected) on your images, matched by image id or object key; unknown images "
        "are reported, never created."
    )
    upload = st.file_uploader("File", type=["jsonl", "manifest", "json", "txt"], key="import_file")
    replace = st.checkbox("Replace the human labels of the images in the file", key="import_replace")
    if st.button("Import", key="import_go", disabled=upload is None, icon=":material/publish:"):
        assert upload is not None
        with core.db() as s:
            report = exports.import_text(
                session=s,
                viewer=viewer,
                text=upload.getvalue(),
                storage_url=core.settings().resolved_storage_url,
                replace=replace,
            )
        core.data_changed()
        (st.warning if report.unknown or report.errors else st.success)(core.md(report.summary()))
