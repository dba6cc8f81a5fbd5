"""Calibrated confidence (issue 26): a label at 90 should be right about 9 times in 10.

The fusion's confidences are scores, not frequencies: a detector box at 55 may be right 95 times
in 100 for a person and 40 for a spoon, and a classifier's "Egyptian Cat" with no cat boxed is
wrong more often than its probability says. So the labels the development set can judge (every
COCO class's label and each classifier name under a COCO class) go through a monotone map fitted
on held-out photos (isotonic regression, ``python -m labelkit.labelers.fit_calibration``), one per
*source*:

* ``object+box``: the class's label with a detector box (the detector saw it);
* ``object-box``: the class's label with no box (the classifier's mass alone, or a face), and
  nothing of its family boxed either;
* ``object-other``: no box, and the detector boxed another class of the same family instead
  (the classifier's "Cat" where the detector saw a dog; families are the classes' top parents:
  Animal, Food, Vehicle's Transportation, ...);
* ``leaf+box`` / ``leaf-box`` / ``leaf-other``: a fine-grained classifier name under a COCO class
  ("Golden Retriever", "Granny Smith", "Egyptian Cat"), by the same evidence. The truth can only
  say whether the class is there, an upper bound on the name being right, so a leaf's map only
  ever lowers it: a leaf the boxes contradict ("Egyptian Cat" on a dog) falls to what such
  leaves are worth, below the shown threshold, and the parent the evidence supports stays;
* ``object+box:<class>``: a class's own map, where the fitting photos hold enough of it.

Labels no map covers (scenes, groups, parents, names outside COCO) keep their confidence. After
the maps, each parent is at least as confident as its most confident child again.

At run time this is ``np.interp`` over a few knots from a small committed JSON file: no new
dependency, nothing fitted at install. The file records what it was fitted on and its figures;
the card is ``docs/models/calibration.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
CALIBRATION_PATH = DATA_DIR / "calibration.json"
FORMAT = 1
#: The highest confidence a map may give (Rekognition's own labels stop at 99.9 or so).
CEILING = 99.5
#: Reliability bins for the expected calibration error.
ECE_BINS = 10

OBJECT = "object"
LEAF = "leaf"


#: The sources whose truth is exact (a class's label is right when the class is there). A leaf's
#: truth is only an upper bound, so reliability figures leave leaves out.
EXACT_SOURCES = ("object+box", "object-box")
#: What the detector says about a label's class: it boxed it, it boxed nothing of its family,
#: it boxed another class of its family.
EVIDENCE = ("box", "none", "other")


def in_fit_split(photo: str) -> bool:
    """Whether a development-set photo (its file name) is one the maps are fitted on; the other
    half is held out, and every reported figure comes from it (by file hash, so stable)."""
    return int(hashlib.sha256(photo.encode()).hexdigest()[:8], 16) % 2 == 0


def source_key(kind: str, evidence: str) -> str:
    """``object+box``, ``object-box``, ``object-other``, and the same for ``leaf``."""
    if evidence not in EVIDENCE:
        raise ValueError(f"evidence must be one of {EVIDENCE}, not {evidence!r}")
    return kind + {"box": "+box", "none": "-box", "other": "-other"}[evidence]


@dataclass(frozen=True, slots=True)
class Target:
    """A label name the calibration covers: what it is (an object class's label or a leaf under
    it) and the COCO class whose presence makes it right."""

    kind: str  # OBJECT or LEAF
    coco: str
    family: str  # the class's top parent ("Animal"): another class of it boxed contradicts


def targets(
    object_names: Mapping[str, str], leaf_names: Mapping[str, str], families: Mapping[str, str]
) -> dict[str, Target]:
    """Label name -> target, from the fusion's object labels (name -> COCO class), the
    classifier names under a COCO class (name -> COCO class) and each class's family. An object
    label's name wins."""
    out = {name: Target(LEAF, coco, families[coco]) for name, coco in leaf_names.items()}
    out.update({name: Target(OBJECT, coco, families[coco]) for name, coco in object_names.items()})
    return out


