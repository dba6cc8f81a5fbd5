"""SageMaker Ground Truth / Rekognition Custom Labels manifests, and ``source-ref`` forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from labelkit.db.models import ReviewState
from labelkit.interchange.boxes import BoxEntry, box_edges
from labelkit.interchange.csvfile import _iso
from labelkit.interchange.gather import ImageEntry, LabelEntry, positive_labels
from labelkit.interchange.jsonl import _lines


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
    entry: ImageEntry, *, class_ids: dict[str, int], storage_url: str, ref: str | None = None
) -> dict[str, Any] | None:
    """One manifest line, or None when the image has no positive label. ``source-ref`` is
    ``ref`` when given (a bundle's ``images/...``), else :func:`source_ref` under ``storage_url``."""
    img = entry.image
    positive = positive_labels(entry.labels)
    by_name: dict[str, list[LabelEntry]] = {}
    for lab in positive:
        by_name.setdefault(lab.name, []).append(lab)
    if not by_name:
        return None

    def score(labs: list[LabelEntry]) -> float:
        human = any(lab.review == ReviewState.CONFIRMED.value for lab in labs)
        return 1.0 if human else max(lab.confidence for lab in labs) / 100

    ordered = sorted(by_name.items(), key=lambda kv: (-score(kv[1]), kv[0]))
    line: dict[str, Any] = {"source-ref": ref or source_ref(img.object_key, storage_url)}
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
                    **dict(
                        zip(
                            ("left", "top", "width", "height"),
                            box_edges(b, img.width, img.height, None),
                            strict=True,
                        )
                    ),
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


def to_manifest(
    entries: Sequence[ImageEntry], *, storage_url: str, refs: Mapping[str, str] | None = None
) -> bytes:
    """The manifest; ``refs`` (image id -> ``source-ref``) overrides where images are said to be."""
    names = sorted({lab.name for e in entries for lab in positive_labels(e.labels)})
    class_ids = {n: i for i, n in enumerate(names)}
    refs = refs or {}
    records = (
        manifest_record(e, class_ids=class_ids, storage_url=storage_url, ref=refs.get(e.image.id))
        for e in entries
    )
    return _lines(r for r in records if r is not None)
