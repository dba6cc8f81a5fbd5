"""The label-quality definitions, as code (used by ``bench/label_quality.py``, pinned by
``tests/unit/test_label_quality.py`` so they cannot drift).

Exact definitions (issue 14):

* A label **counts** when its confidence is >= 50 (:data:`THRESHOLD`); so does an instance (box).
* A label's **words** are its name, its aliases and its parents, lowercased. A term is found
  when it occurs in one of them as **whole words**: "table" is found in "Dining Table", "cat"
  is not found in "Wildcat" nor "Catamaran", "man" not in "Woman". (The flip side: "dog" is
  found in "Hot Dog" and "bear" in "Teddy Bear".)
* **coverage**: share of photos with at least one counted label.
* **person recall**: of the photos whose largest annotated person covers >= 2% of the photo
  (:data:`PERSON_AREA_MIN`), the share that get a person word (the names under ``person`` in
  ``labelkit/labelers/data/coco_to_rekognition.yml``). **false person**: of the photos with no
  person annotated at all, the share that get one. Photos with only smaller people are in neither.
* **person box recall**: of the annotated person boxes covering >= 1% of the photo
  (:data:`BOX_AREA_MIN`) and not ``iscrowd``, the share matched by a counted instance of a label
  whose *name* is a person word, at IoU >= 0.5 (:data:`IOU_MIN`), one to one (greedy, highest
  IoU first: one predicted box matches at most one annotated box).
* **object recall**: of the (photo, COCO class) pairs where the class has an instance covering
  >= 1% of the photo (the devset's ``objects_major``), the share where one of the class's names
  in the COCO -> Rekognition table is found among the photo's label words. Person counts as a
  class here too; ``object recall without person`` leaves it out.
* **object precision** (a guard, not a target): of the (photo, COCO class) pairs where a class's
  name is found among the label words, the share where that class is annotated (at any size).
* **scene recall**: of the (photo, scene) pairs of the scene ground truth, the share where one of
  the scene's words is found among the label words, or equals one of the labels' categories
  (whole category: Rekognition-style categories such as "Kitchen and Dining" go on every cup and
  bowl and say nothing about the scene; ``scene recall, loose`` also finds words inside categories).
* **headline agreement** (issue 26): of the photos whose main subject the annotations settle,
  the share whose headline label (:mod:`labelkit.primary`) names it (one of the subject's words
  among the headline's words). The subject is the person
  when the largest annotated person covers >= 10% of the photo (:data:`HEADLINE_PERSON_AREA`;
  a group label, People / Group / Crowd, names it too); else the one COCO class covering >= 1%
  when there is exactly one (a person: a group label names it too); else, with no such class,
  one of the photo's derived scenes. Photos with several classes and no large person are left
  out (COCO gives no area per class).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labelkit.domain import Label
from labelkit.labelers.coco_names import CocoNames

THRESHOLD = 50.0
PERSON_AREA_MIN = 0.02
BOX_AREA_MIN = 0.01
IOU_MIN = 0.5
HEADLINE_PERSON_AREA = 0.10
GROUP_WORDS = ("people", "group", "crowd")


# --- words --------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@lru_cache(maxsize=4096)
def _word_pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(_norm(term)) + r"(?!\w)")


def counted(labels: Iterable[Label], threshold: float = THRESHOLD) -> list[Label]:
    """The labels that count: confidence >= ``threshold``."""
    return [lab for lab in labels if lab.confidence >= threshold]


def label_words(labels: Iterable[Label], threshold: float = THRESHOLD) -> list[str]:
    """Names, aliases and parents of the counted labels, lowercased."""
    out: list[str] = []
    for lab in counted(labels, threshold):
        out.extend(_norm(t) for t in (lab.name, *lab.aliases, *lab.parents))
    return out


def label_categories(labels: Iterable[Label], threshold: float = THRESHOLD) -> list[str]:
    return [_norm(c) for lab in counted(labels, threshold) for c in lab.categories]


def has_word(texts: Iterable[str], term: str) -> bool:
    """Whether ``term`` occurs as whole words in one of ``texts`` (case-insensitive)."""
    pattern = _word_pattern(term)
    return any(pattern.search(_norm(t)) for t in texts)


def has_any(texts: Sequence[str], terms: Iterable[str]) -> bool:
    return any(has_word(texts, term) for term in terms)


# --- boxes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Box:
    """A box as fractions of the image: left, top, width, height (Rekognition's form)."""

    left: float
    top: float
    width: float
    height: float

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @classmethod
    def from_pixels(cls, bbox: Sequence[float], width: int, height: int) -> Box:
        """COCO's ``[x, y, w, h]`` in pixels of a ``width`` x ``height`` photo."""
        x, y, w, h = (float(v) for v in bbox)
        return cls(x / width, y / height, w / width, h / height)


def iou(a: Box, b: Box) -> float:
    """Intersection over union (scale-free, so fractions and pixels give the same value)."""
    ix = max(0.0, min(a.left + a.width, b.left + b.width) - max(a.left, b.left))
    iy = max(0.0, min(a.top + a.height, b.top + b.height) - max(a.top, b.top))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def match_boxes(truth: Sequence[Box], predicted: Sequence[Box], min_iou: float = IOU_MIN) -> int:
    """How many ``truth`` boxes a ``predicted`` box matches at IoU >= ``min_iou``, one to one,
    taking the pairs greedily from the highest IoU down."""
    pairs = sorted(
        (
            (v, i, j)
            for i, t in enumerate(truth)
            for j, p in enumerate(predicted)
            if (v := iou(t, p)) >= min_iou
        ),
        reverse=True,
    )
    used_t: set[int] = set()
    used_p: set[int] = set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
    return len(used_t)


@dataclass(frozen=True, slots=True)
class TruthBox:
    box: Box
    iscrowd: bool = False


def eligible_person_boxes(boxes: Iterable[TruthBox], min_area: float = BOX_AREA_MIN) -> list[Box]:
    """Annotated person boxes that count: not crowd, covering >= ``min_area`` of the photo."""
    return [b.box for b in boxes if not b.iscrowd and b.box.area >= min_area]


def person_instances(
    labels: Iterable[Label], person_words: Sequence[str], threshold: float = THRESHOLD
) -> list[Box]:
    """Counted instances of counted labels whose name is a person word."""
    out: list[Box] = []
    for lab in counted(labels, threshold):
        if has_any([lab.name], person_words):
            out.extend(
                Box(i.box.left, i.box.top, i.box.width, i.box.height)
                for i in lab.instances
                if i.confidence >= threshold
            )
    return out


# --- scene ground truth ---------------------------------------------------------------


class SceneRule(BaseModel):
    """Holds when all of its fields hold (see ``bench/data/scene_truth.yml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    any: list[str] = Field(default_factory=list)
    all: list[str] = Field(default_factory=list)
    any_major: list[str] = Field(default_factory=list)
    none: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> SceneRule:
        if not (self.any or self.all or self.any_major):
            raise ValueError("a scene rule needs any, all or any_major (it would hold everywhere)")
        return self

    def holds(self, objects: frozenset[str], objects_major: frozenset[str]) -> bool:
        return (
            (not self.any or bool(objects & set(self.any)))
            and all(c in objects for c in self.all)
            and (not self.any_major or bool(objects_major & set(self.any_major)))
            and not (objects & set(self.none))
        )

    def classes(self) -> set[str]:
        return {*self.any, *self.all, *self.any_major, *self.none}


class SceneTruth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    scenes: dict[str, list[str]]
    rules: dict[str, list[SceneRule]]

    @model_validator(mode="after")
    def _consistent(self) -> SceneTruth:
        unknown = sorted(set(self.rules) - set(self.scenes))
        if unknown:
            raise ValueError(f"rules for scenes not in the vocabulary: {unknown}")
        wordless = sorted(s for s, words in self.scenes.items() if not words)
        if wordless:
            raise ValueError(f"scenes without words: {wordless}")
        return self

    def check_classes(self, coco: CocoNames) -> None:
        """Every class a rule names is a COCO class (a typo would silently never hold)."""
        used = set().union(*(r.classes() for rules in self.rules.values() for r in rules))
        unknown = sorted(used - set(coco.classes))
        if unknown:
            raise ValueError(f"scene rules name classes COCO does not have: {unknown}")

    def derive(self, objects: frozenset[str], objects_major: frozenset[str]) -> tuple[str, ...]:
        """The scenes COCO's annotations make unambiguous for one photo."""
        return tuple(
            scene
            for scene, rules in self.rules.items()
            if any(r.holds(objects, objects_major) for r in rules)
        )


# --- one photo ------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """What is known about one photo."""

    name: str
    objects: frozenset[str]  # every annotated COCO class
    objects_major: frozenset[str]  # classes with an instance covering >= 1% of the photo
    person_area_max: float  # share of the photo the largest annotated person covers (0: none)
    person_boxes: tuple[TruthBox, ...] = ()
    scenes: tuple[str, ...] = ()
    expect: tuple[tuple[str, ...], ...] = ()  # other things to name; each: alternative terms

    @property
    def has_person(self) -> bool:
        return "person" in self.objects or self.person_area_max > 0


@dataclass(frozen=True)
class PhotoScore:
    name: str
    label_count: int
    person_word: bool
    person_boxes: int
    person_boxes_matched: int
    objects_found: tuple[str, ...]
    objects_missed: tuple[str, ...]
    objects_named: tuple[str, ...]  # COCO classes whose names the labels contain
    scenes_found: tuple[str, ...]
    scenes_missed: tuple[str, ...]
    scenes_found_loose: tuple[str, ...]
    expect_found: tuple[str, ...]
    expect_missed: tuple[str, ...]
    seconds: float = 0.0


def score_photo(
    truth: Truth,
    labels: Sequence[Label],
    *,
    coco: CocoNames,
    scene_words: Mapping[str, Sequence[str]],
    seconds: float = 0.0,
    threshold: float = THRESHOLD,
) -> PhotoScore:
    words = label_words(labels, threshold)
    categories = label_categories(labels, threshold)
    person_words = coco.person_words
    truth_boxes = eligible_person_boxes(truth.person_boxes)
    matched = match_boxes(truth_boxes, person_instances(labels, person_words, threshold))
    major = sorted(truth.objects_major)
    found = tuple(c for c in major if has_any(words, coco.names(c)))
    named = tuple(c for c in sorted(coco.classes) if has_any(words, coco.names(c)))

    def scene_found(scene: str, *, loose: bool) -> bool:
        terms = scene_words[scene]
        if has_any(words, terms):
            return True
        if loose:
            return has_any(categories, terms)
        return bool({_norm(t) for t in terms} & set(categories))

    scenes_found = tuple(s for s in truth.scenes if scene_found(s, loose=False))
    expect_found = tuple("|".join(alts) for alts in truth.expect if has_any(words, alts))
    return PhotoScore(
        name=truth.name,
        label_count=len(counted(labels, threshold)),
        person_word=has_any(words, person_words),
        person_boxes=len(truth_boxes),
        person_boxes_matched=matched,
        objects_found=found,
        objects_missed=tuple(c for c in major if c not in found),
        objects_named=named,
        scenes_found=scenes_found,
        scenes_missed=tuple(s for s in truth.scenes if s not in scenes_found),
        scenes_found_loose=tuple(s for s in truth.scenes if scene_found(s, loose=True)),
        expect_found=expect_found,
        expect_missed=tuple("|".join(alts) for alts in truth.expect if "|".join(alts) not in expect_found),
        seconds=seconds,
    )


# --- a set of photos ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ratio:
    hits: int
    total: int

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "hits": self.hits, "total": self.total}


