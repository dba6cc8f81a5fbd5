"""Fusion: the classifier's, detector's, face detector's and scene rules' outputs -> one label list.

What it does, and why (rules and numbers in ``data/objects.yml``, validated here):

* **Objects** come from the COCO detector, one instance (box) per object, under
  Rekognition-style names with parents and categories ("Dog" -> Canine, Pet, Mammal,
  Animal; "Dining Table" -> Table, Furniture). A detection score is mapped to confidence
  so that the class's threshold reads 55, Rekognition's default minimum.
* **Agreement raises confidence**: the classifier's probability summed over the ImageNet
  classes under the COCO class (dog breeds for "dog") is mapped the same way, and the
  two are combined by noisy-OR; either alone keeps its own value.
* **Boxes**: detector boxes go to the class's label and to every classifier label that
  falls under the class ("Golden Retriever" gets the dog boxes); classifier labels under
  a class the detector knows never get class-activation (CAM) boxes, which box "the hot
  region" rather than each object; the others keep CAM boxes as before.
* **People**: "Person" has one instance per detected person; "People", "Group", "Crowd"
  follow from the count (their confidence is that of the n-th most confident person, i.e.
  "at least n people"); a confident face also counts as evidence of a person.
* **Parents** are at least as confident as their most confident child, and **the most
  specific confident label leads**: a label at ``lead_confidence`` or more puts each of its
  parents just below itself, so a card shows "African Elephant", not "Animal".
* **Scenes** (:mod:`labelkit.labelers.scenes`) join as labels of their own.

Everything here is pure (numbers in, labels out): the unit tests drive it with fixed
detector and classifier outputs, no model needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labelkit.domain import BoundingBox, Instance, Label
from labelkit.labelers.base import LabelOptions
from labelkit.labelers.calibration import Target, targets
from labelkit.labelers.taxonomy import CompiledRules, RulesError, classes_under, confidence_at, load_taxonomy

if TYPE_CHECKING:
    from labelkit.labelers.calibration import ConfidenceMap
    from labelkit.labelers.classify import ClassifierOutput
    from labelkit.labelers.detect import Detection
    from labelkit.labelers.faces import Face
    from labelkit.labelers.scenes import SceneRules

DATA_DIR = Path(__file__).resolve().parent / "data"
OBJECTS_PATH = DATA_DIR / "objects.yml"
#: Entries whose confidence is below this never become candidate labels (keeps lists short).
FLOOR_CONFIDENCE = 1.0
#: Class-activation boxes are computed for at most this many returned labels per image.
MAX_CAM_BOXES = 8
#: How far below its child a capped parent is put, per step up the hierarchy.
LEAD_STEP = 0.01


# --- the rules file's schema ---------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FusionDefaults(_Strict):
    threshold: float = Field(gt=0, lt=1)
    classifier_threshold: float = Field(gt=0, lt=1)


class PeopleGroup(_Strict):
    name: str = Field(min_length=1)
    min_count: int = Field(ge=2)
    aliases: list[str] = Field(default_factory=list)


class PeopleRules(_Strict):
    count_confidence: float = Field(ge=0, le=100)
    groups: list[PeopleGroup]
    person_from_face: float = Field(ge=0, le=1)


class FaceRules(_Strict):
    name: str = Field(min_length=1)
    threshold: float = Field(gt=0, lt=1)
    aliases: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)


class GroupRule(_Strict):
    parents: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)


class ObjectRule(_Strict):
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    parents: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    synsets: list[str] = Field(default_factory=list)
    threshold: float | None = Field(default=None, gt=0, lt=1)
    classifier_threshold: float | None = Field(default=None, gt=0, lt=1)


class FusionFile(_Strict):
    version: int = Field(ge=1)
    defaults: FusionDefaults
    lead_confidence: float = Field(ge=0, le=100)
    max_instances: int = Field(ge=1)
    people: PeopleRules
    faces: FaceRules
    groups: dict[str, GroupRule]
    objects: dict[str, ObjectRule]

    @model_validator(mode="after")
    def _consistent(self) -> FusionFile:
        object_names = [o.name for o in self.objects.values()]
        dupes = sorted({n for n in object_names if object_names.count(n) > 1})
        if dupes:
            raise ValueError(f"objects: names used twice: {dupes}")
        clash = sorted(set(object_names) & set(self.groups))
        if clash:
            raise ValueError(f"names both an object and a group: {clash}")
        known = set(self.groups) | set(object_names)
        for coco, rule in self.objects.items():
            missing = sorted(set(rule.parents) - known)
            if missing:
                raise ValueError(f"object {coco!r}: parents with no group entry: {missing}")
        for name, group in self.groups.items():
            missing = sorted(set(group.parents) - known)
            if missing:
                raise ValueError(f"group {name!r}: parents with no group entry: {missing}")
        missing = sorted({g.name for g in self.people.groups} - set(self.groups))
        if missing:
            raise ValueError(f"people groups with no group entry: {missing}")
        return self


# --- compiled form -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """A label the fusion can create itself: an object class, a group, the face label."""

    name: str
    aliases: tuple[str, ...]
    parents: tuple[str, ...]  # every ancestor, nearest first
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ObjectClass:
    coco: str
    kind: Kind
    threshold: float
    classifier_threshold: float
    classes: np.ndarray  # ImageNet class indices under its synsets (may be empty)


@dataclass(frozen=True)
class FusionRules:
    objects: dict[str, ObjectClass]  # by COCO name
    kinds: dict[str, Kind]  # every group / object / face label, by label name
    entry_object: dict[int, str]  # classifier rules entry index -> COCO class it falls under
    people: PeopleRules
    face: Kind
    face_threshold: float
    lead_confidence: float
    max_instances: int
    version: str
    #: The label names calibration covers: each class's label and the classifier names under it.
    targets: dict[str, Target] = field(default_factory=dict)


def family_of(kind: Kind) -> str:
    """A class's family: its top parent ("Dog" -> Animal), or itself with none ("Person")."""
    return kind.parents[-1] if kind.parents else kind.name


