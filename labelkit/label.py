"""Label photos from the command line: ``python -m labelkit.label PHOTO...``.

Why: the quickest way to see what the local model says about a photo, without the
dashboard, queue or database. Prints a table per photo, or with ``--json`` JSON Lines:
one line per photo, ``{"image": "<the path given>", "response": {...}, "text": {...},
"moderation": {...}, "primary": "Dog"}``, where ``response`` is exactly a Rekognition ``DetectLabelsResponse``
(nothing added, so anything that reads Rekognition's answer reads it: ``jq -c .response``),
``text`` a ``DetectTextResponse`` (``{"TextDetections": []}`` when no text was read, or the
text model is not enabled) and ``moderation`` a ``DetectModerationLabelsResponse``
(``{"ModerationLabels": []}`` likewise); ``primary`` is the photo's headline label
(:mod:`labelkit.primary`; null without labels). A file that is not an image gets a clear message and
exit code 1, and the other files are still labelled.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from labelkit.domain import Label, LabelResult
from labelkit.errors import IntakeError, LabelerError
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.primary import primary_of_labels

logger = logging.getLogger(__name__)


def _boxes(lab: Label, shown: int = 3) -> str:
    """``n: left,top widthxheight`` of the first boxes (fractions of the image)."""
    if not lab.instances:
        return "-"
    cells = [
        f"{i.box.left:.2f},{i.box.top:.2f} {i.box.width:.2f}x{i.box.height:.2f}"
        for i in lab.instances[:shown]
    ]
    more = f" +{len(lab.instances) - shown}" if len(lab.instances) > shown else ""
    return f"{len(lab.instances)}: " + "; ".join(cells) + more


def _table(path: str, result: LabelResult) -> str:
    rows = [("Label", "Conf.", "Parents", "Categories", "Boxes")]
    for lab in result.labels:
        rows.append(
            (
                lab.name,
                f"{lab.confidence:.1f}",
                ", ".join(lab.parents) or "-",
                ", ".join(lab.categories) or "-",
                _boxes(lab),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    headline = primary_of_labels(result.labels, threshold=0.0)
    lines = [f"{path}  ({result.model_version})" + (f"  headline: {headline}" if headline else "")]
    for n, row in enumerate(rows):
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    if not result.labels:
        lines.append("  (no label above the minimum confidence)")
    props = result.image_properties
    if props is not None:
        colours = ", ".join(f"{c.simplified_color} {c.pixel_percent:.0f}%" for c in props.dominant_colors)
        lines.append(
            f"  brightness {props.brightness:.0f}, sharpness {props.sharpness:.0f}, "
            f"contrast {props.contrast:.0f}; colours: {colours}"
        )
    if result.text is not None:
        read = result.lines
        lines.append(f"  text read: {len(read)} line{'s' if len(read) != 1 else ''}" + (":" if read else ""))
        lines += [f"    {line.text}  ({line.confidence:.0f}%)" for line in read]
    if result.moderation is not None:
        flags = ", ".join(f"{m.name} {m.confidence:.1f}" for m in result.moderation)
        lines.append(f"  moderation: {flags or 'nothing flagged'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from labelkit.settings import Settings, get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m labelkit.label", description="Label photos with the local model."
    )
    parser.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    parser.add_argument(
        "--json",
        action="store_true",
        help='JSON Lines: {"image": PHOTO, "response": <DetectLabelsResponse>, "text": <DetectTextResponse>, '
        '"moderation": <DetectModerationLabelsResponse>, "primary": HEADLINE} per photo',
    )
    parser.add_argument("--min-confidence", type=float, default=settings.min_confidence)
    parser.add_argument("--max-labels", type=int, default=settings.max_labels)
    parser.add_argument("--model", choices=["lite0", "lite2"], default=settings.local_model)
    parser.add_argument(
        "--models",
        default=settings.local_models,
        help="local models to run, comma-separated (classifier,detector,faces,text,moderation; "
        "LABELKIT_LOCAL_MODELS)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from labelkit.labelers.local import LocalLabeler

    try:
        options = LabelOptions(min_confidence=args.min_confidence, max_labels=args.max_labels)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        names = Settings(local_models=args.models).local_model_names
    except ValueError as exc:
        parser.error(str(exc))
    labeler = LocalLabeler(
        model=args.model,
        model_dir=settings.resolved_model_dir,
        threads=settings.model_threads,
        max_pixels=settings.max_pixels,
        precision=settings.local_precision,
        models=names,
        text_detect_side=settings.text_detect_side,
        moderation_threshold=settings.moderation_threshold,
    )
    status = 0
    for path in args.photos:
        try:
            data = path.read_bytes()
            result = labeler.label(ImageInput(data=data), options)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        except IntakeError as exc:
            print(f"{path}: not labelled: {exc.reason}", file=sys.stderr)
            status = 1
            continue
        except LabelerError as exc:
            # The model itself is unusable (e.g. not exported): no point trying the rest.
            print(f"error: {exc.reason}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(json_line(str(path), result)), flush=True)
        else:
            print(_table(str(path), result))
            print()
    return status


def json_line(image: str, result: LabelResult) -> dict[str, Any]:
    """One ``--json`` line: the photo's path beside (never inside) the DetectLabels response,
    and the DetectText and DetectModerationLabels responses beside it (always there, empty
    when nothing was read or flagged)."""
    return {
        "image": image,
        "response": result.to_rekognition(),
        "text": result.to_detect_text(),
        "moderation": result.to_moderation(),
        "primary": primary_of_labels(result.labels, threshold=0.0),
    }


if __name__ == "__main__":
    raise SystemExit(main())