@dataclass(frozen=True)
class Summary:
    photos: int
    coverage: Ratio
    person_recall: Ratio
    false_person: Ratio
    person_box_recall: Ratio
    object_recall: Ratio
    object_recall_no_person: Ratio
    object_precision: Ratio
    scene_recall: Ratio
    scene_recall_loose: Ratio
    expect_recall: Ratio
    mean_labels: float
    latency_ms: dict[str, float]
    per_class: dict[str, Ratio] = field(default_factory=dict)
    per_scene: dict[str, Ratio] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"photos": self.photos}
        for key, value in self.__dict__.items():
            if isinstance(value, Ratio):
                out[key] = value.as_dict()
        out["mean_labels"] = self.mean_labels
        out["latency_ms"] = self.latency_ms
        out["per_class"] = {k: v.as_dict() for k, v in self.per_class.items()}
        out["per_scene"] = {k: v.as_dict() for k, v in self.per_scene.items()}
        return out


def _per_key(pairs: Iterable[tuple[str, bool]]) -> dict[str, Ratio]:
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    for key, hit in pairs:
        totals[key] = totals.get(key, 0) + 1
        hits[key] = hits.get(key, 0) + int(hit)
    return {k: Ratio(hits[k], totals[k]) for k in sorted(totals)}


def summarize(truths: Sequence[Truth], scores: Sequence[PhotoScore]) -> Summary:
    """Every figure over one set of photos (``truths[i]`` is the truth of ``scores[i]``)."""
    if len(truths) != len(scores):
        raise ValueError("one score per truth")
    pairs = list(zip(truths, scores, strict=True))
    big_person = [s for t, s in pairs if t.person_area_max >= PERSON_AREA_MIN]
    no_person = [s for t, s in pairs if not t.has_person]
    found = sum(len(s.objects_found) for s in scores)
    major = found + sum(len(s.objects_missed) for s in scores)
    person_pairs = [("person" in s.objects_found, "person" in t.objects_major) for t, s in pairs]
    named = sum(len(s.objects_named) for s in scores)
    named_true = sum(len(set(s.objects_named) & t.objects) for t, s in pairs)
    scenes_total = sum(len(t.scenes) for t in truths)
    expect_total = sum(len(t.expect) for t in truths)
    seconds = [s.seconds for s in scores]
    latency = {}
    if seconds:
        ordered = sorted(seconds)
        latency = {
            "mean": 1000 * statistics.fmean(ordered),
            "p50": 1000 * statistics.median(ordered),
            "p95": 1000 * ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "max": 1000 * ordered[-1],
        }
    return Summary(
        photos=len(scores),
        coverage=Ratio(sum(s.label_count > 0 for s in scores), len(scores)),
        person_recall=Ratio(sum(s.person_word for s in big_person), len(big_person)),
        false_person=Ratio(sum(s.person_word for s in no_person), len(no_person)),
        person_box_recall=Ratio(
            sum(s.person_boxes_matched for s in scores), sum(s.person_boxes for s in scores)
        ),
        object_recall=Ratio(found, major),
        object_recall_no_person=Ratio(
            found - sum(hit for hit, is_major in person_pairs if is_major),
            major - sum(is_major for _, is_major in person_pairs),
        ),
        object_precision=Ratio(named_true, named),
        scene_recall=Ratio(sum(len(s.scenes_found) for s in scores), scenes_total),
        scene_recall_loose=Ratio(sum(len(s.scenes_found_loose) for s in scores), scenes_total),
        expect_recall=Ratio(sum(len(s.expect_found) for s in scores), expect_total),
        mean_labels=statistics.fmean(s.label_count for s in scores) if scores else 0.0,
        latency_ms=latency,
        per_class=_per_key(
            (c, hit)
            for s in scores
            for c, hit in [*((c, True) for c in s.objects_found), *((c, False) for c in s.objects_missed)]
        ),
        per_scene=_per_key(
            (sc, hit)
            for s in scores
            for sc, hit in [*((x, True) for x in s.scenes_found), *((x, False) for x in s.scenes_missed)]
        ),
    )