def parse_fusion(data: Any) -> FusionFile:
    try:
        return FusionFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError(f"invalid fusion rules: {exc}") from exc


def compile_fusion(
    parsed: FusionFile,
    rules: CompiledRules,
    taxonomy: dict[str, Any],
    coco_names: set[str],
    *,
    digest: str = "",
) -> FusionRules:
    problems: list[str] = []
    missing = sorted(coco_names - set(parsed.objects))
    extra = sorted(set(parsed.objects) - coco_names)
    if missing:
        problems.append(f"COCO classes without an entry under objects: {missing}")
    if extra:
        problems.append(f"objects that are not COCO classes: {extra}")
    declared = set(rules.categories)

    raw: dict[str, tuple[list[str], list[str], list[str]]] = {}  # name -> (parents, aliases, cats)
    for name, group in parsed.groups.items():
        raw[name] = (group.parents, group.aliases, group.categories)
    for obj in parsed.objects.values():
        raw[obj.name] = (obj.parents, obj.aliases, obj.categories)
    face = parsed.faces
    raw[face.name] = ([], face.aliases, face.categories)

    def ancestors(name: str, seen: tuple[str, ...] = ()) -> list[str]:
        """The declared parents in their order, then any of their ancestors not declared."""
        out: list[str] = []
        for parent in raw[name][0]:
            if parent in seen or parent == name:
                problems.append(f"{name!r}: parent cycle through {parent!r}")
            elif parent not in out:
                out.append(parent)
        for parent in list(out):
            for a in ancestors(parent, (*seen, name)):
                if a not in out:
                    out.append(a)
        return out

    kinds: dict[str, Kind] = {}
    for name, (_, aliases, cats) in raw.items():
        parents = ancestors(name)
        categories: list[str] = []
        for c in [*cats, *(c for p in parents for c in raw[p][2])]:
            if c not in categories:
                categories.append(c)
        if not categories:
            categories = ["Everyday Objects"]
        unknown = sorted(set(categories) - declared)
        if unknown:
            problems.append(f"{name!r}: categories not declared in rules.yml: {unknown}")
        kinds[name] = Kind(
            name=name, aliases=tuple(aliases), parents=tuple(parents), categories=tuple(categories)
        )

    objects: dict[str, ObjectClass] = {}
    for coco, obj in parsed.objects.items():
        try:
            classes = classes_under(taxonomy, obj.synsets) if obj.synsets else frozenset()
        except RulesError as exc:
            problems.append(f"object {coco!r}: {exc}")
            classes = frozenset()
        if obj.synsets and not classes:
            problems.append(f"object {coco!r}: its synsets cover no ImageNet class")
        objects[coco] = ObjectClass(
            coco=coco,
            kind=kinds[obj.name],
            threshold=obj.threshold or parsed.defaults.threshold,
            classifier_threshold=obj.classifier_threshold or parsed.defaults.classifier_threshold,
            classes=np.asarray(sorted(classes), dtype=np.int64),
        )
    if problems:
        raise RulesError("invalid fusion rules: " + "; ".join(problems))

    # A classifier entry falls under an object class when all its ImageNet classes do; the
    # smallest such class wins (a "Pickup Truck" is under car and truck: 10 vs 8 classes).
    entry_object: dict[int, str] = {}
    sets = {coco: set(o.classes.tolist()) for coco, o in objects.items() if o.classes.size}
    for j, entry in enumerate(rules.entries):
        members = set(entry.classes)
        under = [(len(s), coco) for coco, s in sets.items() if members <= s]
        if under:
            entry_object[j] = min(under)[1]
    return FusionRules(
        objects=objects,
        kinds=kinds,
        entry_object=entry_object,
        people=parsed.people,
        face=kinds[face.name],
        face_threshold=face.threshold,
        lead_confidence=parsed.lead_confidence,
        max_instances=parsed.max_instances,
        targets=targets(
            {obj.kind.name: coco for coco, obj in objects.items()},
            {rules.entries[j].name: coco for j, coco in entry_object.items()},
            {coco: family_of(obj.kind) for coco, obj in objects.items()},
        ),
        version=f"{parsed.version}.{digest[:8]}" if digest else str(parsed.version),
    )


