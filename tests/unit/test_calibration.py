"""Confidence calibration (labelkit/labelers/calibration.py; fitting: fit_calibration.py): the maps,
the reliability figure, the committed file, and the fitting rules on made-up samples."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from labelkit.labelers.calibration import (
    CALIBRATION_PATH,
    CEILING,
    EXACT_SOURCES,
    LEAF,
    OBJECT,
    Calibration,
    Curve,
    Judged,
    Target,
    in_fit_split,
    judge,
    load_calibration,
    parse_calibration,
    reliability,
    source_key,
    targets,
)
from labelkit.labelers.fit_calibration import (
    CLASS_BOTH,
    CLASS_MIN,
    SOURCES,
    Sample,
    calibration_json,
    fit_curves,
)

DOG = Target(OBJECT, "dog", "Animal")
BREED = Target(LEAF, "dog", "Animal")


def test_a_curve_interpolates_clips_and_never_passes_the_ceiling() -> None:
    curve = Curve((20.0, 60.0, 90.0), (0.0, 80.0, 100.0))
    assert curve(10.0) == 0.0
    assert curve(40.0) == pytest.approx(40.0)
    assert curve(60.0) == pytest.approx(80.0)
    assert curve(99.0) == CEILING


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ((1.0, 2.0), (1.0,), "as many"),
        ((2.0, 1.0), (1.0, 2.0), "increasing"),
        ((1.0, 2.0), (5.0, 1.0), "decrease"),
    ],
)
def test_a_bad_curve_is_refused(x: tuple[float, ...], y: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Curve(x, y)


def test_source_keys_name_the_evidence() -> None:
    assert source_key(OBJECT, "box") == "object+box"
    assert source_key(OBJECT, "none") == "object-box"
    assert source_key(LEAF, "other") == "leaf-other"
    with pytest.raises(ValueError, match="evidence"):
        source_key(OBJECT, "boxed")


def test_a_class_map_wins_over_the_source_map_and_other_falls_back_to_no_box() -> None:
    cal = Calibration(
        curves={
            "object+box": Curve((0.0, 100.0), (0.0, 50.0)),
            "object+box:dog": Curve((0.0, 100.0), (0.0, 90.0)),
            "object-box": Curve((0.0, 100.0), (0.0, 10.0)),
        },
        version="t",
        info={},
    )
    assert cal.adjust(DOG, "box", 100.0) == pytest.approx(90.0)
    assert cal.adjust(Target(OBJECT, "cat", "Animal"), "box", 100.0) == pytest.approx(50.0)
    assert cal.adjust(DOG, "other", 100.0) == pytest.approx(10.0)  # no object-other map
    assert cal.adjust(BREED, "box", 70.0) == 70.0  # no leaf map: unchanged


def test_a_leaf_is_only_ever_taken_down() -> None:
    cal = Calibration(curves={"leaf+box": Curve((0.0, 100.0), (90.0, 95.0))}, version="t", info={})
    assert cal.adjust(BREED, "box", 2.0) == 2.0  # the dog is there; the breed at 2% still is not
    cal = Calibration(curves={"leaf-box": Curve((0.0, 100.0), (0.0, 20.0))}, version="t", info={})
    assert cal.adjust(BREED, "none", 80.0) == pytest.approx(16.0)


def test_targets_name_objects_over_leaves() -> None:
    out = targets({"Dog": "dog"}, {"Golden Retriever": "dog", "Dog": "dog"}, {"dog": "Animal"})
    assert out["Dog"] == DOG
    assert out["Golden Retriever"] == BREED


def test_reliability_is_zero_when_confidence_matches_the_share_right() -> None:
    judged = [Judged(95.0, True)] * 19 + [Judged(95.0, False)] + [Judged(55.0, True), Judged(55.0, False)] * 5
    rel = reliability(judged)
    assert rel.count == 30
    assert rel.ece == pytest.approx((20 * 0.0 + 10 * 0.05) / 30)


def test_reliability_of_overconfident_labels_is_their_gap() -> None:
    rel = reliability([Judged(90.0, True), Judged(90.0, False)])
    assert rel.ece == pytest.approx(0.4)
    assert reliability([Judged(90.0, True)], floor=95.0).count == 0


def test_judge_keeps_what_the_truth_can_say() -> None:
    lab = SimpleNamespace
    labels = [
        lab(name="Dog", confidence=90.0, instances=[object()]),
        lab(name="Golden Retriever", confidence=40.0, instances=[]),
        lab(name="Animal", confidence=90.0, instances=[]),
    ]
    covered = {"Dog": DOG, "Golden Retriever": BREED}
    out = judge(labels, {"dog"}, covered)
    assert out == [("object+box", Judged(90.0, True)), ("leaf-box", Judged(40.0, True))]
    assert judge(labels, {"cat"}, covered, floor=50.0) == [("object+box", Judged(90.0, False))]
    assert set(EXACT_SOURCES) == {"object+box", "object-box"}


def test_the_fit_split_is_stable_and_about_half() -> None:
    names = [f"coco_{i:012d}.jpg" for i in range(400)]
    fit = [n for n in names if in_fit_split(n)]
    assert 150 < len(fit) < 250
    assert fit == [n for n in names if in_fit_split(n)]


def _samples(key: str, coco: str, rows: list[tuple[float, bool]]) -> list[Sample]:
    return [Sample(key, coco, raw, right) for raw, right in rows]


def test_fitting_gives_a_monotone_map_per_source_and_a_class_map_only_with_enough_data() -> None:
    low = [(30.0, False)] * 30 + [(30.0, True)] * 10
    high = [(90.0, True)] * 38 + [(90.0, False)] * 2
    person = _samples("object+box", "person", low + high)  # 80 labels, 12 wrong ... enough
    kite = _samples("object+box", "kite", [(50.0, True)] * (CLASS_MIN - 1) + [(20.0, False)])
    samples = person + kite + _samples("leaf-box", "dog", [(70.0, False)] * 9 + [(70.0, True)])
    curves, counts = fit_curves(samples)
    assert set(curves) == {"object+box", "object+box:person", "leaf-box"}
    assert counts["object+box:person"] == {"samples": 80, "right": 48}
    assert len(person) >= CLASS_MIN and sum(not s.right for s in person) >= CLASS_BOTH
    mapped = curves["object+box:person"]
    assert mapped(30.0) == pytest.approx(25.0)
    assert mapped(90.0) == pytest.approx(95.0)
    assert curves["leaf-box"](70.0) == pytest.approx(10.0)
    # and it round-trips through the file format
    cal = parse_calibration(calibration_json(curves, counts, {"fitted": "today"}))
    assert cal.adjust(Target(OBJECT, "person", "Person"), "box", 90.0) == pytest.approx(95.0)
    assert cal.info["fitted"] == "today"


def test_the_committed_calibration_covers_every_source_and_takes_down_a_contradicted_class() -> None:
    cal = load_calibration()
    assert cal.version.startswith("cal1.")
    assert {k.split(":")[0] for k in cal.curves} == set(SOURCES)
    data = json.loads(CALIBRATION_PATH.read_text(encoding="utf-8"))
    after, before = data["held_out"]["after"], data["held_out"]["before"]
    assert after["ece"] < before["ece"] and after["ece_shown"] < before["ece_shown"]
    # a detector box at the class's threshold (55) is worth showing; a classifier's cat where
    # the detector boxed a dog is not, however sure the classifier is
    assert cal.adjust(DOG, "box", 55.0) >= 50.0
    assert cal.adjust(Target(OBJECT, "cat", "Animal"), "other", 86.0) < 50.0
