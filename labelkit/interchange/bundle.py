"""Bundles: a zip of the images under readable, unique, safe names and the annotation file
pointing at them.

A bundle is written member by member to a file, each photo copied from the store in pieces
(:meth:`ObjectStore.iter_chunks`), so making one takes a few megabytes of memory however
large it is (1 GB of photos: under 300 MB for the whole dashboard process, see
``tests/reliability/test_bundle_memory.py``)."""

from __future__ import annotations

import logging
import re
import time
import unicodedata
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from labelkit.errors import ObjectNotFound
from labelkit.filenames import not_a_device_name
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
    bytes), never a Windows device name (``CON.jpg`` -> ``_CON.jpg``), unique without regard
    to case (``cat.jpg``, ``cat-2.jpg``, ...), in export order."""
    taken: set[str] = set()
    out = {}
    for e in entries:
        ext = PurePosixPath(e.image.object_key).suffix.lower()
        stem = PurePosixPath(e.image.original_name.replace("\\", "/")).name
        if PurePosixPath(stem).suffix:
            stem = stem[: -len(PurePosixPath(stem).suffix)]
        ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
        stem = _NAME_CHARS.sub("_", ascii_stem).strip("._-")[:_MAX_STEM].rstrip("._-") or "image"
        stem = not_a_device_name(stem)
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


Progress = Callable[[int, int], None]
"""Told ``(photos done, photos in all)`` after each photo (and ``(0, total)`` first)."""


def photo_bytes(entries: Sequence[ImageEntry]) -> int:
    """What the photos of a bundle weigh, by the sizes recorded at upload: the bundle is this
    plus a few hundred bytes a photo and the annotation file."""
    return sum(int(e.image.bytes or 0) for e in entries)


def _copy_photo(zf: zipfile.ZipFile, name: str, key: str, size: int, store: ObjectStore) -> bool:
    """The object at ``key`` as the zip member ``name``, copied in pieces; False if the store
    does not have it (nothing is written then)."""
    chunks = store.iter_chunks(key)
    try:
        first = next(chunks, b"")
    except ObjectNotFound:
        return False
    info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
    # Photos are compressed already: stored, not deflated.
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.file_size = size  # only decides whether the member needs ZIP64 sizes; the real count is kept
    with zf.open(info, "w") as member:
        member.write(first)
        for chunk in chunks:
            member.write(chunk)
    return True


def write_bundle(
    out: BinaryIO,
    entries: Sequence[ImageEntry],
    *,
    fmt: ExportFormat | str,
    store: ObjectStore,
    storage_url: str = "",
    source_ref_base: str = "",
    progress: Progress | None = None,
) -> BundleSummary:
    """A zip on ``out`` (a file: seekable, so each member's size is written in its header):
    the images under :func:`bundle_names` and the annotation file (COCO or manifest)
    pointing at them. A manifest's ``source-ref`` is relative (``images/<name>``), or
    ``<source_ref_base>/images/<name>`` when given (where the unpacked folder will be
    uploaded, e.g. ``s3://bucket/dataset``). Images the store no longer has are left out,
    and named in the summary. Each photo is copied from the store in pieces, never held
    whole; ``progress`` is told how many photos are done."""
    fmt = ExportFormat(fmt)
    if fmt not in BUNDLE_FORMATS:
        raise ValueError(f"a bundle is made for COCO or a manifest, not {fmt.value}")
    names = bundle_names(entries)
    kept: list[ImageEntry] = []
    missing: list[str] = []
    if progress is not None:
        progress(0, len(entries))
    with zipfile.ZipFile(out, "w") as zf:
        for done, e in enumerate(entries, start=1):
            key = e.image.object_key
            if _copy_photo(zf, names[e.image.id], key, int(e.image.bytes or 0), store):
                kept.append(e)
            else:
                logger.warning("bundle: %s is not in the store; left out", key)
                missing.append(key)
            if progress is not None:
                progress(done, len(entries))
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