def load_fusion_text(text: str, rules: CompiledRules) -> FusionRules:
    from labelkit.labelers.detect import coco_labels

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"fusion rules are not valid YAML: {exc}") from exc
    digest = hashlib.sha256(text.encode()).hexdigest()
    return compile_fusion(
        parse_fusion(data), rules, load_taxonomy(), set(coco_labels().values()), digest=digest
    )


_CACHE: dict[tuple[str, Path], FusionRules] = {}


def load_fusion(rules: CompiledRules, path: Path = OBJECTS_PATH) -> FusionRules:
    """The compiled fusion rules for these classifier rules, parsed once per process."""
    key = (rules.version, path)
    if key not in _CACHE:
        _CACHE[key] = load_fusion_text(path.read_text(encoding="utf-8"), rules)
    return _CACHE[key]


# --- fusion --------------------------------------------------------------------------------


def noisy_or(a: float, b: float) -> float:
    """Two independent confidences (0-100) that the same thing is there, combined."""
    return 100.0 * (1.0 - (1.0 - a / 100.0) * (1.0 - b / 100.0))


@dataclass
class _Draft:
    name: str
    confidence: float
    parents: list[str]
    aliases: list[str]
    categories: list[str]
    instances: list[Instance] = field(default_factory=list)
    entry: int | None = None  # classifier rules entry (for a CAM box)
    cam: bool = False  # may get a class-activation box
    linked: bool = False  # under a class the detector knows: never a CAM box
    own: float = 0.0  # the classifier's own confidence (a CAM box needs it to be shown)
    detected: bool = False  # the detector found the class it is (or falls under)


