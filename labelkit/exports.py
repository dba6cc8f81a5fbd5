"""Labels out of Labelkit and back in: shared tables, export formats, import.

One definition of each table, used by the notebooks, the dashboard's Export page
and ``python -m labelkit.export``. Every function takes a ``Session`` and a
:class:`~labelkit.db.repository.Viewer`; the queries live in
:mod:`labelkit.db.repository` (same scoping: a non-admin sees only their images).

Tables (pandas)::

    images_frame(session, viewer)    one row per image
    labels_frame(session, viewer)    one row per label row (image level and each box): the CSV export
    review_frame(session, viewer)    one row per person's verdict, beside the model's confidence
    suggest_min_confidence(reviews)  per label, the lowest min_confidence keeping precision >= 0.9
    confidence_pairs(labels, a, b)   two model versions' confidences side by side (compare mode)

Export formats (:class:`ExportFormat`):

``csv``
    :func:`labels_frame` as CSV (lists joined with ``"; "``, spreadsheet-safe). A label a
    person rejected stays, marked ``review = rejected`` (the model said it, a person did not
    agree); read only rows whose ``review`` is not ``rejected`` for the labels an image carries.
``jsonl``
    One image per line with its labels. The round-trip format: importing it and
    exporting again gives the same file. A label is one entry per (source, model
    version, name) with its boxes (``instances``, fractions of the image). Model
    entries carry ``review``: the person's verdict on that name (``unreviewed``,
    ``confirmed``, ``rejected``); the verdict itself is the ``source: "human"``
    entry of the same name, as it is stored.
``coco``
    COCO detection JSON: ``images`` (``file_name`` = object key, plus ``labelkit_id``),
    ``categories`` (label names, ids from 1, ``supercategory`` = first parent),
    ``annotations`` for boxes (``bbox`` = ``[x, y, w, h]`` in pixels, ``score``,
    ``source``, ``model_version``, ``review``). COCO has no image-level labels, so
    they go in a top-level extension list ``image_labels`` (``id``, ``image_id``,
    ``category_id``, ``score``, ``source``, ``model_version``, ``review``) that COCO
    tools ignore. Labels a person rejected are left out of both (and of ``categories``):
    COCO has no field saying an annotation is wrong.
``manifest``
    Amazon SageMaker Ground Truth / Rekognition Custom Labels manifest, one JSON
    object per image: ``source-ref`` (``s3://bucket/key`` in S3 mode, the file path
    in local mode); each positive label (model or human, never a rejected one) as a
    classification attribute ``label-N`` (the class id) with ``label-N-metadata``
    (``class-name``, ``confidence`` 0-1, ``type: groundtruth/image-classification``,
    ``human-annotated``, ``creation-date``, ``job-name``); boxes as ``bounding-box``
    (``image_size`` and ``annotations`` with ``class_id``, ``left``, ``top``,
    ``width``, ``height`` in pixels) with ``bounding-box-metadata`` (``class-map``,
    ``objects``, ``type: groundtruth/object-detection``, ...). Images without a
    positive label are left out (a manifest line needs a label).

Filters (:class:`ExportOptions`): owner (a username; non-admins only their own),
labels (a label name or a parent: images carrying any of them, and only the labels
that match), reviewed only (labels a person confirmed, plus labels people added),
upload date range, min confidence.

Import (:func:`import_lines`): a JSON Lines or manifest file back as human labels,
matched to images by ``image_id`` (then ``object_key``) or by the manifest's
``source-ref``. Images that are unknown (or not the importing user's) are
reported, never created. JSON Lines: ``source: "human"`` entries (or entries
with no ``source``, as hand-written files have) become human labels with their
``review`` (default ``confirmed``) and boxes; a model entry with a verdict and no
human entry of its name becomes that verdict; unreviewed model predictions are
skipped (they are the model's, already stored). Manifest: every class named is a
confirmed human label, boxes included.
"""

from __future__ import annotations

import enum
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from labelkit import analytics
from labelkit.db import repository as repo
from labelkit.db.models import Image, LabelRow, LabelSource, ReviewState
from labelkit.db.repository import Viewer
from labelkit.errors import NotFound, PermissionDenied

# --------------------------------------------------------------------------- options


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    COCO = "coco"
    MANIFEST = "manifest"


FORMAT_FILES: dict[ExportFormat, tuple[str, str]] = {
    ExportFormat.CSV: ("labelkit-labels.csv", "text/csv"),
    ExportFormat.JSONL: ("labelkit-labels.jsonl", "application/x-ndjson"),
    ExportFormat.COCO: ("labelkit-coco.json", "application/json"),
    ExportFormat.MANIFEST: ("labelkit-labels.manifest", "application/x-ndjson"),
}