@dataclass(frozen=True, slots=True)
class Curve:
    """A monotone map from raw confidence (0-100) to calibrated confidence (0-100)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or not self.x:
            raise ValueError("a calibration curve needs as many x as y knots, at least one")
        if any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("calibration knots must be in increasing order of x")
        if any(b < a for a, b in zip(self.y, self.y[1:], strict=False)):
            raise ValueError("a calibration curve must not decrease")

    def __call__(self, raw: float) -> float:
        return float(min(CEILING, max(0.0, np.interp(raw, self.x, self.y))))


class ConfidenceMap(Protocol):
    """What the fusion asks of a calibration (the fitting script passes one that records)."""

    @property
    def version(self) -> str: ...

    def adjust(self, target: Target, evidence: str, raw: float) -> float: ...


@dataclass(frozen=True)
class Calibration:
    curves: dict[str, Curve]
    version: str  # a digest of the file: part of the labeller's model version
    info: dict[str, Any]

    def curve(self, target: Target, evidence: str) -> Curve | None:
        key = source_key(target.kind, evidence)
        found = self.curves.get(f"{key}:{target.coco}") or self.curves.get(key)
        if found is None and evidence == "other":  # too few to fit: no box at all
            return self.curve(target, "none")
        return found

    def adjust(self, target: Target, evidence: str, raw: float) -> float:
        curve = self.curve(target, evidence)
        if curve is None:
            return raw
        if target.kind == LEAF:
            # A leaf is judged by its class ("Golden Retriever" is right when a dog is there),
            # so its map is only an upper bound on how often the name itself is right: it may
            # take a leaf down, never up.
            return min(raw, curve(raw))
        return curve(raw)


def parse_calibration(text: str) -> Calibration:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a calibration file of format {FORMAT}")
    curves = {
        str(key): Curve(tuple(float(v) for v in c["x"]), tuple(float(v) for v in c["y"]))
        for key, c in data["curves"].items()
    }
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    info = {k: v for k, v in data.items() if k != "curves"}
    return Calibration(curves=curves, version=f"cal{FORMAT}.{digest}", info=info)


def load_calibration(path: Path = CALIBRATION_PATH) -> Calibration:
    return parse_calibration(path.read_text(encoding="utf-8"))


# --- reliability -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Judged:
    """One label the truth can judge: its confidence (0-100) and whether it was right."""

    confidence: float
    right: bool


@dataclass(frozen=True)
class Reliability:
    ece: float  # expected calibration error, 0-1
    count: int
    bins: list[dict[str, float]]  # per non-empty bin: lo, hi, count, confidence, accuracy

    def as_dict(self) -> dict[str, Any]:
        return {"ece": self.ece, "count": self.count, "bins": self.bins}


def reliability(judged: Iterable[Judged], bins: int = ECE_BINS, *, floor: float = 0.0) -> Reliability:
    """Expected calibration error over the labels at ``floor`` or more: the mean gap between
    confidence and accuracy in ``bins`` equal bins of confidence, weighted by the labels in each."""
    items = [j for j in judged if j.confidence >= floor]
    if not items:
        return Reliability(ece=0.0, count=0, bins=[])
    conf = np.array([j.confidence / 100.0 for j in items])
    right = np.array([j.right for j in items], dtype=float)
    index = np.minimum((conf * bins).astype(int), bins - 1)
    rows = []
    gap = 0.0
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if not n:
            continue
        c, a = float(conf[mask].mean()), float(right[mask].mean())
        gap += n * abs(c - a)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "count": n, "confidence": c, "accuracy": a})
    return Reliability(ece=gap / len(items), count=len(items), bins=rows)


def judge(
    labels: Sequence[Any], present: Iterable[str], covered: Mapping[str, Target], *, floor: float = 0.0
) -> list[tuple[str, Judged]]:
    """The labels (``Label``-like: name, confidence, instances) the truth can judge, each with its
    source key as the output shows it (boxed or not): right when its COCO class is annotated on
    the photo (``present``)."""
    classes = set(present)
    out = []
    for lab in labels:
        target = covered.get(lab.name)
        if target is None or lab.confidence < floor:
            continue
        key = source_key(target.kind, "box" if lab.instances else "none")
        out.append((key, Judged(float(lab.confidence), target.coco in classes)))
    return out
