"""The shared tables (pandas): one row per image, per label row, per review; review-driven
threshold suggestions and compare-mode pairs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from labelkit.db.models import MACHINE_SOURCES, LabelSource, ReviewState
from labelkit.domain import Viewer
from labelkit.interchange.boxes import box_edges
from labelkit.interchange.gather import ImageEntry, collect
from labelkit.interchange.options import ExportOptions

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
                px = box_edges(b, img.width, img.height, 1)
                unit = box_edges(b, 1, 1, 6)
                out.append(
                    {
                        **common,
                        "instance": i,
                        "confidence": round(b.confidence, 4),
                        "box_left_px": px[0],
                        "box_top_px": px[1],
                        "box_width_px": px[2],
                        "box_height_px": px[3],
                        "box_left": unit[0],
                        "box_top": unit[1],
                        "box_width": unit[2],
                        "box_height": unit[3],
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
            if lab.source not in MACHINE_SOURCES or verdict is None:
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