def worst_classes(per_class: Mapping[str, Ratio], *, min_support: int = 3, limit: int = 15) -> list[str]:
    """Classes with at least ``min_support`` photos, lowest recall first (more photos first on ties)."""
    eligible = [(c, r) for c, r in per_class.items() if r.total >= min_support]
    eligible.sort(key=lambda item: (item[1].value or 0.0, -item[1].total, item[0]))
    return [c for c, _ in eligible[:limit]]


# --- the scene set (issue 26): labelled scenes, indoor/outdoor ----------------------------

SIDES = ("Indoors", "Outdoors")
#: Devset scenes (derived from COCO objects) that settle the side of the photo.
DERIVED_SIDE = {
    "Kitchen": "Indoors",
    "Bathroom": "Indoors",
    "Bedroom": "Indoors",
    "Street": "Outdoors",
    "Snow": "Outdoors",
    "Beach / Sea": "Outdoors",
}


def side_of(derived_scenes: Iterable[str]) -> str | None:
    """Indoors or Outdoors when the derived scenes settle it (and do not disagree), else None."""
    sides = {DERIVED_SIDE[s] for s in derived_scenes if s in DERIVED_SIDE}
    return sides.pop() if len(sides) == 1 else None


def side_correct(side: str, labels: Sequence[Label], threshold: float = THRESHOLD) -> bool:
    """The photo's side (Indoors / Outdoors) is among the label words and the other is not."""
    if side not in SIDES:
        raise ValueError(f"not a side: {side!r}")
    words = label_words(labels, threshold)
    other = SIDES[1 - SIDES.index(side)]
    return has_word(words, side) and not has_word(words, other)


