"""Bundles: a zip of the images under readable, unique, safe names and the annotation file
pointing at them."""

from __future__ import annotations

import logging
import re
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from labelkit.errors import ObjectNotFound
from labelkit.interchange.coco import to_coco
from labelkit.interchange.gather import ImageEntry
from labelkit.interchange.manifest import to_manifest
from labelkit.interchange.options import FORMAT_FILES, ExportFormat
from labelkit.storage import ObjectStore

logger = logging.getLogger(__name__)


BUNDLE_FORMATS = (ExportFormat.COCO, ExportFormat.MANIFEST)


BUNDLE_IMAGES = "images"


_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


_MAX_STEM = 80


def bundle_names(entries: Sequence[ImageEntry]) -> dict[str, str]:
    """Image id -> ``images/<name>`` for a bundle: the uploaded file's name made safe for any
    file system and tool (ASCII letters, digits, ``.``, ``_``, ``-``; at most 80 characters
    before the extension; the extension is the stored object's, which was sniffed from the
    bytes), unique without regard to case (``cat.jpg``, ``cat-2.jpg``, ...), in export order."""
    taken: set[str] = set()
    out = {}
    for e in entries:
        ext = PurePosixPath(e.image.object_key).suffix.lower()
        stem = PurePosixPath(e.image.original_name.replace("\\", "/")).name
        if PurePosixPath(stem).suffix:
            stem = stem[: -len(PurePosixPath(stem).suffix)]
        ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
        stem = _NAME_CHARS.sub("_", ascii_stem).strip("._-")[:_MAX_STEM].rstrip("._-") or "image"
        name, n = f"{stem}{ext}", 1
        while name.casefold() in taken:
            n += 1
            name = f"{stem}-{n}{ext}"
        taken.add(name.casefold())
        out[e.image.id] = f"{BUNDLE_IMAGES}/{name}"
    return out


def _bundle_readme(fmt: ExportFormat, annotation: str, refs_base: str) -> str:
    where = (
        f"source-ref is {refs_base.rstrip('/')}/images/<name>: upload this folder there"
        if refs_base
        else "source-ref is the image's path relative to this file (images/<name>)"
    )
    what = (
        f"{annotation}: COCO detection JSON; each image's file_name is its path in this folder "
        "(images/<name>), relative to the annotation file."
        if fmt is ExportFormat.COCO
        else f"{annotation}: SageMaker Ground Truth / Rekognition Custom Labels manifest; {where}."
    )
    return (
        "Labelkit export bundle\n\n"
        f"{what}\n"
        "images/: the photos, under their uploaded names made safe and unique.\n"
        "Every box lies inside its image.\n"
    )


@dataclass(frozen=True, slots=True)
class BundleSummary:
    images: int
    labels: int
    missing: tuple[str, ...]  # object keys the store no longer has (left out of the bundle)


def write_bundle(
    out: BinaryIO,
    entries: Sequence[ImageEntry],
    *,
    fmt: ExportFormat | str,
    store: ObjectStore,
    storage_url: str = "",
    source_ref_base: str = "",
) -> BundleSummary:
    """A zip on ``out``: the images under :func:`bundle_names` and the annotation file
    (COCO or manifest) pointing at them. A manifest's ``source-ref`` is relative
    (``images/<name>``), or ``<source_ref_base>/images/<name>`` when given (where the
    unpacked folder will be uploaded, e.g. ``s3://bucket/dataset``). Images the store no
    longer has are left out, and named in the summary."""
    fmt = ExportFormat(fmt)
    if fmt not in BUNDLE_FORMATS:
        raise ValueError(f"a bundle is made for COCO or a manifest, not {fmt.value}")
    names = bundle_names(entries)
    kept: list[ImageEntry] = []
    missing: list[str] = []
    with zipfile.ZipFile(out, "w") as zf:
        for e in entries:
            try:
                data = store.get(e.image.object_key)
            except ObjectNotFound:
                logger.warning("bundle: %s is not in the store; left out", e.image.object_key)
                missing.append(e.image.object_key)
                continue
            # Photos are compressed already: stored, not deflated.
            zf.writestr(names[e.image.id], data, compress_type=zipfile.ZIP_STORED)
            kept.append(e)
        annotation = FORMAT_FILES[fmt][0]
        if fmt is ExportFormat.COCO:
            doc = to_coco(kept, file_names=names)
        else:
            base = source_ref_base.rstrip("/")
            refs = {i: f"{base}/{n}" if base else n for i, n in names.items()}
            doc = to_manifest(kept, storage_url=storage_url or "./data/images", refs=refs)
        zf.writestr(annotation, doc, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(
            "README.txt", _bundle_readme(fmt, annotation, source_ref_base), compress_type=zipfile.ZIP_DEFLATED
        )
    return BundleSummary(images=len(kept), labels=sum(len(e.labels) for e in kept), missing=tuple(missing))


def bundle_file_name(fmt: ExportFormat | str) -> str:
    return f"labelkit-{ExportFormat(fmt).value}-bundle.zip"
