"""The scene-set figures of `make bench-quality` (bench/label_metrics.py, issue 26) on
hand-made labels: scene recall and precision per scene, indoor/outdoor accuracy. No data set."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bench.label_metrics import indoor_outdoor, side_correct, side_of, summarize_scene_set
from labelkit.domain import Label


def lab(name: str, confidence: float = 80.0, parents: Sequence[str] = ()) -> Label:
    return Label(name=name, confidence=confidence, parents=list(parents))


def test_indoor_outdoor_needs_the_side_named_and_the_other_not() -> None:
    # GIVEN an indoor photo
    # THEN naming Indoors (or a room under it) is right; naming both, neither, or Indoors
    # below 50 is wrong
    assert side_correct("Indoors", [lab("Indoors")])
    assert side_correct("Indoors", [lab("Kitchen", parents=["Room", "Indoors"])])
    assert not side_correct("Indoors", [lab("Indoors"), lab("Sky", parents=["Outdoors"])])
    assert not side_correct("Indoors", [lab("Cup")])
    assert not side_correct("Indoors", [lab("Indoors", 49.9)])
    with pytest.raises(ValueError):
        side_correct("Upstairs", [])


def test_indoor_outdoor_accuracy_counts_only_photos_whose_side_is_known() -> None:
    ratio = indoor_outdoor(
        ["Indoors", "Outdoors", None, "Outdoors"],
        [[lab("Indoors")], [lab("Indoors")], [lab("Outdoors")], [lab("Street", parents=["Outdoors"])]],
    )
    assert (ratio.hits, ratio.total) == (2, 3)


def test_the_devset_side_comes_from_derived_scenes_that_agree() -> None:
    assert side_of(["Kitchen"]) == "Indoors"
    assert side_of(["Street", "Snow"]) == "Outdoors"
    assert side_of(["Kitchen", "Street"]) is None  # they disagree: not counted
    assert side_of(["Text / Document"]) is None


def test_scene_recall_and_precision_leave_unknown_labels_out() -> None:
    # GIVEN three photos: a beach (Sky unknown), a kitchen, a forest (Beach a real no)
    truths = [
        {"Beach": 1, "Sky": -1, "Outdoors": 1, "Indoors": 0, "Kitchen": 0},
        {"Beach": 0, "Sky": 0, "Outdoors": 0, "Indoors": 1, "Kitchen": 1},
        {"Beach": 0, "Sky": 0, "Outdoors": 1, "Indoors": 0, "Kitchen": 0},
    ]
    labels = [
        [lab("Beach", parents=["Outdoors"]), lab("Sky", parents=["Outdoors"])],  # Sky: unknown
        [lab("Indoors")],  # the kitchen is missed
        [lab("Beach", 60, parents=["Outdoors"])],  # a false beach
    ]
    # WHEN summarised
    s = summarize_scene_set(truths, labels)
    # THEN recall counts the photos having each scene; precision the known photos naming it
    assert (s.recall["Beach"].hits, s.recall["Beach"].total) == (1, 1)
    assert (s.precision["Beach"].hits, s.precision["Beach"].total) == (1, 2)
    assert (s.recall["Kitchen"].hits, s.recall["Kitchen"].total) == (0, 1)
    assert "Sky" not in s.recall and s.precision["Sky"].total == 0  # named only where unknown
    # AND scene recall sums the pairs, with and without the sides
    assert (s.scene_recall.hits, s.scene_recall.total) == (4, 5)  # Beach, Outdoors x2, Indoors
    assert (s.scene_recall_no_sides.hits, s.scene_recall_no_sides.total) == (1, 2)
    assert (s.indoor_outdoor.hits, s.indoor_outdoor.total) == (3, 3)
