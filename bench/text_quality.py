"""Text in photos, the moderation flag and each model's time, for ``make bench-quality``.

:class:`StageRecorder` wraps the labeller the benchmark runs, keeping what each call read,
flagged and spent per model (:meth:`labelkit.labelers.local.LocalLabeler.timings`), so the
benchmark labels every photo once. :func:`text_report` then says:

* **OCR word recall** on the package photos with text (scikit-image's ``page``: printed text;
  ``text``: handwritten maths on squared paper), against the words written in
  ``bench/data/text_truth.yml`` by reading each photo: the share of its words read exactly
  (lower-cased, punctuation around a word ignored), and the share of its characters read
  (difflib's longest matching blocks of all lines joined), which credits a near miss;
* how often Text / Document / Screenshot and the Explicit flag are given on the development
  photos (COCO: no text or moderation truth, so a rate, not a precision);
* milliseconds per photo per stage (median and 95th percentile over the photos; text
  recognition over the photos where lines were found, the only ones it runs on).
"""

from __future__ import annotations

import difflib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labelkit.domain import LabelResult
from labelkit.labelers.base import ImageInput, Labeler, LabelOptions

TEXT_TRUTH_PATH = Path(__file__).resolve().parent / "data" / "text_truth.yml"
TEXT_LABELS = ("Text", "Document", "Screenshot")
_EDGES = "\"'()[]{}<>.,;:!?*"


@dataclass(slots=True)
class Call:
    """One labelling call: the result and each stage's milliseconds."""

    result: LabelResult
    timings: dict[str, float] = field(default_factory=dict)


class StageRecorder:
    """A labeller (satisfies ``Labeler``) that keeps every call's result and stage times."""

    def __init__(self, labeler: Labeler) -> None:
        self.labeler = labeler
        self.calls: dict[bytes, Call] = {}
        self.order: list[Call] = []

    @property
    def model_version(self) -> str:
        return self.labeler.model_version

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult:
        result = self.labeler.label(image, options)
        timings = getattr(self.labeler, "timings", None)
        call = Call(result, dict(timings()) if callable(timings) else {})
        self.order.append(call)
        self.calls[image.data] = call
        return result

    def reset(self) -> None:
        self.calls.clear()
        self.order.clear()


def load_text_truth(path: Path = TEXT_TRUTH_PATH) -> dict[str, list[str]]:
    """Photo name (as in package_photos.yml) -> its lines of text, as written by reading it."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {str(name): [str(line) for line in entry["lines"]] for name, entry in doc["photos"].items()}


def _words(lines: Sequence[str]) -> list[str]:
    out = []
    for line in lines:
        for word in line.casefold().split():
            word = word.strip(_EDGES)
            if word:
                out.append(word)
    return out


def word_recall(truth: Sequence[str], read: Sequence[str]) -> tuple[int, int]:
    """(words of the truth read, words of the truth), each word counted as often as written."""
    available: dict[str, int] = {}
    for word in _words(read):
        available[word] = available.get(word, 0) + 1
    hits = 0
    for word in _words(truth):
        if available.get(word, 0) > 0:
            available[word] -= 1
            hits += 1
    return hits, len(_words(truth))


def character_recall(truth: Sequence[str], read: Sequence[str]) -> float:
    """Share of the truth's characters (spaces ignored, case folded) found in order in what was read."""
    a = "".join("".join(truth).casefold().split())
    b = "".join("".join(read).casefold().split())
    if not a:
        return 0.0
    matched = sum(
        block.size for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
    )
    return matched / len(a)


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.0f} / {float(np.percentile(values, 95)):.0f}"


def text_report(
    *,
    package: dict[str, bytes],
    devset: Sequence[bytes],
    recorder: StageRecorder,
    truth: dict[str, list[str]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The section's markdown and its figures (for ``--json``). ``package``: photo name -> the
    bytes labelled; ``devset``: the development photos' bytes labelled (through ``recorder``)."""
    truth = truth if truth is not None else load_text_truth()
    lines = [
        "Text in photos (PP-OCRv6 small) and the moderation flag (open_nsfw):",
        "",
        "| package photo | lines read | words read exactly | characters read | labels from text |",
        "|---|---|---|---|---|",
    ]
    figures: dict[str, Any] = {"ocr": {}, "devset": {}, "stages_ms": {}}
    for name, want in truth.items():
        call = recorder.calls.get(package.get(name, b""))
        if call is None:
            lines.append(f"| {name} | not installed | – | – | – |")
            continue
        read = [line.text for line in call.result.lines]
        hits, total = word_recall(want, read)
        chars = character_recall(want, read)
        given = [lab.name for lab in call.result.labels if lab.name in TEXT_LABELS]
        shown = ", ".join(given) or "-"
        recall = f"{hits / total:.2f} ({hits}/{total})"
        lines.append(f"| {name} | {len(read)} | {recall} | {chars:.2f} | {shown} |")
        figures["ocr"][name] = {"read": read, "word_recall": [hits, total], "character_recall": chars}

    dev = [recorder.calls[d] for d in devset if d in recorder.calls]
    if dev:
        n = len(dev)
        counts = {
            label: sum(any(lab.name == label for lab in c.result.labels) for c in dev)
            for label in TEXT_LABELS
        }
        read_any = sum(bool(c.result.lines) for c in dev)
        flagged = sum(bool(c.result.moderation) for c in dev)
        lines += [
            "",
            f"On the {n} development photos (COCO; no text or moderation truth there): text read in "
            f"{read_any} ({read_any / n:.0%}); "
            + ", ".join(f"{label} on {k}" for label, k in counts.items())
            + f"; Explicit on {flagged} (all are safe photos).",
        ]
        figures["devset"] = {"photos": n, "text_read": read_any, "labels": counts, "explicit": flagged}

    calls = dev or recorder.order
    stages = sorted({stage for c in calls for stage in c.timings})
    if stages:
        lines += [
            "",
            f"Milliseconds per photo per stage, median / 95th percentile, over {len(calls)} photos "
            "(one at a time; text_recognise: over the photos where lines were found):",
            "",
            "| stage | photos | ms p50 / p95 |",
            "|---|---|---|",
        ]
        for stage in stages:
            values = [c.timings[stage] for c in calls if stage in c.timings]
            lines.append(f"| {stage} | {len(values)} | {_ms(values)} |")
            figures["stages_ms"][stage] = {
                "photos": len(values),
                "p50": statistics.median(values),
                "p95": float(np.percentile(values, 95)),
            }
    return "\n".join(lines), figures
