"""The headline label: the one thing a person would name a photo by.

A photo's labels are many (Dog, Frisbee, Grass, Outdoors, Pet, Mammal ...); its card, the
review queue and exports show one. The rule, in order:

1. a label a person **added** to the photo (they named what they care about);
2. the **main subject** among the labels with boxes: each label's largest box, its area
   weighted by how central it is, then by what it is: a person or an animal counts 3 times,
   a dish 2 times, an ordinary object once, an accessory (Tie, Frisbee, Bowl, a ball: the
   categories in :data:`ACCESSORY_CATEGORIES`) 0.35 times; an accessory never heads a
   photo that also shows a person, an animal or a dish. Several persons are one subject,
   named by the group label the labeller gave (Crowd, Group, People), their areas summed;
3. the **scene** for landscapes: when no subject's box covers :data:`SUBJECT_AREA` of the
   photo and a scene label (or Text, Document, Screenshot) stands, the most specific, most
   confident scene (Beach before Sky, Sky before Outdoors: :data:`GENERIC_SCENES` last);
4. otherwise the most specific label (not a parent of another), most confident first.

A label without a box (a fine-grained classifier name such as Cheeseburger) competes in
step 2 as if it covered a tenth of the photo times its confidence; grass, trees and other
scenery (category Nature and Outdoors) count half. Only labels at or
above the shown threshold count. The same rule runs on a labeller's output
(:func:`primary_of_labels`) and on a photo's stored labels after people's reviews
(``labelkit.db.queries.stats.primary_labels``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from labelkit.domain import Label

DATA = Path(__file__).parent / "labelers" / "data"
#: The share of the photo a subject must cover for it to head the photo over the scene.
SUBJECT_AREA = 0.10
#: A label without a box competes as if it covered this share of the photo (times confidence).
BOXLESS_AREA = 0.10
SHOWN = 55.0

BEING_CATEGORIES = frozenset({"Person Description", "Animals and Pets"})
DISH_CATEGORIES = frozenset({"Food and Beverage"})
ACCESSORY_CATEGORIES = frozenset(
    {"Apparel and Accessories", "Sports", "Hobbies and Interests", "Kitchen and Dining", "Everyday Objects"}
)
#: Text, Document and Screenshot (labelkit.labelers.ocr) are read like scenes: what the whole
#: photo is, when no subject fills it.
TEXT_CATEGORY = "Text and Documents"
SCENERY_CATEGORIES = frozenset({"Nature and Outdoors"})
WEIGHTS = {"being": 3.0, "dish": 2.0, "object": 1.0, "scenery": 0.5, "accessory": 0.35}
#: Scenes that say little of the place (which side of a door, the sky above, the hour, a
#: sign read somewhere in it): any other scene first (Document and Screenshot are specific).
GENERIC_SCENES = frozenset({"indoors", "outdoors", "room", "sky", "night", "text"})

Box = tuple[float, float, float, float]  # left, top, width, height (shares of the photo)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One label of a photo, as the rule sees it."""

    name: str
    confidence: float
    categories: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    added_by_person: bool = False


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The names the rule treats apart: scenes, the person label and its group labels, Face."""

    scenes: frozenset[str]
    person: str
    groups: tuple[str, ...]  # most persons first (Crowd, Group, People)
    face: str


@cache
def vocabulary(data: Path = DATA) -> Vocabulary:
    """Read from the labeller's own rules (``scenes.yml``, ``objects.yml``), casefolded."""
    scenes = yaml.safe_load((data / "scenes.yml").read_text(encoding="utf-8"))
    objects = yaml.safe_load((data / "objects.yml").read_text(encoding="utf-8"))
    groups = sorted(objects["people"]["groups"], key=lambda g: -int(g["min_count"]))
    person = objects["objects"]["person"]["name"] if "person" in objects.get("objects", {}) else "Person"
    return Vocabulary(
        scenes=frozenset(str(s["name"]).casefold() for s in scenes["scenes"]),
        person=str(person).casefold(),
        groups=tuple(str(g["name"]).casefold() for g in groups),
        face=str(objects["faces"]["name"]).casefold(),
    )