class _Drafts:
    def __init__(self) -> None:
        self.by_name: dict[str, _Draft] = {}

    def add(
        self,
        name: str,
        confidence: float,
        *,
        parents: Sequence[str] = (),
        aliases: Sequence[str] = (),
        categories: Sequence[str] = (),
        instances: Sequence[Instance] = (),
        entry: int | None = None,
        cam: bool = False,
        linked: bool = False,
    ) -> _Draft:
        draft = self.by_name.get(name)
        if draft is None:
            draft = _Draft(name, confidence, [], [], [])
            self.by_name[name] = draft
        else:
            draft.confidence = max(draft.confidence, confidence)
        for target, values in (
            (draft.parents, parents),
            (draft.aliases, aliases),
            (draft.categories, categories),
        ):
            for v in values:
                if v not in target and v != name:
                    target.append(v)
        if instances and not draft.instances:
            draft.instances = list(instances)
        if draft.entry is None:
            draft.entry = entry
        draft.cam = draft.cam or cam
        draft.linked = draft.linked or linked
        return draft


def _instances(items: Sequence[tuple[BoundingBox, float]], floor: float, limit: int) -> list[Instance]:
    kept = sorted(
        ((box, conf) for box, conf in items if conf >= floor),
        key=lambda bc: (-bc[1], -(bc[0].width * bc[0].height)),
    )
    return [Instance(box=box, confidence=round(conf, 3)) for box, conf in kept[:limit]]


