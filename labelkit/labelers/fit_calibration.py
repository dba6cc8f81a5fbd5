"""Fit the confidence calibration (build time only; run time never imports this module).

    python -m labelkit.labelers.fit_calibration --devset ../shared/data/devset \\
        --out labelkit/labelers/data/calibration.json --card docs/models/calibration.md

Writes the maps :mod:`labelkit.labelers.calibration` reads and their card. Never run at install
or by ``make test``: the file is committed. Needs the development set and the exported models
(``make model``); about 4 minutes on 2 busy cores.

How (the card says it again, with the figures):

* **Data**: the development set's photos, half of them (:func:`in_fit_split`, by file hash); the
  other half is held out and every figure comes from it. A label is *right* when its COCO class
  (the class itself, or the class a classifier name falls under) is annotated on the photo, at
  any size.
* **Raw scores**: the full labeller (every model, the tiled pass) with a recorder in place of the
  calibration: each covered label's confidence where the fusion would map it, with its source.
* **Fit**: isotonic regression per source (:data:`SOURCES`), and per class for boxed object labels
  where the fitting photos hold at least :data:`CLASS_MIN` of them with :data:`CLASS_BOTH` right
  and wrong each.
* **Reliability**: the expected calibration error (10 bins) of the labels the truth can judge,
  before and after, on the held-out half: every such label, and those shown (confidence >= 50).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from labelkit.labelers.calibration import (
    CALIBRATION_PATH,
    CEILING,
    EVIDENCE,
    EXACT_SOURCES,
    FORMAT,
    LEAF,
    OBJECT,
    Calibration,
    Curve,
    Judged,
    Reliability,
    Target,
    in_fit_split,
    judge,
    parse_calibration,
    reliability,
    source_key,
)

logger = logging.getLogger(__name__)

SOURCES = tuple(source_key(kind, evidence) for kind in (OBJECT, LEAF) for evidence in EVIDENCE)
#: A class gets its own map with at least this many boxed labels on the fitting photos ...
CLASS_MIN = 60
#: ... at least this many of them right and this many wrong.
CLASS_BOTH = 10
#: The confidence a label counts as shown at (``make bench-quality``'s threshold).
SHOWN = 50.0


@dataclass(frozen=True, slots=True)
class Sample:
    key: str  # source key
    coco: str
    raw: float  # 0-100
    right: bool


@dataclass
class Recorder:
    """Stands in for the calibration: returns every raw confidence and keeps it."""

    version: str = "recording"
    seen: list[tuple[Target, str, float]] = field(default_factory=list)

    def adjust(self, target: Target, evidence: str, raw: float) -> float:
        self.seen.append((target, evidence, raw))
        return raw


def samples_of(seen: Sequence[tuple[Target, str, float]], present: set[str]) -> list[Sample]:
    return [Sample(source_key(t.kind, ev), t.coco, raw, t.coco in present) for t, ev, raw in seen]


def isotonic(raw: Sequence[float], right: Sequence[bool]) -> Curve:
    """The monotone map from raw confidence to the share right, as knots (0-100)."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(np.asarray(raw, dtype=float), np.asarray(right, dtype=float))
    x = [round(float(v), 3) for v in model.X_thresholds_]
    y = [round(min(CEILING, 100.0 * float(v)), 3) for v in model.y_thresholds_]
    return Curve(tuple(x), tuple(y))


def fit_curves(samples: Sequence[Sample]) -> tuple[dict[str, Curve], dict[str, dict[str, int]]]:
    """One map per source, and per class for boxed object labels where the data allows; with
    each map's sample counts."""
    curves: dict[str, Curve] = {}
    counts: dict[str, dict[str, int]] = {}

    def add(key: str, group: Sequence[Sample]) -> None:
        curves[key] = isotonic([s.raw for s in group], [s.right for s in group])
        counts[key] = {"samples": len(group), "right": sum(s.right for s in group)}

    for key in SOURCES:
        group = [s for s in samples if s.key == key]
        if group:
            add(key, group)
    boxed = source_key(OBJECT, "box")
    for coco in sorted({s.coco for s in samples if s.key == boxed}):
        group = [s for s in samples if s.key == boxed and s.coco == coco]
        right = sum(s.right for s in group)
        if len(group) >= CLASS_MIN and min(right, len(group) - right) >= CLASS_BOTH:
            add(f"{boxed}:{coco}", group)
    return curves, counts


def calibration_json(
    curves: dict[str, Curve], counts: dict[str, dict[str, int]], info: dict[str, Any]
) -> str:
    data = {
        "format": FORMAT,
        **info,
        "curves": {k: {"x": list(c.x), "y": list(c.y), **counts[k]} for k, c in sorted(curves.items())},
    }
    return json.dumps(data, indent=1) + "\n"


