"""Fusion and scene rules with fixed classifier / detector / face outputs (no model runs).

Every test builds the models' outputs by hand (class probabilities, detections, faces),
so each rule of ``data/objects.yml`` and ``data/scenes.yml`` is checked on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from labelkit.domain import BoundingBox, Label
from labelkit.labelers.base import LabelOptions
from labelkit.labelers.classify import ClassifierOutput
from labelkit.labelers.detect import Detection, coco_labels
from labelkit.labelers.faces import Face
from labelkit.labelers.fusion import OBJECTS_PATH, fuse, load_fusion, load_fusion_text, noisy_or
from labelkit.labelers.scenes import SCENES_PATH, load_scenes, load_scenes_text, scene_features
from labelkit.labelers.taxonomy import RulesError, load_rules, load_taxonomy

pytestmark = pytest.mark.model

RULES = load_rules()
FUSION = load_fusion(RULES)
SCENES = load_scenes(RULES)
CAM = BoundingBox(left=0.1, top=0.1, width=0.2, height=0.2)
INDEX = {c["names"][0]: c["index"] for c in load_taxonomy()["classes"]}
ALL = LabelOptions(min_confidence=0, max_labels=1000)


class StubClassifier:
    """Stands in for the model: every class-activation box is CAM."""

    def cam_box(self, probs: np.ndarray, features: np.ndarray, entry_index: int) -> BoundingBox:
        return CAM


def classifier(**probs: float) -> ClassifierOutput:
    """A classifier output with these ImageNet class probabilities (by first WordNet lemma,
    spaces as underscores); the rest of the mass spread evenly over every class."""
    p = np.zeros(1000, dtype=np.float32)
    for name, value in probs.items():
        p[INDEX[name.replace("_", " ")]] = value
    p += (1.0 - p.sum()) / 1000
    confidence = RULES.confidence(RULES.mass(p[None]))[0]
    stub: Any = StubClassifier()
    return ClassifierOutput(probs=p, confidence=confidence, features=np.zeros((1, 1, 1)), classifier=stub)


def box(left: float, top: float, width: float, height: float) -> BoundingBox:
    return BoundingBox(left=left, top=top, width=width, height=height)


def det(name: str, score: float, b: BoundingBox | None = None) -> Detection:
    return Detection(name=name, score=score, box=b or box(0.2, 0.2, 0.3, 0.3))


def run(
    cls: ClassifierOutput | None = None,
    dets: list[Detection] | None = None,
    faces: list[Face] | None = None,
    features: dict[str, float] | None = None,
    options: LabelOptions = ALL,
) -> dict[str, Label]:
    objects = None
    if dets is not None:
        objects = {}
        for d in dets:
            objects[d.name] = max(objects.get(d.name, 0.0), d.score)
    mass = RULES.mass(cls.probs[None])[0] if cls is not None else None
    probs = SCENES.score(entry_mass=mass, objects=objects, features=features or {})
    labels = fuse(
        FUSION,
        RULES,
        options,
        classifier=cls,
        detections=dets,
        faces=faces,
        scenes=SCENES,
        scene_probs=probs,
    )
    return {lab.name: lab for lab in labels}


def ordered(cls: ClassifierOutput | None = None, dets: list[Detection] | None = None) -> list[str]:
    return list(run(cls, dets, options=LabelOptions()))


# --- people ------------------------------------------------------------------------------


def test_one_person_instance_per_person_and_groups_from_the_count() -> None:
    # GIVEN three detected persons WHEN fused THEN Person has three boxes, and People (>= 2)
    # and Group (>= 3) say "at least n" with the n-th person's confidence; no Crowd
    boxes = [box(0.0, 0.1, 0.2, 0.8), box(0.3, 0.1, 0.2, 0.8), box(0.6, 0.1, 0.2, 0.8)]
    labels = run(dets=[det("person", s, b) for s, b in zip((0.95, 0.8, 0.7), boxes, strict=True)])
    person = labels["Person"]
    assert len(person.instances) == 3
    assert {i.box for i in person.instances} == set(boxes)
    assert "Person Description" in person.categories
    confidences = sorted((i.confidence for i in person.instances), reverse=True)
    assert labels["People"].confidence == pytest.approx(confidences[1], abs=0.05)
    assert labels["Group"].confidence == pytest.approx(confidences[2], abs=0.05)
    assert "Crowd" not in labels
    assert labels["Person"].confidence > labels["People"].confidence > labels["Group"].confidence


def test_a_crowd_needs_eight_people() -> None:
    dets = [det("person", 0.9, box(i / 10, 0.3, 0.08, 0.4)) for i in range(8)]
    labels = run(dets=dets)
    assert "Crowd" in labels and labels["Crowd"].confidence >= 55
    assert len(labels["Person"].instances) == 8


def test_a_face_is_evidence_of_a_person() -> None:
    # GIVEN a face and no person box (a close-up) THEN Person is there, without a box of its own
    labels = run(dets=[], faces=[Face(score=0.95, box=box(0.3, 0.2, 0.3, 0.4))])
    assert labels["Face"].confidence > 55 and len(labels["Face"].instances) == 1
    assert labels["Person"].confidence >= 55
    assert labels["Person"].instances == []


def test_nothing_detected_means_no_person() -> None:
    labels = run(cls=classifier(), dets=[], faces=[], options=LabelOptions(min_confidence=50))
    assert not {"Person", "People", "Face"} & set(labels)


# --- objects, parents, boxes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("coco", "name", "parents", "category"),
    [
        ("dog", "Dog", ["Canine", "Pet", "Mammal", "Animal"], "Animals and Pets"),
        ("car", "Car", ["Vehicle", "Transportation"], "Vehicles and Automotive"),
        ("cup", "Cup", ["Tableware"], "Kitchen and Dining"),
        ("laptop", "Laptop", ["Computer", "Electronics"], "Technology and Computing"),
        ("dining table", "Dining Table", ["Table", "Furniture"], "Furniture and Furnishings"),
        ("cell phone", "Mobile Phone", ["Phone", "Electronics"], "Technology and Computing"),
        ("tv", "TV", ["Screen", "Electronics"], "Technology and Computing"),
        ("bus", "Bus", ["Vehicle", "Transportation"], "Vehicles and Automotive"),
        ("train", "Train", ["Vehicle", "Transportation"], "Vehicles and Automotive"),
    ],
)
def test_objects_have_parents_and_categories(coco: str, name: str, parents: list[str], category: str) -> None:
    labels = run(dets=[det(coco, 0.9)])
    lab = labels[name]
    assert lab.parents == parents
    assert category in lab.categories
    assert len(lab.instances) == 1
    for parent in parents:  # every parent is a label too, at most as confident as the child
        assert parent in labels
        assert labels[parent].confidence <= lab.confidence


def test_detector_boxes_replace_class_activation_boxes() -> None:
    # GIVEN the classifier sees a golden retriever and the detector boxes a dog
    dog_box = box(0.4, 0.3, 0.5, 0.6)
    labels = run(cls=classifier(golden_retriever=0.9), dets=[det("dog", 0.9, dog_box)])
    # THEN the fine-grained label carries the detector's box, not a class-activation box
    assert [i.box for i in labels["Golden Retriever"].instances] == [dog_box]
    assert [i.box for i in labels["Dog"].instances] == [dog_box]
    assert "Dog" in labels["Golden Retriever"].parents


def test_no_class_activation_box_where_the_detector_knows_the_class() -> None:
    # GIVEN the classifier sees a golden retriever and the detector (which knows dogs) found none
    labels = run(cls=classifier(golden_retriever=0.9), dets=[])
    assert labels["Golden Retriever"].confidence > 55
    assert labels["Golden Retriever"].instances == []


def test_class_activation_boxes_where_the_detector_does_not_know_the_class() -> None:
    # GIVEN a butterfly (no COCO class) THEN its label keeps the class-activation box
    labels = run(cls=classifier(monarch=0.9), dets=[])
    assert [i.box for i in labels["Monarch"].instances] == [CAM]


def test_agreement_raises_confidence() -> None:
    alone = run(dets=[det("dog", 0.5)])["Dog"].confidence
    # (a breed below lead_confidence, so Dog is not put just below the breed)
    classifier_only = run(cls=classifier(golden_retriever=0.35), dets=[])["Dog"].confidence
    both = run(cls=classifier(golden_retriever=0.35), dets=[det("dog", 0.5)])["Dog"].confidence
    assert alone == pytest.approx(55, abs=0.1)  # the class threshold reads as 55
    assert both > max(alone, classifier_only) + 10
    # (the classifier-only Dog is the larger of its COCO-class mass and its own "Dog" label)
    assert both == pytest.approx(noisy_or(alone, classifier_only), abs=1.0)


def test_confidences_spread_over_the_whole_range() -> None:
    scores = [0.31, 0.4, 0.5, 0.6, 0.8, 0.99]
    confidences = [run(dets=[det("car", s)])["Car"].confidence for s in scores]
    assert confidences == sorted(confidences)
    assert confidences[0] < 40 and confidences[-1] > 95
    # and min_confidence filters on that scale
    assert "Car" not in run(dets=[det("car", 0.35)], options=LabelOptions(min_confidence=55))


def test_instances_follow_min_confidence() -> None:
    labels = run(dets=[det("car", 0.95), det("car", 0.35, box(0.6, 0.6, 0.2, 0.2))], options=LabelOptions())
    assert len(labels["Car"].instances) == 1


def test_the_most_specific_confident_label_leads() -> None:
    # African elephant seen by both models: the species leads, then Elephant, then Animal
    names = ordered(cls=classifier(African_elephant=0.9), dets=[det("elephant", 0.9)])
    assert names[0] == "African Elephant"
    assert names.index("Elephant") < names.index("Mammal") < names.index("Animal")
    # a church: "Church" above "Building"
    names = ordered(cls=classifier(church=0.9), dets=[])
    assert names.index("Church") < names.index("Building")


def test_every_elephant_gets_its_own_box() -> None:
    herd = [det("elephant", 0.9 - i * 0.01, box(i * 0.03, 0.5, 0.03, 0.1)) for i in range(30)]
    labels = run(cls=classifier(African_elephant=0.8), dets=herd)
    assert len(labels["Elephant"].instances) == 30
    assert len(labels["African Elephant"].instances) == 30


def test_taxonomy_holes_are_closed() -> None:
    labels = run(cls=classifier(school_bus=0.9), dets=[])
    assert {"Bus", "Vehicle"} <= set(labels["School Bus"].parents)
    labels = run(cls=classifier(bullet_train=0.9), dets=[])
    assert {"Train", "Vehicle"} <= set(labels["Bullet Train"].parents)
    labels = run(cls=classifier(lion=0.9), dets=[])
    assert "Lion" in labels and "Animal" in labels["Lion"].parents
    labels = run(cls=classifier(fire_engine=0.9), dets=[])
    assert "Fire Truck" in labels["Fire Engine"].aliases and "Vehicle" in labels["Fire Engine"].parents


# --- scenes -------------------------------------------------------------------------------


def _scene(labels: dict[str, Label], name: str) -> float:
    return labels[name].confidence if name in labels else 0.0


def test_kitchen_from_its_objects() -> None:
    labels = run(dets=[det("oven", 0.8), det("sink", 0.8), det("refrigerator", 0.8)])
    assert _scene(labels, "Kitchen") >= 55 and _scene(labels, "Indoors") >= 55
    assert _scene(labels, "Outdoors") < 50
    assert "Home and Indoors" in labels["Kitchen"].categories


@pytest.mark.parametrize(
    ("dets", "scene"),
    [
        ([det("bed", 0.9)], "Bedroom"),
        ([det("toilet", 0.9)], "Bathroom"),
        ([det("car", 0.9), det("traffic light", 0.8), det("person", 0.9)], "Street"),
        ([det("surfboard", 0.9)], "Beach"),
        ([det("couch", 0.9), det("tv", 0.8)], "Living Room"),
        ([det("laptop", 0.9), det("keyboard", 0.8), det("mouse", 0.8)], "Office"),
        ([det("skis", 0.9)], "Snow"),
    ],
)
def test_scenes_from_objects(dets: list[Detection], scene: str) -> None:
    assert _scene(run(dets=dets), scene) >= 55


def test_scenes_from_the_classifier_and_features() -> None:
    labels = run(cls=classifier(seashore=0.8), dets=[])
    assert _scene(labels, "Beach") >= 55 and _scene(labels, "Outdoors") >= 55
    labels = run(cls=classifier(alp=0.8), dets=[])
    assert _scene(labels, "Mountain") >= 55
    assert _scene(run(dets=[], features={"dark": 1.0}), "Night") >= 55
    assert _scene(run(dets=[], features={"sky": 0.9}), "Sky") >= 55
    assert _scene(run(dets=[], features={"dark": 0.0}), "Night") < 10


def test_indoors_and_outdoors_exclude_each_other() -> None:
    labels = run(dets=[det("bed", 0.9), det("car", 0.4)])
    assert _scene(labels, "Indoors") >= 55 and _scene(labels, "Outdoors") < 30


def test_scene_features_of_simple_images() -> None:
    sky = np.zeros((120, 160, 3), np.uint8)
    sky[:60] = (110, 160, 230)  # blue top
    sky[60:] = (60, 140, 50)  # green bottom
    f = scene_features(sky)
    assert f["sky"] > 0.9 and f["vegetation_low"] > 0.9 and f["dark"] == 0
    black = scene_features(np.zeros((50, 50, 3), np.uint8))
    assert black["dark"] == 1 and black["sky"] == 0


def test_required_scenes_exist() -> None:
    names = {s.name for s in SCENES.scenes}
    aliases = {a for s in SCENES.scenes for a in s.aliases}
    required = (
        "Indoors Outdoors Kitchen,Living Room,Bedroom Bathroom Office Restaurant Street City Road "
        "Beach Sea Lake Mountain Forest Field Snow Sky Night Text Screenshot"
    )
    for name in required.replace(",", " ").replace("Living Room", "Living_Room").split():
        assert name.replace("_", " ") in names
    assert {"River", "Document"} <= aliases


# --- the rules files ----------------------------------------------------------------------


def test_committed_fusion_rules_cover_every_coco_class() -> None:
    assert set(FUSION.objects) == set(coco_labels().values())
    assert len(FUSION.objects) == 80
    names = [o.kind.name for o in FUSION.objects.values()]
    assert len(names) == len(set(names))


def _fusion_with(change: Any) -> None:
    data = yaml.safe_load(OBJECTS_PATH.read_text())
    change(data)
    load_fusion_text(yaml.safe_dump(data), RULES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["objects"].pop("zebra"), "zebra"),
        (lambda d: d["objects"].update(unicorn={"name": "Unicorn"}), "unicorn"),
        (lambda d: d["objects"]["dog"].update(parents=["Nonexistent"]), "Nonexistent"),
        (lambda d: d["objects"]["dog"].update(categories=["Not A Category"]), "Not A Category"),
        (lambda d: d["objects"]["dog"].update(synsets=["n99999999"]), "n99999999"),
        (lambda d: d["objects"]["dog"].update(threshold=1.5), "threshold"),
        (lambda d: d["objects"]["cat"].update(name="Dog"), "Dog"),
    ],
)
def test_bad_fusion_rules_fail_loudly(change: Any, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        _fusion_with(change)


def _scenes_with(change: Any) -> None:
    data = yaml.safe_load(SCENES_PATH.read_text())
    change(data)
    load_scenes_text(yaml.safe_dump(data), RULES, set(coco_labels().values()), set(RULES.categories))


def _first(d: dict[str, Any]) -> dict[str, Any]:
    scene: dict[str, Any] = d["scenes"][0]
    return scene


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: _first(d).update(mood="calm"), "mood"),
        (lambda d: _first(d).update(classifier={"Not A Label": 0.5}), "Not A Label"),
        (lambda d: _first(d).update(objects={"unicorn": 0.5}), "unicorn"),
        (lambda d: _first(d).update(features={"smell": 0.5}), "smell"),
        (lambda d: _first(d).update(objects={"bed": 1.5}), "weights"),
        (lambda d: _first(d).update(parents=["Nowhere"]), "Nowhere"),
        (lambda d: _first(d).update(categories=["Not A Category"]), "Not A Category"),
        (lambda d: d["scenes"].append(dict(d["scenes"][0])), "duplicate"),
    ],
)
def test_bad_scene_rules_fail_loudly(change: Any, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        _scenes_with(change)