def fuse(
    rules: FusionRules,
    classifier_rules: CompiledRules,
    options: LabelOptions,
    *,
    classifier: ClassifierOutput | None = None,
    detections: Sequence[Detection] | None = None,
    faces: Sequence[Face] | None = None,
    scenes: SceneRules | None = None,
    scene_probs: dict[str, float] | None = None,
    calibration: ConfidenceMap | None = None,
) -> list[Label]:
    """The labels for one image (filtered and cut by ``options``), boxes included.

    ``detections``/``faces`` None means that model did not run (not: found nothing).
    ``scene_probs`` are :meth:`SceneRules.score`'s probabilities. ``calibration`` maps the
    confidence of the labels it covers (:mod:`labelkit.labelers.calibration`).
    """
    drafts = _Drafts()
    floor = options.min_confidence
    probs = classifier.probs if classifier is not None else None

    # 1. objects from the detector, with the classifier's agreement
    boxes_of: dict[str, list[Instance]] = {}
    by_class: dict[str, list[Detection]] = {}
    if detections is not None:
        for det in detections:
            by_class.setdefault(det.name, []).append(det)
        for coco, obj in rules.objects.items():
            dets = by_class.get(coco, [])
            mass = float(probs[obj.classes].sum()) if probs is not None and obj.classes.size else 0.0
            from_classifier = confidence_at(mass, obj.classifier_threshold)
            if not dets and from_classifier < FLOOR_CONFIDENCE:
                continue
            scored = [(d.box, confidence_at(d.score, obj.threshold)) for d in dets]
            from_detector = max((c for _, c in scored), default=0.0)
            confidence = noisy_or(from_detector, from_classifier)
            instances = _instances(scored, floor, rules.max_instances)
            boxes_of[coco] = instances
            kind = obj.kind
            drafts.add(
                kind.name,
                confidence,
                parents=kind.parents,
                aliases=kind.aliases,
                categories=kind.categories,
                instances=instances,
                linked=True,
            ).detected |= bool(dets)
            if coco == "person":
                _people(drafts, rules, scored)

    # 2. the classifier's own labels (fine-grained names, scenes it knows, groups)
    if classifier is not None:
        for j in np.flatnonzero(classifier.confidence >= FLOOR_CONFIDENCE).tolist():
            entry = classifier_rules.entries[j]
            linked_to: str | None = rules.entry_object.get(j) if detections is not None else None
            # A name the fusion rules define keeps their parents and categories: WordNet's
            # can differ (ImageNet's "cup" is the drink, under Beverage and Food).
            defined = rules.kinds.get(entry.name)
            draft = drafts.add(
                entry.name,
                float(classifier.confidence[j]),
                parents=defined.parents if defined else entry.parents,
                aliases=entry.aliases,
                categories=defined.categories if defined else entry.categories,
                instances=boxes_of.get(linked_to, []) if linked_to else [],
                entry=j,
                cam=entry.box and linked_to is None,
                linked=linked_to is not None,
            )
            draft.own = float(classifier.confidence[j])
            draft.detected |= linked_to is not None and linked_to in by_class

    # 3. faces, and the person they imply
    if faces is not None and faces:
        scored_faces = [(f.box, confidence_at(f.score, rules.face_threshold)) for f in faces]
        best = max(c for _, c in scored_faces)
        kind = rules.face
        drafts.add(
            kind.name,
            best,
            parents=kind.parents,
            aliases=kind.aliases,
            categories=kind.categories,
            instances=_instances(scored_faces, floor, rules.max_instances),
        )
        person = rules.objects["person"].kind
        drafts.add(
            person.name,
            best * rules.people.person_from_face,
            parents=person.parents,
            aliases=person.aliases,
            categories=person.categories,
            linked=True,
        )

    # 4. scenes
    if scenes is not None and scene_probs:
        for scene in scenes.scenes:
            confidence = scenes.confidence(scene, scene_probs.get(scene.name, 0.0))
            if confidence >= FLOOR_CONFIDENCE:
                drafts.add(
                    scene.name,
                    confidence,
                    parents=scene.parents,
                    aliases=scene.aliases,
                    categories=scene.categories,
                )

    _raise_parents(drafts, rules, classifier_rules, scenes)
    _lead_with_the_specific(drafts, rules.lead_confidence)
    if calibration is not None:
        _calibrate(drafts, rules, calibration, set(by_class))

    labels = [
        Label(
            name=d.name,
            confidence=round(min(100.0, max(0.0, d.confidence)), 3),
            parents=list(d.parents),
            aliases=list(d.aliases),
            categories=list(d.categories),
            instances=d.instances,
        )
        for d in drafts.by_name.values()
        if d.confidence >= FLOOR_CONFIDENCE
    ]
    kept = options.apply(labels)
    return _cam_boxes(kept, drafts, classifier, options.min_confidence)


def _people(drafts: _Drafts, rules: FusionRules, scored: list[tuple[BoundingBox, float]]) -> None:
    """People / Group / Crowd: confidence that at least n persons are there = the n-th best."""
    confidences = sorted((c for _, c in scored), reverse=True)
    counted = [c for c in confidences if c >= rules.people.count_confidence]
    for group in rules.people.groups:
        if len(counted) >= group.min_count:
            kind = rules.kinds[group.name]
            drafts.add(
                group.name,
                counted[group.min_count - 1],
                parents=kind.parents,
                aliases=[*group.aliases, *kind.aliases],
                categories=kind.categories,
            )


def _raise_parents(
    drafts: _Drafts, rules: FusionRules, classifier_rules: CompiledRules, scenes: SceneRules | None
) -> None:
    """Every parent label is present and at least as confident as its most confident child."""
    entry_by_name = {e.name: e for e in classifier_rules.entries}
    scene_by_name = {s.name: s for s in scenes.scenes} if scenes is not None else {}
    for draft in list(drafts.by_name.values()):
        for parent in draft.parents:
            existing = drafts.by_name.get(parent)
            if existing is not None:
                existing.confidence = max(existing.confidence, draft.confidence)
                continue
            kind = rules.kinds.get(parent)
            scene = scene_by_name.get(parent)
            entry = entry_by_name.get(parent)
            source: Any = kind or scene or entry
            drafts.add(
                parent,
                draft.confidence,
                parents=source.parents if source else (),
                aliases=source.aliases if source else (),
                categories=source.categories if source else draft.categories,
            )


