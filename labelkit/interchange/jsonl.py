"""JSON Lines: one image per line with its labels, the round-trip format.

Each line also has ``text``: the text read in the photo, per labeller version, each as
Rekognition's DetectText response (``{"model_version", "TextDetections": [...]}``; ``[]`` when
none was read). Imports read the labels only: text is the model's, read again by relabelling."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from labelkit.domain import detect_text_response
from labelkit.interchange.boxes import box_edges
from labelkit.interchange.csvfile import _iso
from labelkit.interchange.gather import ImageEntry


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
        "primary": entry.primary,
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
                        **dict(zip(("left", "top", "width", "height"), box_edges(b, 1, 1, 6), strict=True)),
                        "confidence": round(b.confidence, 4),
                    }
                    for b in lab.boxes
                ],
                **({"rejected_with": lab.rejected_with} if lab.rejected_with else {}),
            }
            for lab in entry.labels
        ],
        "text": [
            {"model_version": found.model_version, **detect_text_response(found.detections)}
            for found in entry.text
        ],
    }


def _lines(records: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def to_jsonl(entries: Sequence[ImageEntry]) -> bytes:
    return _lines(jsonl_record(e) for e in entries)