def indoor_outdoor(sides: Sequence[str | None], labels: Sequence[Sequence[Label]]) -> Ratio:
    """**Indoor/outdoor accuracy**: of the photos whose side is known, the share where the
    labels name that side and not the other (naming both, or neither, is wrong)."""
    known = [(s, lab) for s, lab in zip(sides, labels, strict=True) if s is not None]
    return Ratio(sum(side_correct(s, lab) for s, lab in known), len(known))


@dataclass(frozen=True)
class SceneSetSummary:
    """Figures over labelled scene photos (each label: 1 the photo has it, 0 it has not,
    -1 unknown; see ``labelkit/labelers/train_scenes.py``'s ``MAY_SHOW``)."""

    photos: int
    scene_recall: Ratio  # (photo, scene) pairs with the scene named, every scene
    scene_recall_no_sides: Ratio  # the same without Indoors / Outdoors
    indoor_outdoor: Ratio
    recall: dict[str, Ratio]  # per scene
    precision: dict[str, Ratio]  # per scene: of the photos it is named on whose truth is known

    def as_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "scene_recall": self.scene_recall.as_dict(),
            "scene_recall_no_sides": self.scene_recall_no_sides.as_dict(),
            "indoor_outdoor": self.indoor_outdoor.as_dict(),
            "recall": {k: v.as_dict() for k, v in self.recall.items()},
            "precision": {k: v.as_dict() for k, v in self.precision.items()},
        }