# --- figures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    all_labels: Reliability
    shown: Reliability
    per_source: dict[str, Reliability]
    shown_right: int
    shown_wrong: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "ece": round(self.all_labels.ece, 4),
            "ece_shown": round(self.shown.ece, 4),
            "judged": self.all_labels.count,
            "shown_right": self.shown_right,
            "shown_wrong": self.shown_wrong,
            "ece_per_source": {k: round(v.ece, 4) for k, v in self.per_source.items()},
        }


def figures(judged: Sequence[tuple[str, Judged]]) -> Figures:
    exact = [j for key, j in judged if key in EXACT_SOURCES]
    shown = [j for j in exact if j.confidence >= SHOWN]
    return Figures(
        all_labels=reliability(exact),
        shown=reliability(shown),
        per_source={k: reliability(j for key, j in judged if key == k) for k in SOURCES},
        shown_right=sum(j.right for j in shown),
        shown_wrong=sum(not j.right for j in shown),
    )


def _pct(v: float) -> str:
    return f"{v:.3f}"


def card(
    *,
    before: Figures,
    after: Figures,
    counts: dict[str, dict[str, int]],
    fit_photos: int,
    held_out_photos: int,
    model_version: str,
    demoted: Sequence[tuple[str, float, float, bool]],
) -> str:
    """The model card (Markdown)."""
    lines = [
        "# Model card: confidence calibration",
        "",
        f"Fitted {date.today().isoformat()} by `python -m labelkit.labelers.fit_calibration` "
        f"(`labelkit/labelers/fit_calibration.py`) into `labelkit/labelers/data/calibration.json`, "
        f"on the raw scores of labeller `{model_version}`. Read at run time by "
        "`labelkit/labelers/calibration.py` (`np.interp` over the knots; `LABELKIT_CALIBRATE=false` "
        "turns it off).",
        "",
        "## What it does",
        "",
        "A label at 90 should be right about 9 times in 10. The labels the development set can judge "
        "(each COCO class's label, and each classifier name under a COCO class, such as \"Golden "
        'Retriever" or "Egyptian Cat") get their confidence through a monotone map (isotonic '
        "regression) fitted per source:",
        "",
        "| source | what | fitting labels | right |",
        "|---|---|---|---|",
    ]
    what = {
        "object+box": "the class's label, the detector boxed it",
        "object-box": "the class's label, no box (the classifier's mass or a face), none of its family boxed",
        "object-other": "the class's label, no box, another class of its family boxed instead",
        "leaf+box": "a classifier name under a class the detector boxed",
        "leaf-box": "a classifier name under a class nobody boxed, nothing of its family boxed",
        "leaf-other": "a classifier name under a class nobody boxed, another class of its family boxed",
    }
    for key, c in sorted(counts.items(), key=lambda kc: (":" in kc[0], kc[0])):
        desc = what.get(key) or f"the {key.split(':', 1)[1]} label, boxed (its own map)"
        lines.append(f"| `{key}` | {desc} | {c['samples']} | {c['right']} |")
    lines += [
        "",
        "A label is *right* when its COCO class is annotated on the photo (at any size). Scenes, "
        "groups (People, Crowd), parents and names outside COCO keep their confidence: the "
        "development set cannot judge them. After the maps each parent is lifted to its most "
        "confident child again. Box (instance) confidences are not mapped.",
        "",
        "## Data",
        "",
        f"The development set (`../shared/data/devset`, COCO 2017 photos): {fit_photos} photos to fit "
        f"on, {held_out_photos} held out (by file hash, `in_fit_split`); every figure below is on "
        "the held-out photos. The detector was trained on COCO, so its raw scores are better on these "
        "photos than on photos it has never seen: the maps err on the generous side there.",
        "",
        "## Reliability on the held-out photos",
        "",
        "Expected calibration error (10 equal bins of confidence; lower is better) of the "
        "classes' own labels, whose truth is exact; a leaf's share right is only an upper bound "
        "(the class is there, the name may still be wrong), so its row says how far its map "
        "could go, and the map only ever lowers a leaf:",
        "",
        "| labels | before | after |",
        "|---|---|---|",
        f"| every class label ({before.all_labels.count}) | {_pct(before.all_labels.ece)} | "
        f"{_pct(after.all_labels.ece)} |",
        f"| shown, confidence >= 50 (before {before.shown.count}, after {after.shown.count}) | "
        f"{_pct(before.shown.ece)} | {_pct(after.shown.ece)} |",
    ]
    for key in SOURCES:
        b, a = before.per_source[key], after.per_source[key]
        if b.count:
            lines.append(f"| `{key}` ({b.count}) | {_pct(b.ece)} | {_pct(a.ece)} |")
    lines += [
        "",
        f"Shown class labels (>= 50): before {before.shown_right} right and {before.shown_wrong} wrong; "
        f"after {after.shown_right} right and {after.shown_wrong} wrong.",
        "",
        "Reliability of the class labels after (the bins with labels):",
        "",
        "| confidence | labels | mean confidence | share right |",
        "|---|---|---|---|",
    ]
    for row in after.all_labels.bins:
        lines.append(
            f"| {100 * row['lo']:.0f}-{100 * row['hi']:.0f} | {row['count']} | "
            f"{100 * row['confidence']:.1f} | {100 * row['accuracy']:.1f} |"
        )
    wrong = [d for d in demoted if not d[3]]
    right = [d for d in demoted if d[3]]
    lines += [
        "",
        f"Labels the maps took below 50 on the held-out photos: {len(wrong)} wrong, {len(right)} right.",
    ]
    if wrong:
        shown_wrong = ", ".join(f"{n} {b:.0f} -> {a:.0f}" for n, b, a, _ in wrong[:12])
        lines.append(f"Wrong ones, for example: {shown_wrong}.")
    lines += [
        "",
        "## Limits",
        "",
        "- Fitted on COCO photos, which flatter the detector; a map per class only where the "
        "fitting photos hold enough of it, the source's map elsewhere.",
        '- Names outside COCO ("Leopard", "Church") and scenes are not mapped: nothing here '
        "judges them. The scene head has its own thresholds ([scene-head.md](scene-head.md)).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from labelkit.labelers.base import ImageInput, LabelOptions
    from labelkit.labelers.local import LocalLabeler
    from labelkit.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devset", type=Path, default=Path("../shared/data/devset"))
    parser.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    parser.add_argument("--card", type=Path, default=Path("docs/models/calibration.md"))
    parser.add_argument("--limit", type=int, help="only the first N photos (a quick try; not for committing)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    index = args.devset / "devset.json"
    if not index.is_file():
        parser.error(f"no devset.json in {args.devset}")
    records = json.loads(index.read_text(encoding="utf-8"))[: args.limit]

    labeler = LocalLabeler.from_settings(settings.model_copy(update={"calibrate": False}))
    options = LabelOptions(min_confidence=1.0, max_labels=1000)
    covered = labeler.fusion.targets
    raw_version = labeler.model_version
    recorder = Recorder()
    labeler.calibration = recorder
    samples: list[Sample] = []
    raw_out: dict[str, list[Any]] = {}
    for n, rec in enumerate(records, 1):
        recorder.seen.clear()
        data = (args.devset / "images" / rec["file"]).read_bytes()
        labels = list(labeler.label(ImageInput(data), options).labels)
        if in_fit_split(rec["file"]):
            samples += samples_of(recorder.seen, set(rec["objects"]))
        else:
            raw_out[rec["file"]] = labels
        if n % 50 == 0:
            logger.info("%d of %d photos", n, len(records))
    curves, counts = fit_curves(samples)
    fit_photos = sum(in_fit_split(r["file"]) for r in records)
    info: dict[str, Any] = {
        "fitted": date.today().isoformat(),
        "fitted_on": f"{fit_photos} development-set photos (in_fit_split), raw scores of {raw_version}",
    }
    provisional = parse_calibration(calibration_json(curves, counts, info))

    held = [r for r in records if not in_fit_split(r["file"])]
    labeler.calibration = provisional
    before_j: list[tuple[str, Judged]] = []
    after_j: list[tuple[str, Judged]] = []
    demoted: list[tuple[str, float, float, bool]] = []
    for rec in held:
        data = (args.devset / "images" / rec["file"]).read_bytes()
        after = list(labeler.label(ImageInput(data), options).labels)
        present = set(rec["objects"])
        before_j += judge(raw_out[rec["file"]], present, covered)
        after_j += judge(after, present, covered)
        now = {lab.name: lab.confidence for lab in after}
        for lab in raw_out[rec["file"]]:
            target = covered.get(lab.name)
            if target and lab.confidence >= SHOWN and now.get(lab.name, 0.0) < SHOWN:
                demoted.append((lab.name, lab.confidence, now.get(lab.name, 0.0), target.coco in present))
    before, after_f = figures(before_j), figures(after_j)
    info["held_out"] = {"photos": len(held), "before": before.as_dict(), "after": after_f.as_dict()}
    text = calibration_json(curves, counts, info)
    args.out.write_text(text, encoding="utf-8")
    written: Calibration = parse_calibration(text)
    args.card.parent.mkdir(parents=True, exist_ok=True)
    args.card.write_text(
        card(
            before=before,
            after=after_f,
            counts=counts,
            fit_photos=fit_photos,
            held_out_photos=len(held),
            model_version=raw_version,
            demoted=demoted,
        ),
        encoding="utf-8",
    )
    logger.info(
        "held out: ECE %.3f -> %.3f (shown: %.3f -> %.3f); wrote %s (%s) and %s",
        before.all_labels.ece,
        after_f.all_labels.ece,
        before.shown.ece,
        after_f.shown.ece,
        args.out,
        written.version,
        args.card,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
