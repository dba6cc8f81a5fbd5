"""One export, from options to the bytes to hand out (what the Export page and the CLI call),
and what a bundle needs besides :func:`write_bundle`: its size before it is made, the limit
the dashboard puts on it and the command that makes one without a limit."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from labelkit.domain import Viewer
from labelkit.errors import LabelkitError
from labelkit.interchange.bundle import BUNDLE_FORMATS, bundle_file_name, photo_bytes
from labelkit.interchange.coco import to_coco
from labelkit.interchange.csvfile import to_csv
from labelkit.interchange.gather import ImageEntry, collect
from labelkit.interchange.jsonl import to_jsonl
from labelkit.interchange.manifest import to_manifest
from labelkit.interchange.options import FORMAT_FILES, ExportFormat, ExportOptions


@dataclass(frozen=True, slots=True)
class Export:
    data: bytes
    file_name: str
    mime: str
    images: int
    labels: int
    photo_bytes: int = 0  # what the selected photos weigh (a bundle of them is about this big)


def build_export(
    *,
    session: Session,
    viewer: Viewer,
    fmt: ExportFormat | str,
    options: ExportOptions | None = None,
    storage_url: str = "",
    source_ref_base: str = "",
    csv_bom: bool = False,
) -> Export:
    """The export file for ``fmt`` (a bundle is written to a file by :func:`write_bundle`).

    ``storage_url`` (``settings.resolved_storage_url``) is where manifests say each image
    is (``source-ref``), unless ``source_ref_base`` (``s3://bucket[/prefix]``, e.g.
    ``settings.manifest_s3_url``) is given: then ``<base>/<object key>``. ``csv_bom`` starts a
    CSV with a UTF-8 byte order mark (Excel then reads it as UTF-8).
    """
    fmt = ExportFormat(fmt)
    entries = collect(session=session, viewer=viewer, options=options)
    labels = sum(len(e.labels) for e in entries)
    if fmt is ExportFormat.CSV:
        data = to_csv(entries, bom=csv_bom)
    elif fmt is ExportFormat.JSONL:
        data = to_jsonl(entries)
    elif fmt is ExportFormat.COCO:
        data = to_coco(entries)
    else:
        data = to_manifest(entries, storage_url=source_ref_base or storage_url or "./data/images")
    file_name, mime = FORMAT_FILES[fmt]
    return Export(
        data=data,
        file_name=file_name,
        mime=mime,
        images=len(entries),
        labels=labels,
        photo_bytes=photo_bytes(entries),
    )


def size_text(n: int) -> str:
    """Bytes as people say them, in decimal units to 3 figures: ``503 MB``, ``2.45 GB``,
    ``12.5 kB``, ``999 bytes``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def bundle_command(
    *,
    fmt: ExportFormat | str,
    options: ExportOptions | None = None,
    as_user: str | None = None,
    source_ref_base: str = "",
) -> str:
    """The ``labelkit export`` command line that writes the same bundle to a file (run where
    the database is; no size limit, the zip streamed to disk)."""
    fmt = ExportFormat(fmt)
    options = options or ExportOptions()
    args = ["labelkit", "export", "--format", fmt.value, "--bundle"]
    if as_user:
        args += ["--as", as_user]
    if options.owner:
        args += ["--owner", options.owner]
    for label in options.labels:
        args += ["--label", label]
    if options.reviewed_only:
        args.append("--reviewed-only")
    if options.since:
        args += ["--since", options.since.isoformat()]
    if options.until:
        args += ["--until", options.until.isoformat()]
    if options.min_confidence is not None:
        args += ["--min-confidence", f"{options.min_confidence:g}"]
    if source_ref_base:
        args += ["--source-ref-base", source_ref_base]
    args += ["--out", bundle_file_name(fmt)]
    return shlex.join(args)


class BundleTooLarge(LabelkitError):
    """A bundle above the dashboard's limit (``LABELKIT_DASHBOARD_BUNDLE_MAX_BYTES``)."""

    def __init__(self, *, size: int, limit: int, command: str) -> None:
        self.size, self.limit, self.command = size, limit, command
        self.reason = (
            f"These photos weigh {size_text(size)}, more than the {size_text(limit)} the dashboard "
            "bundles (LABELKIT_DASHBOARD_BUNDLE_MAX_BYTES). Make this bundle where Labelkit runs, "
            "with no size limit, written straight to a file"
        )
        super().__init__(f"{self.reason}: {command}")


def check_bundle_size(
    entries: Sequence[ImageEntry],
    *,
    max_bytes: int,
    fmt: ExportFormat | str,
    options: ExportOptions | None = None,
    as_user: str | None = None,
    source_ref_base: str = "",
) -> int:
    """The photos' size if a bundle of ``entries`` may be made here, else ``BundleTooLarge``
    naming the command that makes it (checked before a byte is written)."""
    fmt = ExportFormat(fmt)
    if fmt not in BUNDLE_FORMATS:
        raise ValueError(f"a bundle is made for COCO or a manifest, not {fmt.value}")
    size = photo_bytes(entries)
    if size > max_bytes:
        command = bundle_command(fmt=fmt, options=options, as_user=as_user, source_ref_base=source_ref_base)
        raise BundleTooLarge(size=size, limit=max_bytes, command=command)
    return size
