"""Import: a JSON Lines export or a manifest back as human labels, checked line by line."""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from labelkit.db.engine import let_others_write, transaction
from labelkit.db.models import LabelSource, ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.domain import Viewer
from labelkit.errors import NotFound
from labelkit.interchange.boxes import clamp_box
from labelkit.interchange.manifest import key_from_source_ref
from labelkit.search.expand import catalog_label, known_details

logger = logging.getLogger(__name__)


#: Lines one import takes at most (a bigger file is refused whole: split it).
MAX_LINES = 50_000
#: Labels one line may give one image (a line with more is refused).
MAX_LABELS_PER_IMAGE = 1_000
#: Label rows (labels and boxes) written per transaction.
BATCH_ROWS = 200


@dataclass(slots=True)
class ImportReport:
    lines: int = 0
    images: int = 0  # images matched and written to
    transactions: int = 0  # the writes went in this many transactions
    longest_transaction_s: float = 0.0  # the longest of them (how long others could wait)
    labels: int = 0  # human labels written
    boxes: int = 0
    skipped_predictions: int = 0  # model labels (JSON Lines: unreviewed; manifests: human-annotated "no")
    names: set[str] = field(default_factory=set)  # the label names written (search embeds them early)
    clamped_boxes: int = 0  # boxes whose right or bottom edge passed the image's and was moved onto it
    unknown: list[str] = field(default_factory=list)  # image ids / keys not found (or not yours)
    errors: list[str] = field(default_factory=list)  # "line 3: ..." for lines that could not be read

    def summary(self) -> str:
        text = (
            f"{self.lines:,} lines: {self.labels:,} human labels ({self.boxes:,} boxes) on "
            f"{self.images:,} images, {self.skipped_predictions:,} model predictions skipped"
        )
        if self.unknown:
            text += f", {len(self.unknown)} unknown images: {', '.join(self.unknown[:20])}"
            text += " …" if len(self.unknown) > 20 else ""
        if self.clamped_boxes:
            text += f", {self.clamped_boxes} boxes clamped to the image's edge"
        if self.errors:
            more = " …" if len(self.errors) > 1 else ""
            text += f", {len(self.errors)} lines refused, nothing of them imported ({self.errors[0]}{more})"
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


# A box edge may pass the image's by this much (rounding in another tool) and is then clamped.
EDGE_TOLERANCE = 0.01


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} is {value!r}, not a number")
    try:
        number = float(value)
    except ValueError as e:
        raise ValueError(f"{what} is {value!r}, not a number") from e
    if not math.isfinite(number):
        raise ValueError(f"{what} is {value!r}, not a finite number")
    return number