FORMAT_TITLES: dict[ExportFormat, str] = {
    ExportFormat.CSV: "CSV (one row per label)",
    ExportFormat.JSONL: "JSON Lines (one image per line; re-importable)",
    ExportFormat.COCO: "COCO (boxes + image_labels extension)",
    ExportFormat.MANIFEST: "SageMaker Ground Truth / Rekognition Custom Labels manifest",
}


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What to export. Dates are UTC days, both ends included; datetimes are taken as they are."""

    owner: str | None = None  # username; admins only for others
    labels: tuple[str, ...] = ()  # label names or parents (any of)
    reviewed_only: bool = False
    since: date | datetime | None = None
    until: date | datetime | None = None
    min_confidence: float | None = None

    @property
    def filters_labels(self) -> bool:
        return bool(self.labels) or self.reviewed_only or self.min_confidence is not None


def _start(value: date | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value, time.min, tzinfo=UTC)


def _end(value: date | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC)


# --------------------------------------------------------------------------- gathering


@dataclass(slots=True)
class BoxEntry:
    left: float
    top: float
    width: float
    height: float
    confidence: float


@dataclass(slots=True)
class LabelEntry:
    """One label of one image from one source/model version, with its boxes."""

    name: str
    source: str
    model_version: str
    confidence: float
    parents: list[str]
    aliases: list[str]
    categories: list[str]
    review: str
    created_at: datetime | None
    boxes: list[BoxEntry] = field(default_factory=list)


@dataclass(slots=True)
class ImageEntry:
    image: Image
    owner: str
    labels: list[LabelEntry] = field(default_factory=list)


def _entries(rows: Sequence[LabelRow]) -> list[LabelEntry]:
    """Rows of one image grouped into entries; model entries get the person's verdict on their name."""
    groups: dict[tuple[str, str, str], list[LabelRow]] = {}
    for row in rows:
        groups.setdefault((LabelSource(row.source).value, row.model_version, row.name), []).append(row)
    verdicts = {
        name: ReviewState(rs[0].review).value
        for (source, _, name), rs in groups.items()
        if source == LabelSource.HUMAN.value
    }
    out = []
    for (source, version, name), rs in groups.items():
        rs.sort(key=lambda r: r.instance)
        head = rs[0]
        review = ReviewState(head.review).value if source == LabelSource.HUMAN.value else None
        out.append(
            LabelEntry(
                name=name,
                source=source,
                model_version=version,
                confidence=float(head.confidence) if head.instance == 0 else 100.0,
                parents=list(head.parents or []),
                aliases=list(head.aliases or []),
                categories=list(head.categories or []),
                review=review or verdicts.get(name, ReviewState.UNREVIEWED.value),
                created_at=head.created_at,
                boxes=[
                    BoxEntry(
                        left=float(r.box_left or 0.0),
                        top=float(r.box_top or 0.0),
                        width=float(r.box_width or 0.0),
                        height=float(r.box_height or 0.0),
                        confidence=float(r.confidence),
                    )
                    for r in rs
                    if r.instance > 0 and r.box_left is not None
                ],
            )
        )
    # Model labels first (by version), then people's; most confident first within each.
    out.sort(key=lambda e: (e.source != "model", e.model_version, -e.confidence, e.name))
    return out


def _keep(entry: LabelEntry, options: ExportOptions, wanted: set[str]) -> bool:
    if wanted and entry.name.casefold() not in wanted and not wanted & {p.casefold() for p in entry.parents}:
        return False
    if options.reviewed_only and entry.review != ReviewState.CONFIRMED.value:
        return False
    return options.min_confidence is None or entry.confidence >= options.min_confidence


def resolve_owner(*, session: Session, viewer: Viewer, owner: str | None) -> str | None:
    """The owner's user id for a username filter. Non-admins may only name themselves."""
    if not owner:
        return None
    user = repo.get_user_by_username(session=session, username=owner)
    if not viewer.is_admin:
        if user is None or user.id != viewer.user_id:
            raise PermissionDenied("you can only export your own images")
        return user.id
    if user is None:
        raise NotFound(f"no user {owner!r}")
    return user.id


NOTEBOOK_USER = "notebook"


