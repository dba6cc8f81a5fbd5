"""The label-quality definitions (bench/label_metrics.py) on tiny hand-made photos and labels,
so that the figures in the README cannot silently change meaning. No devset, no model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.label_metrics import (
    Box,
    SceneRule,
    Summary,
    Truth,
    TruthBox,
    has_word,
    headline_agreement,
    headline_subject,
    iou,
    label_words,
    match_boxes,
    score_photo,
    summarize,
    worst_classes,
)
from bench.label_quality import (
    DevsetMissing,
    load_package_photos,
    load_scene_truth,
    resolve_devset,
)
from labelkit.domain import BoundingBox, Instance, Label
from labelkit.labelers.coco_names import CocoNamesError, load_coco_names, parse_coco_names

COCO = load_coco_names()
SCENES = load_scene_truth(COCO)

# COCO 2017's 80 detection classes, written out independently of the YAML table.
COCO_80 = """person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant
stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack
umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove
skateboard surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple
sandwich orange broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed
dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven toaster sink
refrigerator book clock vase scissors teddy_bear hair_drier toothbrush""".split()


def lab(
    name: str,
    confidence: float = 90.0,
    *,
    parents: Sequence[str] = (),
    aliases: Sequence[str] = (),
    categories: Sequence[str] = (),
    boxes: Sequence[tuple[float, float, float, float]] = (),
    box_confidence: float | None = None,
) -> Label:
    return Label(
        name=name,
        confidence=confidence,
        parents=list(parents),
        aliases=list(aliases),
        categories=list(categories),
        instances=[
            Instance(
                box=BoundingBox(left=b[0], top=b[1], width=b[2], height=b[3]),
                confidence=confidence if box_confidence is None else box_confidence,
            )
            for b in boxes
        ],
    )


def truth(
    name: str = "p",
    *,
    objects: Sequence[str] = (),
    major: Sequence[str] | None = None,
    person_area: float = 0.0,
    boxes: Sequence[TruthBox] = (),
    scenes: Sequence[str] = (),
    expect: Sequence[Sequence[str]] = (),
) -> Truth:
    return Truth(
        name=name,
        objects=frozenset(objects),
        objects_major=frozenset(objects if major is None else major),
        person_area_max=person_area,
        person_boxes=tuple(boxes),
        scenes=tuple(scenes),
        expect=tuple(tuple(e) for e in expect),
    )


def summary_of(*photos: tuple[Truth, list[Label]]) -> Summary:
    truths = [t for t, _ in photos]
    scores = [score_photo(t, labels, coco=COCO, scene_words=SCENES.scenes) for t, labels in photos]
    return summarize(truths, scores)


# --- words ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "term", "found"),
    [
        ("dining table", "table", True),
        ("Dining Table", "TABLE", True),
        ("wildcat", "cat", False),
        ("catamaran", "cat", False),
        ("woman", "man", False),
        ("mobile phone", "phone", True),
        ("mobile phone", "mobile phone", True),
        ("mobile  phone", "mobile phone", True),
        ("phone", "mobile phone", False),
        ("tvs", "tv", False),
        ("four-poster", "four-poster", True),
        ("t-shirt", "shirt", True),
    ],
)
def test_terms_match_whole_words_only(text: str, term: str, found: bool) -> None:
    assert has_word([text], term) is found


def test_label_words_are_name_aliases_and_parents_of_labels_at_50_or_more() -> None:
    # GIVEN labels at, above and just below the threshold
    labels = [
        lab("Tabby", 50.0, parents=["Cat"], aliases=["Tabby Cat"], categories=["Animals and Pets"]),
        lab("Dog", 49.9, parents=["Animal"]),
    ]
    # WHEN their words are taken
    words = label_words(labels)
    # THEN the 50.0 label gives name, alias and parent; categories and the 49.9 label give nothing
    assert words == ["tabby", "tabby cat", "cat"]


# --- coverage, person ------------------------------------------------------------------


def test_coverage_needs_one_label_at_50() -> None:
    s = summary_of(
        (truth("a"), [lab("Cat", 50.0)]),
        (truth("b"), [lab("Cat", 49.99)]),
        (truth("c"), []),
    )
    assert (s.coverage.hits, s.coverage.total) == (1, 3)


def test_person_recall_counts_photos_whose_largest_person_covers_2_percent() -> None:
    # GIVEN people at exactly 2%, at 1.9% and at 50%, and a photo with no person
    s = summary_of(
        (truth("at-2%", objects=["person"], person_area=0.02), [lab("Person")]),
        (truth("1.9%", objects=["person"], person_area=0.019), [lab("Person")]),
        (truth("big", objects=["person"], person_area=0.5), [lab("Dog")]),
        (truth("nobody", objects=["dog"]), [lab("Dog")]),
    )
    # THEN the 2% and 50% photos are the denominator; the 1.9% one is in neither figure
    assert (s.person_recall.hits, s.person_recall.total) == (1, 2)
    assert (s.false_person.hits, s.false_person.total) == (0, 1)


@pytest.mark.parametrize(
    "label",
    [
        lab("Person"),
        lab("Woman"),
        lab("Child"),
        lab("Adult", parents=["Person"]),
        lab("Bride", aliases=["Woman"]),
        lab("Face", parents=["Person"]),
    ],
)
def test_person_words_come_from_name_aliases_or_parents(label: Label) -> None:
    s = summary_of((truth(objects=["person"], person_area=0.3), [label]))
    assert s.person_recall.value == 1.0


@pytest.mark.parametrize(
    "label", [lab("Person", 49.0), lab("Woman", 40.0), lab("Mannequin"), lab("Sportsman")]
)
def test_no_person_word_below_50_or_inside_other_words(label: Label) -> None:
    s = summary_of((truth(objects=["person"], person_area=0.3), [label]))
    assert s.person_recall.value == 0.0


def test_false_person_counts_only_photos_with_no_person_annotated() -> None:
    s = summary_of(
        (truth("cat", objects=["cat"]), [lab("Person", 60.0), lab("Cat")]),
        (truth("dog", objects=["dog"]), [lab("Dog")]),
        (truth("tiny person", objects=["person"], person_area=0.001), [lab("Person")]),
    )
    assert (s.false_person.hits, s.false_person.total) == (1, 2)


def test_the_person_words_live_in_the_coco_table() -> None:
    words = {w.lower() for w in COCO.person_words}
    assert {"person", "people", "man", "woman", "child", "boy", "girl", "human"} <= words
    assert COCO.label_name("person") == "Person"


# --- boxes -----------------------------------------------------------------------------


def test_iou() -> None:
    a = Box(0.0, 0.0, 0.5, 0.5)
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, Box(0.5, 0.5, 0.5, 0.5)) == 0.0  # touching corners
    # half of a overlaps a same-sized box shifted right by half its width: 1/3
    assert iou(a, Box(0.25, 0.0, 0.5, 0.5)) == pytest.approx(1 / 3)
    # contained: inner area / outer area
    assert iou(Box(0.0, 0.0, 1.0, 1.0), Box(0.25, 0.25, 0.5, 0.5)) == pytest.approx(0.25)


def test_iou_is_the_same_in_pixels_and_fractions() -> None:
    px = Box.from_pixels([100, 50, 200, 100], 640, 480)
    assert px == Box(100 / 640, 50 / 480, 200 / 640, 100 / 480)
    other = Box.from_pixels([150, 50, 200, 100], 640, 480)
    assert iou(px, other) == pytest.approx((150 * 100) / (2 * 200 * 100 - 150 * 100))


def test_match_boxes_is_one_to_one_highest_iou_first() -> None:
    t1, t2 = Box(0.0, 0.0, 0.4, 0.4), Box(0.05, 0.0, 0.4, 0.4)
    # one prediction between two overlapping truths matches one of them only
    assert match_boxes([t1, t2], [Box(0.02, 0.0, 0.4, 0.4)]) == 1
    # two predictions, each nearest one truth: both match
    assert match_boxes([t1, t2], [t1, t2]) == 2
    assert match_boxes([t1], []) == 0


def test_iou_of_exactly_half_matches_and_just_below_does_not() -> None:
    # (binary fractions, so the IoU is exactly 0.5)
    truth_box = Box(0.0, 0.0, 0.5, 0.5)
    exactly_half = Box(0.0, 0.0, 0.25, 0.5)  # inside, half the area: IoU 0.5
    assert iou(truth_box, exactly_half) == 0.5
    assert match_boxes([truth_box], [exactly_half]) == 1
    assert match_boxes([truth_box], [Box(0.0, 0.0, 0.249, 0.5)]) == 0


def test_person_box_recall_rules() -> None:
    big = TruthBox(Box(0.1, 0.1, 0.3, 0.6))  # 18% of the photo
    at_1pct = TruthBox(Box(0.7, 0.7, 0.1, 0.1))  # exactly 1%
    small = TruthBox(Box(0.9, 0.0, 0.09, 0.1))  # 0.9%: not counted
    crowd = TruthBox(Box(0.0, 0.8, 1.0, 0.2), iscrowd=True)  # never counted
    t = truth(objects=["person"], person_area=0.18, boxes=[big, at_1pct, small, crowd])
    # GIVEN a Person label whose instances hit the big box, the 1% box, the small box and the crowd
    hits = [(0.1, 0.1, 0.3, 0.6), (0.7, 0.7, 0.1, 0.1), (0.9, 0.0, 0.09, 0.1), (0.0, 0.8, 1.0, 0.2)]
    s = summary_of((t, [lab("Person", boxes=hits)]))
    # THEN only the big and the 1% box are in the figure, both matched
    assert (s.person_box_recall.hits, s.person_box_recall.total) == (2, 2)


def test_person_boxes_need_a_person_named_label_and_instances_at_50() -> None:
    box = (0.1, 0.1, 0.3, 0.6)
    t = truth(objects=["person"], person_area=0.18, boxes=[TruthBox(Box(*box))])
    assert summary_of((t, [lab("Person", boxes=[box])])).person_box_recall.value == 1.0
    assert summary_of((t, [lab("Man", boxes=[box])])).person_box_recall.value == 1.0
    # a face box under parent Person is not a person box; nor is a weak instance or a weak label
    assert summary_of((t, [lab("Face", parents=["Person"], boxes=[box])])).person_box_recall.value == 0.0
    assert summary_of((t, [lab("Person", boxes=[box], box_confidence=49.0)])).person_box_recall.value == 0.0
    assert summary_of((t, [lab("Person", 49.0, boxes=[box])])).person_box_recall.value == 0.0


# --- objects ---------------------------------------------------------------------------


def test_object_recall_uses_the_coco_to_rekognition_names() -> None:
    t = truth(objects=["dining table", "cell phone", "tv", "potted plant", "couch"])
    labels = [
        lab("Coffee Table", parents=["Furniture"]),  # "table" in a longer name
        lab("Mobile Phone"),
        lab("Monitor"),
        lab("Plant"),
    ]
    s = summary_of((t, labels))
    assert (s.object_recall.hits, s.object_recall.total) == (4, 5)
    assert s.per_class["couch"].value == 0.0
    assert summary_of((t, [lab("Sofa")])).per_class["couch"].value == 1.0


def test_object_recall_counts_only_classes_covering_1_percent() -> None:
    # GIVEN a photo with a big dog and a tiny cup (annotated, but under 1%: not in objects_major)
    t = truth(objects=["dog", "cup"], major=["dog"])
    s = summary_of((t, [lab("Dog", parents=["Animal"])]))
    # THEN the cup is not in the denominator, and naming it would not be a false object either
    assert (s.object_recall.hits, s.object_recall.total) == (1, 1)
    assert "cup" not in s.per_class
    s2 = summary_of((t, [lab("Dog"), lab("Cup"), lab("Car")]))
    assert (s2.object_precision.hits, s2.object_precision.total) == (2, 3)


def test_object_recall_without_person_leaves_person_out() -> None:
    t = truth(objects=["person", "dog"], person_area=0.3)
    s = summary_of((t, [lab("Dog")]))
    assert (s.object_recall.hits, s.object_recall.total) == (1, 2)
    assert (s.object_recall_no_person.hits, s.object_recall_no_person.total) == (1, 1)


def test_object_found_through_a_parent() -> None:
    s = summary_of((truth(objects=["cat"]), [lab("Egyptian Cat", parents=["Cat", "Mammal"])]))
    assert s.object_recall.value == 1.0
    s = summary_of((truth(objects=["cat"]), [lab("Wildcat", parents=["Mammal"])]))
    assert s.object_recall.value == 0.0


def test_worst_classes_lowest_recall_then_most_photos() -> None:
    photos = [
        *((truth(f"d{i}", objects=["dog"]), [lab("Dog") if i < 3 else lab("Tree")]) for i in range(4)),
        *((truth(f"c{i}", objects=["cup"]), [lab("Tree")]) for i in range(3)),
        *((truth(f"b{i}", objects=["bed"]), [lab("Tree")]) for i in range(5)),
        (truth("k", objects=["kite"]), [lab("Tree")]),  # 1 photo: below the support floor
    ]
    s = summary_of(*photos)
    assert worst_classes(s.per_class, min_support=3) == ["bed", "cup", "dog"]
    assert s.per_class["dog"].value == 0.75


# --- scenes ----------------------------------------------------------------------------


def test_scene_rules_from_coco_objects() -> None:
    def scenes(objects: Sequence[str], major: Sequence[str] | None = None) -> tuple[str, ...]:
        return SCENES.derive(frozenset(objects), frozenset(objects if major is None else major))

    assert scenes(["oven", "sink"]) == ("Kitchen",)
    assert scenes(["oven", "toilet"]) == ()  # a room with both: not unambiguous
    assert scenes(["sink"]) == ()  # a sink alone: bathroom or kitchen
    assert scenes(["toilet", "sink"]) == ("Bathroom",)
    assert scenes(["bed"]) == ("Bedroom",)
    assert scenes(["bed"], major=[]) == ()  # a bed under 1% of the photo says nothing
    assert scenes(["surfboard", "person"]) == ("Beach / Sea",)
    assert scenes(["skis"]) == ("Snow",)
    assert scenes(["bus"]) == ("Street",)
    assert scenes(["traffic light", "car"]) == ("Street",)
    assert scenes(["traffic light"]) == ()
    assert scenes(["boat"]) == ()


def test_a_scene_rule_needs_a_positive_condition() -> None:
    with pytest.raises(ValueError, match="would hold everywhere"):
        SceneRule(none=["toilet"])


def test_scene_recall_words_and_whole_categories() -> None:
    t = truth(objects=["oven"], scenes=["Kitchen"])
    assert summary_of((t, [lab("Kitchen")])).scene_recall.value == 1.0
    assert summary_of((t, [lab("Room", aliases=["Kitchen"])])).scene_recall.value == 1.0
    assert summary_of((t, [lab("Oven", categories=["Kitchen"])])).scene_recall.value == 1.0
    # a broad category containing the word is not a scene, except in the loose figure
    broad = summary_of((t, [lab("Cup", categories=["Kitchen and Dining"])]))
    assert broad.scene_recall.value == 0.0
    assert broad.scene_recall_loose.value == 1.0
    assert summary_of((t, [lab("Kitchen", 49.0)])).scene_recall.value == 0.0


def test_expected_things_accept_any_alternative() -> None:
    t = truth(expect=[["coffee", "espresso"], ["face"]])
    s = summary_of((t, [lab("Espresso", parents=["Beverage"])]))
    assert (s.expect_recall.hits, s.expect_recall.total) == (1, 2)


def test_latency_and_mean_labels() -> None:
    truths = [truth("a"), truth("b")]
    scores = [
        score_photo(
            truths[0], [lab("Cat"), lab("Animal")], coco=COCO, scene_words=SCENES.scenes, seconds=0.010
        ),
        score_photo(truths[1], [], coco=COCO, scene_words=SCENES.scenes, seconds=0.030),
    ]
    s = summarize(truths, scores)
    assert s.mean_labels == 1.0
    assert s.latency_ms["p50"] == pytest.approx(20.0)
    assert s.latency_ms["max"] == pytest.approx(30.0)


# --- data files ------------------------------------------------------------------------


def test_the_coco_table_has_exactly_coco_s_80_classes() -> None:
    assert set(COCO.classes) == {c.replace("_", " ") for c in COCO_80}
    assert COCO.label_name("dining table") == "Dining Table"
    assert "Table" in COCO.names("dining table")
    assert {"Mobile Phone", "Phone"} <= set(COCO.names("cell phone"))
    assert {"TV", "Monitor", "Television"} <= set(COCO.names("tv"))
    assert {"Potted Plant", "Plant"} <= set(COCO.names("potted plant"))
    assert {"Couch", "Sofa"} <= set(COCO.names("couch"))


def test_the_coco_table_is_validated() -> None:
    good = {"version": 1, "classes": dict(COCO.classes)}
    missing = dict(good, classes={k: v for k, v in COCO.classes.items() if k != "toaster"})
    with pytest.raises(CocoNamesError, match="80"):
        parse_coco_names(missing)
    classes = {**COCO.classes, "sofa-ish": ["Sofa"]}
    classes.pop("toaster")
    clash = dict(good, classes=classes)
    with pytest.raises(CocoNamesError, match="under two classes"):
        parse_coco_names(clash)
    with pytest.raises(CocoNamesError):
        parse_coco_names({**good, "extra": 1})


def test_scene_truth_and_package_expectations_are_consistent() -> None:
    # GIVEN the shipped data files; THEN every class and scene they name exists, and the
    # scikit-image / scikit-learn photos are found (darknet's only where it is installed)
    photos, missing = load_package_photos(COCO, SCENES, darknet_dir=Path("/nonexistent"))
    names = {p.truth.name for p in photos}
    assert {"astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "page", "text"} <= names
    assert {"china", "flower"} <= names
    assert all(m.startswith("darknet_") for m in missing)
    astronaut = next(p.truth for p in photos if p.truth.name == "astronaut")
    assert astronaut.person_area_max >= 0.02 and "person" in astronaut.objects_major
    chelsea = next(p.truth for p in photos if p.truth.name == "chelsea")
    assert not chelsea.has_person


def test_a_missing_devset_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(DevsetMissing, match="--devset"):
        resolve_devset(tmp_path / "nowhere")
    (tmp_path / "devset.json").write_text("[]")
    assert resolve_devset(tmp_path) == tmp_path


# --- the headline label ----------------------------------------------------------------


def test_the_headline_subject_is_settled_only_where_the_annotations_say_it() -> None:
    scene = next(iter(SCENES.scenes))
    person = truth(objects=["person", "tie"], person_area=0.4)
    dog = truth(objects=["dog", "frisbee"], major=["dog"])
    landscape = truth(scenes=[scene])
    unsettled = truth(objects=["cup", "bowl"])  # two classes, no large person: COCO has no areas
    assert "Person" in (headline_subject(person, coco=COCO, scene_words=SCENES.scenes) or ())
    assert headline_subject(dog, coco=COCO, scene_words=SCENES.scenes) == COCO.names("dog")
    assert headline_subject(landscape, coco=COCO, scene_words=SCENES.scenes) == tuple(SCENES.scenes[scene])
    assert headline_subject(unsettled, coco=COCO, scene_words=SCENES.scenes) is None
    # a group label names the person too, a breed the dog (its parent); a wrong headline and a
    # missing one count as misses
    ratio = headline_agreement(
        [person, dog, unsettled, person, dog],
        [lab("Group"), lab("Golden Retriever", parents=["Dog"]), lab("Cup"), lab("Tie"), None],
        coco=COCO,
        scene_words=SCENES.scenes,
    )
    assert (ratio.hits, ratio.total) == (2, 4)