def checked_box(
    raw: Any, *, where: str, width: float = 1.0, height: float = 1.0, report: ImportReport | None = None
) -> tuple[float, float, float, float]:
    """An imported box as fractions of the image, or ``ValueError`` saying what is wrong.

    ``raw`` has ``left``, ``top``, ``width``, ``height`` in units of ``width`` x ``height``
    (1 x 1: fractions; the image size: pixels). Left and top must lie inside the image and
    the sizes be positive; a right or bottom edge past the image's by at most
    :data:`EDGE_TOLERANCE` of its size is clamped onto it (counted in ``report``), more is
    refused.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object with left, top, width and height")
    unit = "px" if (width, height) != (1.0, 1.0) else ""
    values = {}
    for key in ("left", "top", "width", "height"):
        if key not in raw:
            raise ValueError(f"{where} has no {key!r}")
        values[key] = _number(raw[key], f"{where}: {key}")
    for key, size in (("left", width), ("top", height)):
        if not 0 <= values[key] <= size:
            raise ValueError(f"{where}: {key} {raw[key]} is outside the image (0 to {size:g}{unit})")
    for key in ("width", "height"):
        if values[key] <= 0:
            raise ValueError(f"{where}: {key} {raw[key]} is not positive")
    clamped = False
    for start, extent, size in (("left", "width", width), ("top", "height", height)):
        end = values[start] + values[extent]
        if end > size * (1 + EDGE_TOLERANCE):
            raise ValueError(
                f"{where}: {start} {raw[start]} + {extent} {raw[extent]} ends past the image ({size:g}{unit})"
            )
        clamped = clamped or end > size
    if clamped and report is not None:
        report.clamped_boxes += 1
    return clamp_box(
        values["left"] / width, values["top"] / height, values["width"] / width, values["height"] / height
    )


def _box_confidence(value: Any, where: str) -> float:
    conf = _number(value, f"{where}: confidence")
    if not 0 <= conf <= 100:
        raise ValueError(f"{where}: confidence {value} is not between 0 and 100")
    return conf


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
        instances = lab.get("instances") or []
        if not isinstance(instances, list):
            raise ValueError(f"label {name!r}: 'instances' is not a list")
        boxes = []
        if source == LabelSource.HUMAN.value:
            for i, b in enumerate(instances, start=1):
                where = f"label {name!r} box {i}"
                box = checked_box(b, where=where, report=report)
                boxes.append((*box, _box_confidence(b.get("confidence", 100.0), where)))
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
        elif lab.get("rejected_with"):
            report.skipped_predictions += 1  # follows from another rejection: worked out on import
        elif lab.get("review") in ("confirmed", "rejected") and name not in human_names:
            out.append(_Wanted(name=name, review=ReviewState(lab["review"])))
            human_names.add(name)
        else:
            report.skipped_predictions += 1
    return out


def _human_annotated(meta: dict[str, Any]) -> bool:
    """A manifest attribute is a person's unless it says ``human-annotated: "no"`` (a model's;
    a hand-written file without the key is a person's)."""
    return str(meta.get("human-annotated", "yes")).strip().casefold() != "no"


def _from_manifest(record: dict[str, Any], width: int, height: int, report: ImportReport) -> list[_Wanted]:
    """The person's labels of one manifest line. Classes whose metadata says
    ``human-annotated: "no"`` are the model's (Labelkit writes its unreviewed predictions so):
    they are skipped, with their boxes, and counted as model predictions."""
    wanted: dict[str, _Wanted] = {}
    model_classes: set[str] = set()
    detections: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for key, meta in record.items():
        if not key.endswith("-metadata") or not isinstance(meta, dict):
            continue
        kind = meta.get("type")
        value = record.get(key[: -len("-metadata")])
        if kind == "groundtruth/image-classification":
            name = str(meta.get("class-name") or "").strip()
            if not name:
                continue
            if _human_annotated(meta):
                wanted.setdefault(name, _Wanted(name=name, review=ReviewState.CONFIRMED))
            else:
                model_classes.add(name)
        elif kind == "groundtruth/object-detection" and isinstance(value, dict):
            detections.append((meta, value))
    for meta, value in detections:
        class_map = {str(k): str(v) for k, v in (meta.get("class-map") or {}).items()}
        sizes = value.get("image_size") or [{}]
        size = sizes[0] if isinstance(sizes, list) and sizes and isinstance(sizes[0], dict) else {}
        w = _number(size.get("width") or width, "image_size width")
        h = _number(size.get("height") or height, "image_size height")
        if w <= 0 or h <= 0:
            raise ValueError(f"image_size {w:g} x {h:g} is empty")
        objects = meta.get("objects") or []
        boxes_human = _human_annotated(meta)
        annotations = value.get("annotations") or []
        if not isinstance(annotations, list):
            raise ValueError("bounding-box 'annotations' is not a list")
        for i, ann in enumerate(annotations):
            if not isinstance(ann, dict):
                raise ValueError(f"box {i + 1} is not an object")
            name = class_map.get(str(ann.get("class_id")), "").strip()
            if not name:
                raise ValueError(f"box {i + 1}: class_id {ann.get('class_id')!r} is not in the class-map")
            # A box is a person's when its class was (a confirmed label's boxes), or when the
            # line has no classification for it and the boxes' own metadata says so.
            if name in model_classes or (name not in wanted and not boxes_human):
                model_classes.add(name)
                continue
            where = f"box {i + 1} ({name!r})"
            box = checked_box(ann, where=where, width=w, height=h, report=report)
            obj = objects[i] if isinstance(objects, list) and i < len(objects) else {}
            conf = _number(
                obj.get("confidence", 1.0) if isinstance(obj, dict) else 1.0, f"{where}: confidence"
            )
            if not 0 <= conf <= 1:
                raise ValueError(f"{where}: confidence {conf:g} is not between 0 and 1")
            wanted.setdefault(name, _Wanted(name=name, review=ReviewState.CONFIRMED)).boxes.append(
                (*box, conf * 100)
            )
    report.skipped_predictions += len(model_classes)
    return list(wanted.values())


