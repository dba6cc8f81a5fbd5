"""The scene head's training rules (labelkit/labelers/train_scenes.py, build time) on tiny
hand-made data: the split, what a missing label means, the threshold rule, the fit.
No scene set, no model."""

from __future__ import annotations

import numpy as np
import pytest

from labelkit.labelers.scenes import load_scenes
from labelkit.labelers.taxonomy import load_rules
from labelkit.labelers.train_scenes import (
    CLASSES,
    CROP_CLASSES,
    DEVSET_KEEP_OUT,
    FOLDS,
    HELD_OUT,
    HELD_OUT_EVERY,
    MAY_SHOW,
    SOURCES,
    Photo,
    assign_splits,
    choose_threshold,
    fit_head,
    targets,
)

INTEL = "github:afroozsheikh/Intel-Image-Classifier"
SCENE15 = "github:lionelmessi6410/Scene-Recognition-with-Bag-of-Words"


def photo(n: int, labels: set[str], source: str = INTEL, source_class: str = "forest") -> Photo:
    return Photo(
        file=f"images/x_{n}.jpg",
        labels=frozenset(labels),
        source=f"{source}:train/{source_class}/{n}.jpg",
        source_class=source_class,
        licence="",
        sha256=f"{n * 7919 % 100003:064x}",
    )


def test_every_class_is_a_scene_and_every_source_class_is_settled() -> None:
    # GIVEN the committed scene rules THEN every head class is a scene there, and the table of
    # what each source class may show names only head classes
    names = {s.name for s in load_scenes(load_rules()).scenes}
    assert set(CLASSES) <= names
    for group, maybe in MAY_SHOW.items():
        assert maybe <= set(CLASSES), group
        assert group.split("/")[0] in {*SOURCES.values(), "close-up"}


def test_a_close_up_is_a_no_to_every_scene_but_the_sides() -> None:
    # GIVEN a face close-up THEN every scene is a real "no", Indoors and Outdoors unknown
    face = Photo("/f/a.jpg", frozenset(), "close-up:faces:github:x/y:a.png", "face", "", "0" * 64)
    y = targets([face])[0]
    for name, value in zip(CLASSES, y.tolist(), strict=True):
        assert value == (-1 if name in ("Indoors", "Outdoors") else 0), name


def test_development_photos_whose_scenes_the_benchmark_derives_are_never_cropped() -> None:
    # GIVEN the benchmark's scene truth (the devset's derived scenes) THEN every COCO class its
    # rules name is kept out of the crops, so those photos stay unseen by the head
    import yaml

    from bench.label_quality import SCENE_TRUTH_PATH

    truth = yaml.safe_load(SCENE_TRUTH_PATH.read_text())
    for scene, rules in truth["rules"].items():
        for rule in rules:
            # a photo the rule selects has one of these classes: all of `all`, one of `any`
            needs_one_of = [set(rule.get(key, [])) for key in ("any", "any_major") if rule.get(key)]
            kept_out = bool(set(rule.get("all", [])) & DEVSET_KEEP_OUT) or any(
                group <= DEVSET_KEEP_OUT for group in needs_one_of
            )
            assert kept_out, (scene, rule)
    assert not CROP_CLASSES & DEVSET_KEEP_OUT


def test_a_missing_label_is_unknown_only_where_the_source_class_may_show_it() -> None:
    # GIVEN an Intel forest photo (it may show a mountain, never a kitchen; no sky under the canopy)
    y = targets([photo(1, {"Forest", "Outdoors"})])[0]
    col = {c: y[CLASSES.index(c)] for c in CLASSES}
    # THEN its labels are yes, Mountain unknown, Kitchen, Indoors and Sky real "no"s
    assert col["Forest"] == col["Outdoors"] == 1
    assert col["Mountain"] == -1
    assert col["Kitchen"] == col["Indoors"] == col["Sky"] == 0


def test_an_unknown_source_fails_loudly() -> None:
    with pytest.raises(ValueError, match="unknown source"):
        targets([photo(1, {"Forest"}, source="github:someone/else")])


def test_the_split_is_stratified_by_source_class_and_fixed_by_the_file_hashes() -> None:
    # GIVEN 50 photos of each of two source classes
    photos = [photo(n, {"Forest"}) for n in range(50)] + [
        photo(100 + n, {"Kitchen", "Indoors"}, SCENE15, "Kitchen") for n in range(50)
    ]
    split = assign_splits(photos)
    # THEN one photo in HELD_OUT_EVERY of each class is held out, the rest spread over the folds
    for members in (split[:50], split[50:]):
        assert (members == HELD_OUT).sum() == 50 // HELD_OUT_EVERY
        assert set(members[members != HELD_OUT].tolist()) == set(range(FOLDS))
    # AND the split follows the files, not their order in the list
    reordered = assign_splits(photos[::-1])[::-1]
    assert (reordered == split).all()


def test_the_threshold_is_the_lowest_where_precision_holds_from_there_up() -> None:
    # GIVEN scores of 12 positives at 0.9 .. 0.35 with negatives among them
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3, 0.2])
    truth = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, -1])
    # WHEN the target precision is 0.8 THEN the threshold keeps the 10 positives and two
    # negatives (10/12 >= 0.8), not the third (10/13 < 0.8), whatever lies below it
    assert choose_threshold(scores, truth, 0.8) == pytest.approx(0.4)
    # AND a stricter target stops above the first negative
    assert choose_threshold(scores, truth, 0.95) == pytest.approx(0.5)


def test_an_unreachable_precision_never_shows_the_class() -> None:
    scores = np.linspace(1.0, 0.0, 30)
    truth = np.array([0, 1] * 15)
    assert choose_threshold(scores, truth, 0.8) == 1.0


def test_the_fit_learns_separable_classes_and_ignores_unknown_targets() -> None:
    # GIVEN two classes read from two features, and rows whose contradicting target weighs 0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = np.stack([(x[:, 0] > 0), (x[:, 1] > 0)], axis=1).astype(np.int8)
    y[:50, 0] = 1 - y[:50, 0]  # wrong, but unknown
    w = np.ones(y.shape, np.float32)
    w[:50, 0] = 0.0
    # WHEN fitted
    head = fit_head(x, y, w, l2=1e-3)
    p = head.probs(x)
    # THEN the classes are told apart, the unknown rows included
    assert ((p[:, 0] > 0.5) == (x[:, 0] > 0)).mean() > 0.97
    assert ((p[:, 1] > 0.5) == (x[:, 1] > 0)).mean() > 0.97