def summarize_scene_set(
    truths: Sequence[Mapping[str, int]], labels: Sequence[Sequence[Label]], threshold: float = THRESHOLD
) -> SceneSetSummary:
    """A scene is **named** when its name is found among the counted labels' words (name, aliases,
    parents: Sunset's parent Sky names Sky). Per scene, **recall**: of the photos having it, the
    share naming it; **precision**: of the photos naming it whose truth is known, the share having
    it. A photo's side is the one of Indoors / Outdoors it has."""
    if len(truths) != len(labels):
        raise ValueError("one label list per truth")
    scenes = sorted({s for t in truths for s in t})
    hit = dict.fromkeys(scenes, 0)
    total = dict.fromkeys(scenes, 0)
    named_known = dict.fromkeys(scenes, 0)
    named_right = dict.fromkeys(scenes, 0)
    sides: list[str | None] = []
    for truth, labs in zip(truths, labels, strict=True):
        words = label_words(labs, threshold)
        for scene, value in truth.items():
            named = has_word(words, scene)
            if value == 1:
                total[scene] += 1
                hit[scene] += named
            if named and value in (0, 1):
                named_known[scene] += 1
                named_right[scene] += value == 1
        have = [s for s in SIDES if truth.get(s) == 1]
        sides.append(have[0] if len(have) == 1 else None)
    recall = {s: Ratio(hit[s], total[s]) for s in scenes if total[s]}
    no_sides = [s for s in recall if s not in SIDES]
    return SceneSetSummary(
        photos=len(truths),
        scene_recall=Ratio(sum(r.hits for r in recall.values()), sum(r.total for r in recall.values())),
        scene_recall_no_sides=Ratio(
            sum(recall[s].hits for s in no_sides), sum(recall[s].total for s in no_sides)
        ),
        indoor_outdoor=indoor_outdoor(sides, labels),
        recall=recall,
        precision={s: Ratio(named_right[s], named_known[s]) for s in scenes},
    )


# --- the headline label ---------------------------------------------------------------


def headline_subject(
    truth: Truth, *, coco: CocoNames, scene_words: Mapping[str, Sequence[str]]
) -> tuple[str, ...] | None:
    """The words that name ``truth``'s main subject, or None when the annotations do not settle it."""
    if truth.person_area_max >= HEADLINE_PERSON_AREA:
        return (*coco.person_words, *GROUP_WORDS)
    if len(truth.objects_major) == 1:
        (only,) = truth.objects_major
        return (*coco.person_words, *GROUP_WORDS) if only == "person" else tuple(coco.names(only))
    if not truth.objects_major and truth.scenes:
        return tuple(w for scene in truth.scenes for w in scene_words[scene])
    return None


def headline_agreement(
    truths: Sequence[Truth],
    headlines: Sequence[Label | None],
    *,
    coco: CocoNames,
    scene_words: Mapping[str, Sequence[str]],
) -> Ratio:
    """Headline agreement (see the module docstring) of one headline label per photo: it
    names the subject when one of the subject's words is among its words (name, aliases,
    parents: "Baseball Player" under Person names a person)."""
    hits = total = 0
    for truth, headline in zip(truths, headlines, strict=True):
        words = headline_subject(truth, coco=coco, scene_words=scene_words)
        if words is None:
            continue
        total += 1
        hits += headline is not None and has_any(label_words([headline], threshold=0.0), words)
    return Ratio(hits, total)