def viewer_for(*, session: Session, username: str | None = None) -> Viewer:
    """The scope of a notebook or script: every image (as an admin) when ``username`` is None,
    else that user's own images only (even for an admin, so the numbers are theirs)."""
    if not username:
        return Viewer(user_id=NOTEBOOK_USER, is_admin=True)
    user = repo.get_user_by_username(session=session, username=username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return Viewer(user_id=user.id, is_admin=False)


def collect(*, session: Session, viewer: Viewer, options: ExportOptions | None = None) -> list[ImageEntry]:
    """The viewer's images and labels that ``options`` select, oldest image first."""
    options = options or ExportOptions()
    owner_id = resolve_owner(session=session, viewer=viewer, owner=options.owner)
    images = repo.export_images(
        session=session,
        viewer=viewer,
        owner_id=owner_id,
        since=_start(options.since),
        until=_end(options.until),
        terms=options.labels,
    )
    rows: dict[str, list[LabelRow]] = {}
    for row in repo.export_label_rows(session=session, viewer=viewer, image_ids=[i.id for i in images]):
        rows.setdefault(row.image_id, []).append(row)
    names = repo.usernames(session=session, user_ids={i.owner_id for i in images})
    wanted = {t.strip().casefold() for t in options.labels if t.strip()}
    out = []
    for image in images:
        labels = [e for e in _entries(rows.get(image.id, [])) if _keep(e, options, wanted)]
        if labels or not options.filters_labels:
            out.append(ImageEntry(image=image, owner=names.get(image.owner_id, ""), labels=labels))
    return out


# --------------------------------------------------------------------------- tables

IMAGE_COLUMNS = [
    "image_id",
    "owner",
    "original_name",
    "object_key",
    "status",
    "width",
    "height",
    "bytes",
    "content_type",
    "model_version",
    "uploaded_at",
    "labelled_at",
]

LABEL_COLUMNS = [
    "image_id",
    "original_name",
    "object_key",
    "owner",
    "width",
    "height",
    "label",
    "instance",
    "confidence",
    "source",
    "model_version",
    "parents",
    "categories",
    "review",
    "box_left_px",
    "box_top_px",
    "box_width_px",
    "box_height_px",
    "box_left",
    "box_top",
    "box_width",
    "box_height",
    "uploaded_at",
    "created_at",
]

REVIEW_COLUMNS = ["image_id", "label", "model_version", "confidence", "review", "added", "reviewed_at"]

SUGGESTION_COLUMNS = [
    "label",
    "reviewed",
    "confirmed",
    "rejected",
    "precision",
    "suggested_min_confidence",
    "precision_at_suggestion",
    "kept",
    "note",
]

ALL_LABELS = "(all labels)"


def images_frame(*, session: Session, viewer: Viewer, options: ExportOptions | None = None) -> pd.DataFrame:
    """One row per image the viewer may see (any status)."""
    rows = [
        {
            "image_id": e.image.id,
            "owner": e.owner,
            "original_name": e.image.original_name,
            "object_key": e.image.object_key,
            "status": str(e.image.status),
            "width": e.image.width,
            "height": e.image.height,
            "bytes": e.image.bytes,
            "content_type": e.image.content_type,
            "model_version": e.image.model_version or "",
            "uploaded_at": e.image.created_at,
            "labelled_at": e.image.labelled_at,
        }
        for e in collect(session=session, viewer=viewer, options=options)
    ]
    df = pd.DataFrame(rows, columns=IMAGE_COLUMNS)
    for col in ("uploaded_at", "labelled_at"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def _label_records(entries: Iterable[ImageEntry]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        img = e.image
        base = {
            "image_id": img.id,
            "original_name": img.original_name,
            "object_key": img.object_key,
            "owner": e.owner,
            "width": img.width,
            "height": img.height,
        }
        for lab in e.labels:
            common = {
                **base,
                "label": lab.name,
                "source": lab.source,
                "model_version": lab.model_version,
                "parents": list(lab.parents),
                "categories": list(lab.categories),
                "review": lab.review,
                "uploaded_at": img.created_at,
                "created_at": lab.created_at,
            }
            out.append({**common, "instance": 0, "confidence": round(lab.confidence, 4)})
            for i, b in enumerate(lab.boxes, start=1):
                out.append(
                    {
                        **common,
                        "instance": i,
                        "confidence": round(b.confidence, 4),
                        "box_left_px": round(b.left * img.width, 1),
                        "box_top_px": round(b.top * img.height, 1),
                        "box_width_px": round(b.width * img.width, 1),
                        "box_height_px": round(b.height * img.height, 1),
                        "box_left": round(b.left, 6),
                        "box_top": round(b.top, 6),
                        "box_width": round(b.width, 6),
                        "box_height": round(b.height, 6),
                    }
                )
    return out


def _label_df(entries: Iterable[ImageEntry]) -> pd.DataFrame:
    df = pd.DataFrame(_label_records(entries), columns=LABEL_COLUMNS)
    for col in ("uploaded_at", "created_at"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def labels_frame(*, session: Session, viewer: Viewer, options: ExportOptions | None = None) -> pd.DataFrame:
    """One row per label row: the image-level label (``instance`` 0, no box) and each of its
    boxes (``instance`` 1..n, in pixels and in fractions). ``review`` is the person's verdict
    on the name (human rows: their own). ``parents``/``categories`` are lists."""
    return _label_df(collect(session=session, viewer=viewer, options=options))


def review_frame(*, session: Session, viewer: Viewer) -> pd.DataFrame:
    """One row per image-level model label a person confirmed or rejected (``confidence`` is the
    model's; one row per model version), plus labels people added (``added``, no confidence)."""
    rows = []
    for e in collect(session=session, viewer=viewer):
        human = {lab.name: lab for lab in e.labels if lab.source == LabelSource.HUMAN.value}
        model_names = set()
        for lab in e.labels:
            verdict = human.get(lab.name)
            if lab.source != LabelSource.MODEL.value or verdict is None:
                continue
            model_names.add(lab.name)
            rows.append(
                {
                    "image_id": e.image.id,
                    "label": lab.name,
                    "model_version": lab.model_version,
                    "confidence": lab.confidence,
                    "review": verdict.review,
                    "added": False,
                    "reviewed_at": verdict.created_at,
                }
            )
        for name, verdict in human.items():
            if name not in model_names and verdict.review == ReviewState.CONFIRMED.value:
                rows.append(
                    {
                        "image_id": e.image.id,
                        "label": name,
                        "model_version": "",
                        "confidence": np.nan,
                        "review": verdict.review,
                        "added": True,
                        "reviewed_at": verdict.created_at,
                    }
                )
    df = pd.DataFrame(rows, columns=REVIEW_COLUMNS)
    df["reviewed_at"] = pd.to_datetime(df["reviewed_at"], utc=True)
    df["confidence"] = df["confidence"].astype(float)
    return df


def _threshold(conf: np.ndarray, ok: np.ndarray, target: float) -> tuple[float, float, int] | None:
    """Lowest threshold t (one of the confidences) whose precision among conf >= t reaches target."""
    for t in np.unique(conf):  # ascending
        kept = conf >= t
        precision = float(ok[kept].mean())
        if precision >= target:
            return float(t), precision, int(kept.sum())
    return None


def suggest_min_confidence(
    reviews: pd.DataFrame,
    *,
    target_precision: float = 0.9,
    min_reviews: int = 5,
    include_overall: bool = True,
) -> pd.DataFrame:
    """Per label, the lowest ``min_confidence`` that keeps review precision >= ``target_precision``.

    From :func:`review_frame`'s reviewed model labels: for each candidate threshold (a
    reviewed confidence), precision = confirmed / (confirmed + rejected) among the reviewed
    labels at or above it; the suggestion is the lowest threshold reaching the target,
    rounded down to 0.1 (a label exactly at it is kept). Labels with fewer than
    ``min_reviews`` reviews get no suggestion and a note saying so, as do labels that
    never reach the target. ``include_overall`` adds a row pooling every label.
    """
    scored = reviews[~reviews["added"].astype(bool)].dropna(subset=["confidence"])
    groups: list[tuple[str, pd.DataFrame]] = [(str(k), g) for k, g in scored.groupby("label", sort=True)]
    if include_overall and not scored.empty:
        groups.append((ALL_LABELS, scored))
    rows = []
    for label, g in groups:
        conf = g["confidence"].to_numpy(dtype=float)
        ok = (g["review"] == ReviewState.CONFIRMED.value).to_numpy()
        n, confirmed = len(g), int(ok.sum())
        row: dict[str, Any] = {
            "label": label,
            "reviewed": n,
            "confirmed": confirmed,
            "rejected": n - confirmed,
            "precision": round(confirmed / n, 4) if n else np.nan,
            "suggested_min_confidence": np.nan,
            "precision_at_suggestion": np.nan,
            "kept": 0,
            "note": "",
        }
        if n < min_reviews:
            row["note"] = f"not enough reviews ({n} of {min_reviews} needed)"
        else:
            found = _threshold(conf, ok, target_precision)
            if found is None:
                row["note"] = f"no threshold reaches {target_precision:.0%} precision"
            else:
                t, precision, kept = found
                row["suggested_min_confidence"] = math.floor(t * 10) / 10
                row["precision_at_suggestion"] = round(precision, 4)
                row["kept"] = kept
                row["note"] = "keeps every reviewed label" if kept == n else f"drops {n - kept} reviewed"
        rows.append(row)
    return pd.DataFrame(rows, columns=SUGGESTION_COLUMNS)


def confidence_pairs(labels: pd.DataFrame, version_a: str, version_b: str) -> pd.DataFrame:
    """Image-level confidences of two model versions side by side, per (image, label); a side
    that did not give the label has NaN. From :func:`labels_frame`."""
    model = labels[(labels["source"] == LabelSource.MODEL.value) & (labels["instance"] == 0)]
    model = model[model["model_version"].isin([version_a, version_b])]
    wide = model.pivot_table(
        index=["image_id", "original_name", "label"],
        columns="model_version",
        values="confidence",
        aggfunc="max",
    )
    wide = wide.reindex(columns=[version_a, version_b])
    wide.columns = pd.Index(["confidence_a", "confidence_b"])
    return wide.reset_index()


# --------------------------------------------------------------------------- formats


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def to_csv(entries: Sequence[ImageEntry]) -> bytes:
    df = _label_df(entries)
    for col in ("parents", "categories"):
        df[col] = df[col].map(lambda v: "; ".join(v) if isinstance(v, list) else "")
    for col in ("uploaded_at", "created_at"):
        df[col] = df[col].map(lambda v: v.isoformat() if pd.notna(v) else "")
    return analytics.to_csv(df)


def jsonl_record(entry: ImageEntry) -> dict[str, Any]:
    img = entry.image
    return {
        "image_id": img.id,
        "object_key": img.object_key,
        "original_name": img.original_name,
        "owner": entry.owner,
        "width": img.width,
        "height": img.height,
        "content_type": img.content_type,
        "sha256": img.sha256,
        "uploaded_at": _iso(img.created_at),
        "labels": [
            {
                "name": lab.name,
                "confidence": round(lab.confidence, 4),
                "source": lab.source,
                "model_version": lab.model_version,
                "review": lab.review,
                "parents": lab.parents,
                "aliases": lab.aliases,
                "categories": lab.categories,
                "instances": [
                    {
                        "left": round(b.left, 6),
                        "top": round(b.top, 6),
                        "width": round(b.width, 6),
                        "height": round(b.height, 6),
                        "confidence": round(b.confidence, 4),
                    }
                    for b in lab.boxes
                ],
            }
            for lab in entry.labels
        ],
    }


def _lines(records: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def to_jsonl(entries: Sequence[ImageEntry]) -> bytes:
    return _lines(jsonl_record(e) for e in entries)


def _positive(labels: Iterable[LabelEntry]) -> list[LabelEntry]:
    """The labels an image carries: a person's rejection outranks the model (and is no label)."""
    return [lab for lab in labels if lab.review != ReviewState.REJECTED.value]


def to_coco(entries: Sequence[ImageEntry]) -> bytes:
    # COCO has no "rejected" annotation: a label a person rejected is left out altogether.
    names = sorted({lab.name for e in entries for lab in _positive(e.labels)})
    category_ids = {n: i for i, n in enumerate(names, start=1)}
    first_parent: dict[str, str] = {}
    for e in entries:
        for lab in _positive(e.labels):
            if lab.parents:
                first_parent.setdefault(lab.name, lab.parents[0])
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    image_labels: list[dict[str, Any]] = []
    for image_id, e in enumerate(entries, start=1):
        img = e.image
        images.append(
            {
                "id": image_id,
                "file_name": img.object_key,
                "width": img.width,
                "height": img.height,
                "date_captured": _iso(img.created_at),
                "labelkit_id": img.id,
                "original_name": img.original_name,
            }
        )
        for lab in _positive(e.labels):
            common = {
                "image_id": image_id,
                "category_id": category_ids[lab.name],
                "source": lab.source,
                "model_version": lab.model_version,
                "review": lab.review,
            }
            image_labels.append(
                {"id": len(image_labels) + 1, **common, "score": round(lab.confidence / 100, 4)}
            )
            for b in lab.boxes:
                x, y = b.left * img.width, b.top * img.height
                w = min(b.width * img.width, img.width - x)
                h = min(b.height * img.height, img.height - y)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        **common,
                        "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                        "area": round(w * h, 2),
                        "iscrowd": 0,
                        "score": round(b.confidence / 100, 4),
                    }
                )
    doc = {
        "info": {
            "description": "Labelkit export. Image-level labels (COCO has none) are in 'image_labels'.",
            "version": "1.0",
            "contributor": "Labelkit",
        },
        "licenses": [],
        "images": images,
        "categories": [
            {"id": i, "name": n, "supercategory": first_parent.get(n, "")} for n, i in category_ids.items()
        ],
        "annotations": annotations,
        "image_labels": image_labels,
    }
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def source_ref(object_key: str, storage_url: str) -> str:
    """Where a manifest says the image is: ``s3://bucket/prefix/key`` or the local file path."""
    if storage_url.startswith("s3://"):
        bucket, _, prefix = storage_url[len("s3://") :].partition("/")
        prefix = prefix.strip("/")
        return f"s3://{bucket}/{prefix + '/' if prefix else ''}{object_key}"
    return (Path(storage_url).expanduser().resolve() / object_key).as_posix()


def key_from_source_ref(ref: str, storage_url: str) -> str:
    """Inverse of :func:`source_ref`; a path from elsewhere is matched by its ``users/...`` tail."""
    if ref.startswith("s3://"):
        path = ref[len("s3://") :].partition("/")[2]
        if storage_url.startswith("s3://"):
            prefix = storage_url[len("s3://") :].partition("/")[2].strip("/")
            if prefix and path.startswith(prefix + "/"):
                return path[len(prefix) + 1 :]
    else:
        path = ref.removeprefix("file://")
        if not storage_url.startswith("s3://"):
            root = Path(storage_url).expanduser().resolve()
            try:
                return PurePosixPath(Path(path).relative_to(root).as_posix()).as_posix()
            except ValueError:
                pass
    marker = path.rfind("users/")
    return path[marker:] if marker >= 0 else path


JOB_NAME = "labelkit-export"


def manifest_record(
    entry: ImageEntry, *, class_ids: dict[str, int], storage_url: str
) -> dict[str, Any] | None:
    """One manifest line, or None when the image has no positive label."""
    img = entry.image
    positive = _positive(entry.labels)
    by_name: dict[str, list[LabelEntry]] = {}
    for lab in positive:
        by_name.setdefault(lab.name, []).append(lab)
    if not by_name:
        return None

    def score(labs: list[LabelEntry]) -> float:
        human = any(lab.review == ReviewState.CONFIRMED.value for lab in labs)
        return 1.0 if human else max(lab.confidence for lab in labs) / 100

    ordered = sorted(by_name.items(), key=lambda kv: (-score(kv[1]), kv[0]))
    line: dict[str, Any] = {"source-ref": source_ref(img.object_key, storage_url)}
    boxes: list[tuple[str, BoxEntry, bool]] = []
    for i, (name, labs) in enumerate(ordered):
        human = any(lab.review == ReviewState.CONFIRMED.value for lab in labs)
        created = max((lab.created_at for lab in labs if lab.created_at), default=img.created_at)
        line[f"label-{i}"] = class_ids[name]
        line[f"label-{i}-metadata"] = {
            "class-name": name,
            "confidence": round(score(labs), 4),
            "type": "groundtruth/image-classification",
            "job-name": JOB_NAME,
            "human-annotated": "yes" if human else "no",
            "creation-date": _iso(created),
        }
        # One set of boxes per name: a person's own, else the most confident model version's.
        with_boxes = [lab for lab in labs if lab.boxes]
        if with_boxes:
            best = min(with_boxes, key=lambda lab: (lab.source != "human", -lab.confidence))
            boxes.extend((name, b, best.source == "human") for b in best.boxes)
    if boxes:
        used = sorted({class_ids[n] for n, _, _ in boxes})
        line["bounding-box"] = {
            "image_size": [{"width": img.width, "height": img.height, "depth": 3}],
            "annotations": [
                {
                    "class_id": class_ids[name],
                    "left": round(b.left * img.width),
                    "top": round(b.top * img.height),
                    "width": round(b.width * img.width),
                    "height": round(b.height * img.height),
                }
                for name, b, _ in boxes
            ],
        }
        names = {v: k for k, v in class_ids.items()}
        created = max((lab.created_at for lab in positive if lab.created_at), default=img.created_at)
        line["bounding-box-metadata"] = {
            "objects": [{"confidence": round(b.confidence / 100, 4)} for _, b, _ in boxes],
            "class-map": {str(c): names[c] for c in used},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes" if all(h for _, _, h in boxes) else "no",
            "creation-date": _iso(created),
            "job-name": JOB_NAME,
        }
    return line


def to_manifest(entries: Sequence[ImageEntry], *, storage_url: str) -> bytes:
    names = sorted({lab.name for e in entries for lab in _positive(e.labels)})
    class_ids = {n: i for i, n in enumerate(names)}
    records = (manifest_record(e, class_ids=class_ids, storage_url=storage_url) for e in entries)
    return _lines(r for r in records if r is not None)


@dataclass(frozen=True, slots=True)
class Export:
    data: bytes
    file_name: str
    mime: str
    images: int
    labels: int


def build_export(
    *,
    session: Session,
    viewer: Viewer,
    fmt: ExportFormat | str,
    options: ExportOptions | None = None,
    storage_url: str = "",
) -> Export:
    """The export file for ``fmt``. ``storage_url`` (``settings.resolved_storage_url``) is
    needed by manifests, whose ``source-ref`` says where each image is."""
    fmt = ExportFormat(fmt)
    entries = collect(session=session, viewer=viewer, options=options)
    if fmt is ExportFormat.CSV:
        data = to_csv(entries)
    elif fmt is ExportFormat.JSONL:
        data = to_jsonl(entries)
    elif fmt is ExportFormat.COCO:
        data = to_coco(entries)
    else:
        data = to_manifest(entries, storage_url=storage_url or "./data/images")
    file_name, mime = FORMAT_FILES[fmt]
    return Export(
        data=data,
        file_name=file_name,
        mime=mime,
        images=len(entries),
        labels=sum(len(e.labels) for e in entries),
    )


# --------------------------------------------------------------------------- import


@dataclass(slots=True)
class ImportReport:
    lines: int = 0
    images: int = 0  # images matched and written to
    labels: int = 0  # human labels written
    boxes: int = 0
    skipped_predictions: int = 0  # unreviewed model labels in JSON Lines (already the model's)
    unknown: list[str] = field(default_factory=list)  # image ids / keys not found (or not yours)
    errors: list[str] = field(default_factory=list)  # "line 3: ..." for lines that could not be read

    def summary(self) -> str:
        text = (
            f"{self.lines} lines: {self.labels} human labels ({self.boxes} boxes) on {self.images} images"
            f", {self.skipped_predictions} model predictions skipped"
        )
        if self.unknown:
            text += f", {len(self.unknown)} unknown images: {', '.join(self.unknown[:20])}"
            text += " …" if len(self.unknown) > 20 else ""
        if self.errors:
            more = " …" if len(self.errors) > 1 else ""
            text += f", {len(self.errors)} unreadable lines ({self.errors[0]}{more})"
        return text


@dataclass(slots=True)
class _Wanted:
    name: str
    review: ReviewState
    parents: list[str] | None = None
    aliases: list[str] | None = None
    categories: list[str] | None = None
    boxes: list[tuple[float, float, float, float, float]] = field(default_factory=list)


def _strings(value: Any) -> list[str] | None:
    return [str(v) for v in value] if isinstance(value, list) else None


def _review(value: Any, default: ReviewState) -> ReviewState:
    try:
        state = ReviewState(str(value)) if value is not None else default
    except ValueError as e:
        raise ValueError(f"unknown review {value!r}") from e
    return default if state is ReviewState.UNREVIEWED else state


def _from_jsonl(record: dict[str, Any], report: ImportReport) -> list[_Wanted]:
    labels = record.get("labels") or []
    if not isinstance(labels, list):
        raise ValueError("'labels' is not a list")
    human_names = {
        str(lab.get("name", "")) for lab in labels if lab.get("source", LabelSource.HUMAN.value) == "human"
    }
    out = []
    for lab in labels:
        name = str(lab.get("name") or "").strip()
        if not name:
            raise ValueError("a label without a name")
        source = lab.get("source", LabelSource.HUMAN.value)
        boxes = [
            (
                float(b["left"]),
                float(b["top"]),
                float(b["width"]),
                float(b["height"]),
                float(b.get("confidence", 100.0)),
            )
            for b in lab.get("instances") or []
        ]
        if source == LabelSource.HUMAN.value:
            out.append(
                _Wanted(
                    name=name,
                    review=_review(lab.get("review"), ReviewState.CONFIRMED),
                    parents=_strings(lab.get("parents")),
                    aliases=_strings(lab.get("aliases")),
                    categories=_strings(lab.get("categories")),
                    boxes=boxes,
                )
            )
        elif lab.get("review") in ("confirmed", "rejected") and name not in human_names:
            out.append(_Wanted(name=name, review=ReviewState(lab["review"])))
            human_names.add(name)
        else:
            report.skipped_predictions += 1
    return out


def _from_manifest(record: dict[str, Any], width: int, height: int) -> list[_Wanted]:
    wanted: dict[str, _Wanted] = {}
    for key, meta in record.items():
        if not key.endswith("-metadata") or not isinstance(meta, dict):
            continue
        kind = meta.get("type")
        value = record.get(key[: -len("-metadata")])
        if kind == "groundtruth/image-classification":
            name = str(meta.get("class-name") or "").strip()
            if name:
                wanted.setdefault(name, _Wanted(name=name, review=ReviewState.CONFIRMED))
        elif kind == "groundtruth/object-detection" and isinstance(value, dict):
            class_map = {str(k): str(v) for k, v in (meta.get("class-map") or {}).items()}
            size = (value.get("image_size") or [{}])[0]
            w = float(size.get("width") or width)
            h = float(size.get("height") or height)
            objects = meta.get("objects") or []
            for i, ann in enumerate(value.get("annotations") or []):
                name = class_map.get(str(ann.get("class_id")), "").strip()
                if not name:
                    raise ValueError(f"class_id {ann.get('class_id')!r} is not in the class-map")
                conf = float(objects[i].get("confidence", 1.0)) * 100 if i < len(objects) else 100.0

                def unit(v: Any, size: float) -> float:
                    return min(1.0, max(0.0, float(v) / size))

                wanted.setdefault(name, _Wanted(name=name, review=ReviewState.CONFIRMED)).boxes.append(
                    (
                        unit(ann["left"], w),
                        unit(ann["top"], h),
                        unit(ann["width"], w),
                        unit(ann["height"], h),
                        conf,
                    )
                )
    return list(wanted.values())


def import_lines(
    *,
    session: Session,
    viewer: Viewer,
    lines: Iterable[str],
    storage_url: str = "",
    replace: bool = False,
) -> ImportReport:
    """Import a JSON Lines export or a manifest as human labels by ``viewer`` (see the module doc).

    With ``replace`` every human label on the matched images is removed first, so the
    file becomes the images' whole human truth (an import of an export then gives the
    same export back).
    """
    report = ImportReport()
    parsed: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        report.lines += 1
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            report.errors.append(f"line {number}: not JSON ({e.msg})")
            continue
        if not isinstance(record, dict):
            report.errors.append(f"line {number}: not a JSON object")
            continue
        parsed.append((number, record))

    def key_of(record: dict[str, Any]) -> str | None:
        if "source-ref" in record:
            return key_from_source_ref(str(record["source-ref"]), storage_url or "./data/images")
        return str(record["object_key"]) if record.get("object_key") else None

    by_id = repo.images_by_ids(
        session=session, viewer=viewer, image_ids=[str(r["image_id"]) for _, r in parsed if r.get("image_id")]
    )
    by_key = repo.images_by_object_keys(
        session=session, viewer=viewer, keys=[k for _, r in parsed if (k := key_of(r))]
    )
    matched: list[tuple[int, dict[str, Any], Image]] = []
    for number, record in parsed:
        key = key_of(record)
        image = by_id.get(str(record.get("image_id") or "")) or (by_key.get(key) if key else None)
        if image is None:
            report.unknown.append(str(record.get("image_id") or key or f"line {number}"))
            continue
        matched.append((number, record, image))
    if replace:
        repo.delete_human_labels(session=session, viewer=viewer, image_ids=[img.id for _, _, img in matched])
    touched: set[str] = set()
    for number, record, image in matched:
        try:
            if "source-ref" in record:
                wanted = _from_manifest(record, image.width, image.height)
            else:
                wanted = _from_jsonl(record, report)
        except (KeyError, TypeError, ValueError) as e:
            report.errors.append(f"line {number}: {e}")
            continue
        for w in wanted:
            repo.import_human_label(
                session=session,
                viewer=viewer,
                image_id=image.id,
                name=w.name,
                review=w.review,
                parents=w.parents,
                aliases=w.aliases,
                categories=w.categories,
                boxes=w.boxes,
            )
            report.labels += 1
            report.boxes += len(w.boxes)
        touched.add(image.id)
    report.images = len(touched)
    return report


def import_text(
    *, session: Session, viewer: Viewer, text: str | bytes, storage_url: str = "", replace: bool = False
) -> ImportReport:
    """:func:`import_lines` over a whole file's content."""
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig")
    return import_lines(
        session=session,
        viewer=viewer,
        lines=io.StringIO(text),
        storage_url=storage_url,
        replace=replace,
    )
