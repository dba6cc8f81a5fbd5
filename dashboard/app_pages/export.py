"""Export labels (CSV, JSON Lines, COCO, Ground Truth / Rekognition Custom Labels manifest)
with filters, and import a JSON Lines export or a manifest back as the signed-in user's
human labels. The files are built by ``labelkit.interchange`` (also ``python -m labelkit.interchange``)."""

from __future__ import annotations

from datetime import date
from typing import Any

import streamlit as st

from dashboard import core, downloads
from labelkit import interchange
from labelkit.auth import Principal
from labelkit.db.queries import bulk as bulk_q
from labelkit.errors import LabelkitError
from labelkit.search.service import get_searcher

# This tab's prepared bundle: a dict (classes defined here are new at every run), with its
# token, the (format, filters, source-ref base) it was made for, file name, size and counts.
_READY = "export_bundle_ready"


def _too_large(e: interchange.BundleTooLarge) -> None:
    st.error(core.md(e.reason) + ":", icon=":material/error:")
    st.code(e.command, language="bash", wrap_lines=True)


def _prepare(
    *,
    user: Principal,
    fmt: interchange.ExportFormat,
    options: interchange.ExportOptions,
    source_ref_base: str,
) -> dict[str, Any] | None:
    """Write the bundle to a file for this person (photo by photo, with a progress bar)."""
    svc = core.services()
    settings = svc.settings
    bar = st.progress(0.0, text="Reading the selection…")
    shown = [-1]

    def tell(done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if percent != shown[0]:  # a few hundred updates at most, however many photos
            shown[0] = percent
            bar.progress(percent / 100, text=f"Bundling photos: {done} of {total} ({percent}%)")

    try:
        with core.db() as s:
            entries = interchange.collect(session=s, viewer=user.viewer, options=options)
        size = interchange.check_bundle_size(
            entries,
            max_bytes=settings.dashboard_bundle_max_bytes,
            fmt=fmt,
            options=options,
            as_user=user.username,
            source_ref_base=source_ref_base,
        )
        with downloads.prepare(
            downloads.directory(settings),
            owner_id=user.user_id,
            file_name=interchange.bundle_file_name(fmt),
            mime="application/zip",
            expected_bytes=size,
        ) as prepared:
            assert prepared.file is not None
            summary = interchange.write_bundle(
                prepared.file,
                entries,
                fmt=fmt,
                store=svc.store,
                storage_url=settings.resolved_storage_url,
                source_ref_base=source_ref_base,
                progress=tell,
            )
    except interchange.BundleTooLarge as e:
        bar.empty()
        _too_large(e)
        return None
    except OSError as e:
        bar.empty()
        st.error(
            f"The bundle could not be written on the server: {core.md(e.strerror or e)}.",
            icon=":material/error:",
        )
        return None
    except LabelkitError as e:
        bar.empty()
        st.error(core.md(e), icon=":material/error:")
        return None
    bar.empty()
    return {
        "token": prepared.token,
        "spec": (fmt, options, source_ref_base),
        "file_name": prepared.file_name,
        "size": prepared.size,
        "images": summary.images,
        "labels": summary.labels,
        "missing": len(summary.missing),
    }


def bundle_section(
    *,
    user: Principal,
    fmt: interchange.ExportFormat,
    options: interchange.ExportOptions,
    source_ref_base: str,
    selected_images: int,
    selected_bytes: int,
) -> None:
    """Photos and labels in a zip: made on the server into a file (never in memory), up to the
    dashboard's limit, then offered for download."""
    settings = core.settings()
    root = downloads.directory(settings)
    limit = settings.dashboard_bundle_max_bytes
    spec = (fmt, options, source_ref_base)
    ready = st.session_state.get(_READY)
    if ready is not None and (
        ready["spec"] != spec or not downloads.is_ready(root, ready["token"], owner_id=user.user_id)
    ):
        if ready["spec"] != spec:
            downloads.discard(root, ready["token"])  # made for other choices
        ready = None
        st.session_state.pop(_READY, None)
    st.caption(
        f"Photos in the bundle: about {interchange.size_text(selected_bytes)} "
        f"(the dashboard makes bundles of up to {interchange.size_text(limit)})."
    )
    if selected_bytes > limit:
        _too_large(
            interchange.BundleTooLarge(
                size=selected_bytes,
                limit=limit,
                command=interchange.bundle_command(
                    fmt=fmt, options=options, as_user=user.username, source_ref_base=source_ref_base
                ),
            )
        )
        return
    if ready is None:
        slot = st.empty()
        if slot.button(
            f"Prepare {interchange.bundle_file_name(fmt)}",
            key="export_bundle_prepare",
            icon=":material/folder_zip:",
            disabled=selected_images == 0,
            type="primary",
            help="Copies the photos into a zip on the server, then offers it for download.",
        ):
            slot.empty()  # the progress bar, then the download, take its place
            ready = _prepare(user=user, fmt=fmt, options=options, source_ref_base=source_ref_base)
            if ready is not None:
                st.session_state[_READY] = ready
        if ready is None:
            return
    label = f"Download {ready['file_name']} ({interchange.size_text(ready['size'])})"
    if downloads.served():
        st.link_button(label, downloads.url(ready["token"]), icon=":material/download:", type="primary")
    else:
        # Served without dashboard/asgi.py (no download route): Streamlit's button, which
        # reads the whole file into memory when clicked.
        core.download_button(
            label,
            data=downloads.file_path(root, ready["token"]).read_bytes,
            file_name=ready["file_name"],
            mime="application/zip",
            icon=":material/download:",
            key="export_bundle_download",
            on_click="ignore",
            type="primary",
        )
    st.caption(
        f"{ready['images']} photos and {ready['labels']} labels. The file is kept on the server for an hour, "
        "or until it has been downloaded."
    )
    if ready["missing"]:
        st.warning(
            f"{ready['missing']} photos are no longer in storage and were left out.",
            icon=":material/warning:",
        )


user = core.require_user()
viewer = user.viewer

st.title("Export")
st.caption(
    "Take your labels anywhere: a spreadsheet, a COCO training set, or a SageMaker Ground Truth / "
    "Rekognition Custom Labels manifest, alone or bundled with the photos. JSON Lines and manifests "
    "can be imported back. Every box lies inside its image."
)

with core.db() as s:
    owners = bulk_q.image_owners(session=s, viewer=viewer)

with st.container(border=True):
    c1, c2 = st.columns([2, 2])
    picked = c1.selectbox(
        "Format",
        list(interchange.ExportFormat),
        format_func=lambda f: interchange.FORMAT_TITLES[interchange.ExportFormat(f)],
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
    with_people = f4.toggle(
        "People's names",
        key="export_people",
        help="Include the names you gave the people in your photos (Person: … labels). "
        "They are personal data, so they are left out unless you ask.",
    )

since = until = None
if isinstance(dates, tuple | list) and dates:
    since = dates[0] if isinstance(dates[0], date) else None
    until = dates[-1] if isinstance(dates[-1], date) else None

settings = core.settings()
fmt = interchange.ExportFormat(picked or interchange.ExportFormat.JSONL)
bundle = csv_bom = False
source_ref_base = ""
with st.container(border=True):
    if fmt is interchange.ExportFormat.CSV:
        st.caption(
            "One row per label and per box (boxes in pixels and as fractions of the image). "
            "Not the same file as the Labels page's *label summary* (one row per label name)."
        )
        csv_bom = st.toggle(
            "For Excel (UTF-8 with BOM)",
            key="export_bom",
            help="Starts the file with a byte order mark, so Excel shows accents and other "
            "non-English letters correctly.",
        )
    if fmt in interchange.BUNDLE_FORMATS:
        bundle = st.toggle(
            "Bundle with the images (zip)",
            key="export_bundle",
            help="The photos under readable, unique names in images/ and the annotation file "
            "pointing at them, so a COCO or manifest reader opens it as it is.",
        )
        if fmt is interchange.ExportFormat.COCO and not bundle:
            st.caption(
                "Without the bundle, `file_name` is the image's storage key (`users/…/….jpg`), "
                "relative to the image folder or bucket."
            )
    if fmt is interchange.ExportFormat.MANIFEST:
        s3_base = settings.manifest_source_ref_base
        if settings.uses_s3:
            st.caption(f"`source-ref` is each image's S3 URI in `{settings.resolved_storage_url}`.")
        else:
            choices = ["file"] + (["s3"] if s3_base else [])
            where = st.radio(
                "`source-ref` names",
                choices,
                format_func=lambda c: (
                    "file paths on this machine" if c == "file" else f"S3 URIs under {s3_base}/"
                ),
                index=len(choices) - 1,
                horizontal=True,
                key="export_source_ref",
            )
            if where == "s3":
                source_ref_base = s3_base
                st.caption(
                    f"`source-ref` is `{s3_base}/…`: copy the images there "
                    + ("(the bundle's folder) " if bundle else "(the image folder) ")
                    + "before SageMaker or Rekognition Custom Labels reads the manifest."
                )
            else:
                st.caption(
                    "Local mode: `source-ref` is "
                    + (
                        "each image's path inside the bundle (`images/…`)"
                        if bundle
                        else "a file path on this machine"
                    )
                    + ", not an `s3://` URI, so SageMaker and Rekognition Custom Labels cannot read it "
                    "as it is. Set `LABELKIT_MANIFEST_S3_URL=s3://bucket/prefix` to offer S3 URIs."
                )

options = interchange.ExportOptions(
    owner=owner,
    labels=tuple(labels),
    reviewed_only=reviewed_only,
    since=since,
    until=until,
    min_confidence=float(min_conf) if min_conf else None,
    people=with_people,
)
try:
    with core.db() as s:
        result = interchange.build_export(
            session=s,
            viewer=viewer,
            fmt=fmt,
            options=options,
            storage_url=settings.resolved_storage_url,
            source_ref_base=source_ref_base,
            csv_bom=csv_bom,
        )
except LabelkitError as e:
    st.error(core.md(e), icon=":material/error:")
    st.stop()

st.write(f"**{result.images}** images, **{result.labels}** labels selected.")
if bundle:
    bundle_section(
        user=user,
        fmt=fmt,
        options=options,
        source_ref_base=source_ref_base,
        selected_images=result.images,
        selected_bytes=result.photo_bytes,
    )
else:
    core.download_button(
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
        bar = st.progress(0.0, text="Importing…")

        def _progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Importing… {done:,} of {total:,} lines")

        # In short transactions (labelkit.interchange.importer): others' work goes on meanwhile.
        report = interchange.import_text(
            engine=core.services().engine,
            viewer=viewer,
            text=upload.getvalue(),
            storage_url=core.settings().resolved_storage_url,
            replace=replace,
            progress=_progress,
        )
        bar.empty()
        # The new names join the person's search vocabulary: embedded now, in the background,
        # rather than by their first search.
        get_searcher(core.settings().resolved_model_dir).cache.warm(sorted(report.names))
        core.data_changed()
        (st.warning if report.unknown or report.errors else st.success)(core.md(report.summary()))
        if report.errors:
            st.markdown("\n".join(f"- {core.md(line)}" for line in report.errors[:50]))
