"""One export, from options to the bytes (or zip) to hand out: what the Export page and the CLI
call."""

from __future__ import annotations

import io
from dataclasses import dataclass

from sqlalchemy.orm import Session

from labelkit.domain import Viewer
from labelkit.interchange.bundle import bundle_file_name, write_bundle
from labelkit.interchange.coco import to_coco
from labelkit.interchange.csvfile import to_csv
from labelkit.interchange.gather import collect
from labelkit.interchange.jsonl import to_jsonl
from labelkit.interchange.manifest import to_manifest
from labelkit.interchange.options import FORMAT_FILES, ExportFormat, ExportOptions
from labelkit.storage import ObjectStore


@dataclass(frozen=True, slots=True)
class Export:
    data: bytes
    file_name: str
    mime: str
    images: int
    labels: int
    missing: tuple[str, ...] = ()  # bundles: object keys the store no longer has


def build_export(
    *,
    session: Session,
    viewer: Viewer,
    fmt: ExportFormat | str,
    options: ExportOptions | None = None,
    storage_url: str = "",
    source_ref_base: str = "",
    csv_bom: bool = False,
    bundle: bool = False,
    store: ObjectStore | None = None,
) -> Export:
    """The export file for ``fmt``.

    ``storage_url`` (``settings.resolved_storage_url``) is where manifests say each image
    is (``source-ref``), unless ``source_ref_base`` (``s3://bucket[/prefix]``, e.g.
    ``settings.manifest_s3_url``) is given: then ``<base>/<object key>``. ``csv_bom`` starts a
    CSV with a UTF-8 byte order mark (Excel then reads it as UTF-8). ``bundle`` (COCO and
    manifests; needs ``store``) makes a zip of the images and the annotation file
    (:func:`write_bundle`).
    """
    fmt = ExportFormat(fmt)
    entries = collect(session=session, viewer=viewer, options=options)
    labels = sum(len(e.labels) for e in entries)
    if bundle:
        if store is None:
            raise ValueError("a bundle needs the object store to read the images from")
        buffer = io.BytesIO()
        summary = write_bundle(
            buffer, entries, fmt=fmt, store=store, storage_url=storage_url, source_ref_base=source_ref_base
        )
        return Export(
            data=buffer.getvalue(),
            file_name=bundle_file_name(fmt),
            mime="application/zip",
            images=summary.images,
            labels=summary.labels,
            missing=summary.missing,
        )
    if fmt is ExportFormat.CSV:
        data = to_csv(entries, bom=csv_bom)
    elif fmt is ExportFormat.JSONL:
        data = to_jsonl(entries)
    elif fmt is ExportFormat.COCO:
        data = to_coco(entries)
    else:
        data = to_manifest(entries, storage_url=source_ref_base or storage_url or "./data/images")
    file_name, mime = FORMAT_FILES[fmt]
    return Export(data=data, file_name=file_name, mime=mime, images=len(entries), labels=labels)
