"""Bulk import (issue 27 item 4): every image file under some folders, files or an S3 prefix,
through the same intake as the dashboard's upload (:func:`labelkit.uploads.upload_image`).

* **What is taken**: files named as images (:data:`IMAGE_SUFFIXES`, any case) in the folders
  given (their subfolders too with ``recursive``), and every file named on its own, whatever
  its name. Hidden files and folders (a leading dot: ``.DS_Store``, ``.thumbnails``) are left
  out; so are symbolic links that lead out of the folder walked.
* **Resumable**: a file whose bytes (sha256) the user already has is *skipped* before any
  decoding, so running the same import again after a stop only sends what is new.
* **Verdicts**: one per file, ``accepted`` / ``skipped`` / ``refused`` with the intake's own
  sentence; the caller prints them, counts them and writes the refusals to a CSV.

Nothing here prints: :mod:`labelkit.upload` is the command line over it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from labelkit import analytics
from labelkit.db.engine import transaction
from labelkit.db.queries import images as image_q
from labelkit.errors import StorageError
from labelkit.services import Services
from labelkit.uploads import upload_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
S3_SCHEME = "s3://"

Verdict = Literal["accepted", "skipped", "refused"]


@dataclass(frozen=True, slots=True)
class Source:
    """One file to import: where it is (shown to the person) and how big it is."""

    location: str  # a path, or s3://bucket/key
    size: int
    name: str  # the name the image gets (the file's own name)


@dataclass(frozen=True, slots=True)
class FileVerdict:
    source: Source
    verdict: Verdict
    reason: str = ""
    image_id: str | None = None


# --- finding the files ---------------------------------------------------------------------------


def _hidden(part: str) -> bool:
    return part.startswith(".")


def local_sources(paths: Sequence[Path], *, recursive: bool) -> tuple[list[Source], list[str]]:
    """The files to import under ``paths`` (sorted per folder, so runs are repeatable), and a
    sentence for each path that cannot be used."""
    found: list[Source] = []
    problems: list[str] = []
    for path in paths:
        if path.is_file():
            found.append(Source(str(path), path.stat().st_size, path.name))
        elif path.is_dir():
            found += _walk(path, recursive=recursive)
        elif path.exists():
            problems.append(f"{path}: not a file or a folder")
        else:
            problems.append(f"{path}: no such file or folder")
    return found, problems


def _walk(folder: Path, *, recursive: bool) -> list[Source]:
    root = folder.resolve()
    out: list[Source] = []
    for here, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not _hidden(d)) if recursive else []
        for name in sorted(files):
            path = Path(here) / name
            if _hidden(name) or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                real = path.resolve(strict=True)
                if not real.is_file() or not real.is_relative_to(root):
                    continue  # a link to somewhere else (or a device): not this folder's photo
                size = real.stat().st_size
            except OSError:
                continue  # gone, or a broken link
            out.append(Source(str(path), size, name))
    return out


def parse_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix)."""
    rest = url[len(S3_SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{url}: name a bucket, as s3://bucket/prefix")
    return bucket, prefix


def s3_sources(client: Any, url: str, *, recursive: bool) -> list[Source]:
    """The image objects under an S3 prefix (with ``recursive`` also under its "subfolders")."""
    bucket, prefix = parse_s3(url)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    paginate = client.get_paginator("list_objects_v2").paginate
    kwargs = {"Bucket": bucket, "Prefix": prefix} | ({} if recursive else {"Delimiter": "/"})
    out = []
    for page in paginate(**kwargs):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            name = key.rsplit("/", 1)[-1]
            if not name or _hidden(name) or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if any(_hidden(part) for part in key[len(prefix) :].split("/")[:-1]):
                continue
            out.append(Source(f"{S3_SCHEME}{bucket}/{key}", int(obj["Size"]), name))
    return out


# --- importing -------------------------------------------------------------------------------------


def _read(source: Source, s3_client: Any) -> bytes:
    if source.location.startswith(S3_SCHEME):
        bucket, key = parse_s3(source.location)
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
        return bytes(body.read())
    return Path(source.location).read_bytes()


def _already_there(services: Services, owner_id: str, data: bytes) -> tuple[str, str] | None:
    """(image id, its name) when the user has these bytes stored already; None when not, or
    when it cannot be told (then the intake decides, and says why if it refuses)."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        with transaction(services.engine) as s:
            earlier = image_q.find_duplicate(session=s, owner_id=owner_id, sha256=digest)
        if earlier is None or not services.store.exists(earlier.object_key):
            return None
    except (SQLAlchemyError, StorageError):
        return None
    return earlier.id, earlier.original_name


def import_one(services: Services, owner_id: str, source: Source, *, s3_client: Any = None) -> FileVerdict:
    """One file through the intake: skipped when the user already has these bytes."""
    limit = services.settings.max_upload_bytes
    if source.size > limit:  # refused before reading a byte
        return FileVerdict(
            source,
            "refused",
            f"The file is {source.size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB.",
        )
    try:
        data = _read(source, s3_client)
    except Exception as exc:  # an unreadable file is this file's verdict, not the run's end
        return FileVerdict(source, "refused", f"Could not be read: {type(exc).__name__}.")
    if (earlier := _already_there(services, owner_id, data)) is not None:
        return FileVerdict(source, "skipped", f"Already uploaded as “{earlier[1]}”.", earlier[0])
    result = upload_image(services=services, owner_id=owner_id, filename=source.name, data=data)
    if result.outcome == "accepted":
        return FileVerdict(source, "accepted", result.reason or "", result.image_id)
    if result.outcome == "duplicate":
        return FileVerdict(source, "skipped", result.reason or "Already uploaded.", result.image_id)
    return FileVerdict(source, "refused", result.reason or "Refused.")


def refusals_csv(verdicts: Iterable[FileVerdict]) -> bytes:
    """The refused files as CSV (file, size, reason), through the exports' writer: safe to open
    in a spreadsheet (a name starting like a formula is shown, not run)."""
    refused = [v for v in verdicts if v.verdict == "refused"]
    return analytics.to_csv(
        pd.DataFrame(
            {
                "file": [v.source.location for v in refused],
                "size_bytes": [v.source.size for v in refused],
                "reason": [v.reason for v in refused],
            }
        )
    )