def import_lines(
    *,
    engine: Engine,
    viewer: Viewer,
    lines: Iterable[str],
    storage_url: str = "",
    replace: bool = False,
    progress: Callable[[int, int], None] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Import a JSON Lines export or a manifest as human labels by ``viewer`` (see the module doc).

    Written in short transactions of at most ``batch_rows`` label rows each (a line with more
    labels is split over several), so an import never holds the database for long: other
    people's sign-ins, uploads and labelling go on between them. ``progress(lines done,
    lines)`` is called after each. A file of more than :data:`MAX_LINES` lines is refused
    whole, a line with more than :data:`MAX_LABELS_PER_IMAGE` labels on its own, each with
    the reason. With ``replace`` every human label on the matched images is removed first,
    so the file becomes the images' whole human truth (an import of an export then gives
    the same export back).
    """
    report = ImportReport()
    parsed: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        report.lines += 1
        if report.lines > MAX_LINES:
            continue  # counted, so the refusal can say how many
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            report.errors.append(f"line {number}: not JSON ({e.msg})")
            continue
        if not isinstance(record, dict):
            report.errors.append(f"line {number}: not a JSON object")
            continue
        parsed.append((number, record))
    if report.lines > MAX_LINES:
        report.errors = [
            f"the file has {report.lines:,} lines; at most {MAX_LINES:,} are imported at once: "
            "split it and import the parts (nothing was imported)"
        ]
        return report

    def key_of(record: dict[str, Any]) -> str | None:
        if "source-ref" in record:
            return key_from_source_ref(str(record["source-ref"]), storage_url or "./data/images")
        return str(record["object_key"]) if record.get("object_key") else None

    with transaction(engine) as session:
        by_id = image_q.images_by_ids(
            session=session,
            viewer=viewer,
            image_ids=[str(r["image_id"]) for _, r in parsed if r.get("image_id")],
        )
        by_key = image_q.images_by_object_keys(
            session=session, viewer=viewer, keys=[k for _, r in parsed if (k := key_of(r))]
        )
    taken: list[tuple[int, str, list[label_q.HumanLabel]]] = []  # line, image id, its labels
    for number, record in parsed:
        key = key_of(record)
        image = by_id.get(str(record.get("image_id") or "")) or (by_key.get(key) if key else None)
        if image is None:
            report.unknown.append(str(record.get("image_id") or key or f"line {number}"))
            continue
        try:
            # Counts go to the file's report only if the whole line is taken.
            line = ImportReport()
            if "source-ref" in record:
                wanted = _from_manifest(record, image.width, image.height, line)
            else:
                wanted = _from_jsonl(record, line)
            if len(wanted) > MAX_LABELS_PER_IMAGE:
                raise ValueError(
                    f"{len(wanted):,} labels for one image; at most {MAX_LABELS_PER_IMAGE:,} are imported "
                    "per image"
                )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            report.errors.append(f"line {number}: {e}")
            continue
        report.skipped_predictions += line.skipped_predictions
        report.clamped_boxes += line.clamped_boxes
        taken.append((number, image.id, [_human_label(w) for w in wanted]))

    batches = list(_batches(taken, batch_rows))
    gone: set[str] = set()
    last_batch = {number: i for i, batch in enumerate(batches) for number, _, _ in batch}
    try:
        if replace:
            ids = sorted({image_id for _, image_id, _ in taken})
            for start in range(0, len(ids), batch_rows):
                let_others_write(engine)
                with _timed(report), transaction(engine) as session:
                    label_q.delete_human_labels(
                        session=session, viewer=viewer, image_ids=ids[start : start + batch_rows]
                    )
        for i, batch in enumerate(batches):
            if i:
                let_others_write(engine)
            with _timed(report), transaction(engine) as session:
                for _, image_id, labels in batch:
                    try:
                        label_q.set_human_labels(
                            session=session, viewer=viewer, image_id=image_id, labels=labels
                        )
                    except NotFound:  # deleted since the file was read
                        report.unknown.append(image_id)
                        gone.add(image_id)
                        continue
                    report.labels += len(labels)
                    report.names.update(lab.name for lab in labels)
                    report.boxes += sum(len(lab.boxes or ()) for lab in labels)
            if progress is not None:
                progress(sum(1 for last in last_batch.values() if last <= i), len(last_batch))
    except SQLAlchemyError as e:
        logger.warning("import stopped: the database did not take a batch", exc_info=True)
        report.errors.append(
            f"the import stopped after {report.labels:,} labels: the database did not take the next "
            f"ones ({type(e).__name__}); import the file again to finish (labels already there are kept)"
        )
    report.images = len({image_id for _, image_id, _ in taken} - gone)
    return report


def _human_label(w: _Wanted) -> label_q.HumanLabel:
    # A catalogue name in another case ("beach") is the catalogue's label ("Beach"), with its
    # parents, aliases and categories when the file gives none.
    known = catalog_label(w.name)
    return label_q.HumanLabel(
        name=known.name if known is not None else w.name,
        review=w.review,
        parents=w.parents,
        aliases=w.aliases,
        categories=w.categories,
        boxes=list(w.boxes),
        known=known_details(w.name),
    )


def _batches(
    taken: list[tuple[int, str, list[label_q.HumanLabel]]], rows: int
) -> Iterator[list[tuple[int, str, list[label_q.HumanLabel]]]]:
    """Lines grouped so each group writes at most ``rows`` label rows (a longer line is split
    into parts, each a group of its own)."""
    batch: list[tuple[int, str, list[label_q.HumanLabel]]] = []
    size = 0
    for number, image_id, labels in taken:
        part: list[label_q.HumanLabel] = []
        part_rows = 0
        for lab in labels:
            if part and part_rows + lab.rows > rows:
                if batch and size + part_rows > rows:
                    yield batch
                    batch, size = [], 0
                batch.append((number, image_id, part))
                size += part_rows
                part, part_rows = [], 0
            part.append(lab)
            part_rows += lab.rows
        if part:
            if batch and size + part_rows > rows:
                yield batch
                batch, size = [], 0
            batch.append((number, image_id, part))
            size += part_rows
    if batch:
        yield batch


@contextmanager
def _timed(report: ImportReport) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        report.transactions += 1
        report.longest_transaction_s = max(report.longest_transaction_s, time.perf_counter() - start)


def import_text(
    *,
    engine: Engine,
    viewer: Viewer,
    text: str | bytes,
    storage_url: str = "",
    replace: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """:func:`import_lines` over a whole file's content."""
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig")
    return import_lines(
        engine=engine,
        viewer=viewer,
        lines=io.StringIO(text),
        storage_url=storage_url,
        replace=replace,
        progress=progress,
    )