def _kind(categories: Iterable[str]) -> str:
    cats = set(categories)
    if cats & BEING_CATEGORIES:
        return "being"
    if cats & DISH_CATEGORIES and not cats & ACCESSORY_CATEGORIES:
        return "dish"
    if cats & ACCESSORY_CATEGORIES:
        return "accessory"
    if cats & SCENERY_CATEGORIES:
        return "scenery"
    return "object"


def _central(box: Box) -> float:
    """1 at the centre of the photo, 0.5 at a corner."""
    left, top, width, height = box
    dx, dy = left + width / 2 - 0.5, top + height / 2 - 0.5
    return 1.0 - 0.5 * min(1.0, math.hypot(dx, dy) / math.sqrt(0.5))


def _area(box: Box) -> float:
    return max(0.0, box[2]) * max(0.0, box[3])


def _best(cands: Sequence[Candidate]) -> Candidate:
    return min(cands, key=lambda c: (-c.confidence, c.name.casefold()))


def choose(
    candidates: Sequence[Candidate], *, threshold: float = SHOWN, vocab: Vocabulary | None = None
) -> str | None:
    """The headline label's name among ``candidates`` (None when none is shown)."""
    v = vocab or vocabulary()
    shown = [c for c in candidates if c.confidence >= threshold]
    if not shown:
        return None
    added = [c for c in shown if c.added_by_person]
    if added:
        return _best(added).name
    above = {p.casefold() for c in shown for p in c.parents}
    leaves = [c for c in shown if c.name.casefold() not in above] or shown
    scenes = [c for c in leaves if c.name.casefold() in v.scenes or TEXT_CATEGORY in c.categories]
    by_name = {c.name.casefold(): c for c in shown}

    # the subjects: persons as one, every other non-scene leaf on its own
    subjects: list[tuple[float, float, str, Candidate]] = []  # (score, area, kind, label)
    person = by_name.get(v.person)
    if person is not None and person.boxes:
        group = next((by_name[g] for g in v.groups if g in by_name), None)
        area = min(1.0, sum(_area(b) for b in person.boxes))
        central = max(_central(b) for b in person.boxes)
        named = group if group is not None and len(person.boxes) > 1 else person
        subjects.append((area * central * WEIGHTS["being"], area, "being", named))
    skip = {v.person, v.face, *v.groups}
    for c in leaves:
        key = c.name.casefold()
        if key in skip or key in v.scenes or TEXT_CATEGORY in c.categories:
            continue
        if c.boxes:
            area = max(_area(b) for b in c.boxes)
            salience = max(_area(b) * _central(b) for b in c.boxes)
        else:
            area = 0.0  # a guess over the whole photo: never enough to beat the scene
            salience = BOXLESS_AREA * c.confidence / 100
        kind = _kind(c.categories)
        subjects.append((salience * WEIGHTS[kind], area, kind, c))
    if person is not None and not person.boxes:  # a close-up face: the person is the subject
        subjects.append((BOXLESS_AREA * person.confidence / 100 * WEIGHTS["being"], 0.0, "being", person))

    if scenes and not any(area >= SUBJECT_AREA for _, area, _, _ in subjects):
        specific = [c for c in scenes if c.name.casefold() not in GENERIC_SCENES] or scenes
        return _best(specific).name
    if subjects:
        if any(kind in ("being", "dish") for _, _, kind, _ in subjects):
            subjects = [s for s in subjects if s[2] != "accessory"]
        return max(subjects, key=lambda s: (s[0], s[3].confidence, s[3].name))[3].name
    return _best(leaves).name


def candidates_of(labels: Iterable[Label]) -> list[Candidate]:
    """A labeller's labels as candidates (instances' boxes; none added by a person)."""
    return [
        Candidate(
            name=lab.name,
            confidence=lab.confidence,
            categories=tuple(lab.categories),
            parents=tuple(lab.parents),
            boxes=tuple((i.box.left, i.box.top, i.box.width, i.box.height) for i in lab.instances),
        )
        for lab in labels
    ]


def primary_of_labels(labels: Iterable[Label], *, threshold: float = SHOWN) -> str | None:
    """The headline label of a labeller's output."""
    return choose(candidates_of(labels), threshold=threshold)
