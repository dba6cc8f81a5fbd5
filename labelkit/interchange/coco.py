"""COCO detection JSON (image-level labels in the ``image_labels`` extension list)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from labelkit.interchange.boxes import box_edges
from labelkit.interchange.csvfile import _iso
from labelkit.interchange.gather import ImageEntry, positive_labels


def to_coco(entries: Sequence[ImageEntry], *, file_names: Mapping[str, str] | None = None) -> bytes:
    """COCO JSON; ``file_name`` is the object key, or ``file_names[image id]`` (a bundle's)."""
    # COCO has no "rejected" annotation: a label a person rejected is left out altogether.
    names = sorted({lab.name for e in entries for lab in positive_labels(e.labels)})
    category_ids = {n: i for i, n in enumerate(names, start=1)}
    first_parent: dict[str, str] = {}
    for e in entries:
        for lab in positive_labels(e.labels):
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
                "file_name": (file_names or {}).get(img.id, img.object_key),
                "width": img.width,
                "height": img.height,
                "date_captured": _iso(img.created_at),
                "labelkit_id": img.id,
                "original_name": img.original_name,
                "primary_label": e.primary,
            }
        )
        for lab in positive_labels(e.labels):
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
                x, y, w, h = box_edges(b, img.width, img.height, 2)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        **common,
                        "bbox": [x, y, w, h],
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