def _lead_with_the_specific(drafts: _Drafts, lead: float) -> None:
    """Put each parent of a confident label just below it, deepest labels first."""
    for draft in sorted(drafts.by_name.values(), key=lambda d: (-len(d.parents), d.name)):
        if draft.confidence < lead:
            continue
        for step, parent in enumerate(draft.parents, start=1):
            above = drafts.by_name.get(parent)
            cap = draft.confidence - LEAD_STEP * step
            if above is not None and above.confidence > cap:
                above.confidence = cap


def _calibrate(drafts: _Drafts, rules: FusionRules, calibration: ConfidenceMap, boxed: set[str]) -> None:
    """Map the covered labels' confidence by what the detector says of their class (it boxed
    it, ``boxed`` holds another class of its family, or neither).

    A label the map takes down takes down with it the parents that were only its echo ("Feline"
    with a "Cat" the boxes contradict), down to their most confident other child; the family
    ("Animal") keeps its evidence: the safe name when the specific one is unsure. Then every
    parent is lifted to its most confident child again."""
    families = {family_of(rules.objects[c].kind) for c in boxed if c in rules.objects}
    echoes: set[str] = set()
    for draft in drafts.by_name.values():
        target = rules.targets.get(draft.name)
        if target is None:
            continue
        if draft.detected:
            evidence = "box"
        else:
            evidence = "other" if target.family in families else "none"
        raw = draft.confidence
        draft.confidence = calibration.adjust(target, evidence, raw)
        if draft.confidence < raw:
            echoes.update(p for p in draft.parents if p != target.family)
    for name in echoes:
        parent = drafts.by_name.get(name)
        if parent is None or name in rules.targets:
            continue
        children = [d.confidence for d in drafts.by_name.values() if name in d.parents]
        parent.confidence = min(parent.confidence, max(children, default=0.0))
    for draft in sorted(drafts.by_name.values(), key=lambda d: (-len(d.parents), d.name)):
        for parent_name in draft.parents:
            above = drafts.by_name.get(parent_name)
            if above is not None and above.confidence < draft.confidence:
                above.confidence = draft.confidence


def _cam_boxes(
    kept: list[Label], drafts: _Drafts, classifier: ClassifierOutput | None, floor: float
) -> list[Label]:
    """Class-activation boxes for labels the classifier itself is confident about (not ones
    raised by a detected child) and the detector cannot box."""
    if classifier is None:
        return kept
    out = []
    left = MAX_CAM_BOXES
    for lab in kept:
        draft = drafts.by_name[lab.name]
        usable = draft.cam and not draft.linked and draft.own >= floor
        if usable and not lab.instances and draft.entry is not None and left > 0:
            box = classifier.box(draft.entry)
            if box is not None:
                lab = lab.model_copy(update={"instances": [Instance(box=box, confidence=lab.confidence)]})
                left -= 1
        out.append(lab)
    return out


def classifier_labels(
    classifier: ClassifierOutput, classifier_rules: CompiledRules, options: LabelOptions
) -> list[Label]:
    """The classifier alone (``LABELKIT_LOCAL_MODELS=classifier``): its rolled-up labels with
    class-activation boxes, exactly as the labeller gave them before the detector existed."""
    floor = max(FLOOR_CONFIDENCE, options.min_confidence)
    drafts = _Drafts()
    labels = []
    for j in np.flatnonzero(classifier.confidence >= floor).tolist():
        entry = classifier_rules.entries[j]
        drafts.add(entry.name, 0.0, entry=j, cam=entry.box).own = float(classifier.confidence[j])
        labels.append(
            Label(
                name=entry.name,
                confidence=round(float(classifier.confidence[j]), 3),
                parents=list(entry.parents),
                aliases=list(entry.aliases),
                categories=list(entry.categories),
            )
        )
    return _cam_boxes(options.apply(labels), drafts, classifier, 0.0)
