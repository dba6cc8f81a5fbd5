"""The learned scene head at run time (labelkit/labelers/scenes.py) with fixed features, and
the committed weights file. No model runs: a head is a matrix product over given vectors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from labelkit.errors import LabelerError
from labelkit.labelers.scenes import (
    HEAD_FORMAT,
    HEAD_PATH,
    SceneHead,
    SceneRules,
    fuse_probability,
    load_scenes,
    load_scenes_with_head,
)
from labelkit.labelers.taxonomy import RulesError, load_rules

RULES = load_rules()
SCENES = load_scenes(RULES)
DIM = 8


def toy_head(
    classes: tuple[str, ...] = ("Indoors", "Outdoors", "Beach", "Sunset", "Building", "Market"),
    *,
    use_rules: tuple[bool, ...] | None = None,
    thresholds: tuple[float, ...] | None = None,
) -> SceneHead:
    """A head over DIM features where feature j is the logit of class j (zero bias)."""
    k = len(classes)
    weight = np.zeros((DIM, k), dtype=np.float32)
    weight[np.arange(k), np.arange(k)] = 1.0
    return SceneHead.from_arrays(
        classes=classes,
        mean=np.zeros(DIM, np.float32),
        scale=np.ones(DIM, np.float32),
        weight=weight,
        bias=np.zeros(k, np.float32),
        thresholds=np.asarray(thresholds or (0.6,) * k, np.float32),
        use_rules=np.asarray(use_rules or (False,) * k, bool),
    )


def logits(**by_index: float) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    for key, value in by_index.items():
        v[int(key[1:])] = value
    return v


def score(rules: SceneRules, pooled: np.ndarray, mass: np.ndarray | None = None) -> dict[str, float]:
    return rules.score(entry_mass=mass, objects=None, features={}, pooled=pooled)


# --- fusion -------------------------------------------------------------------------------


def test_fuse_probability_is_the_noisy_or_only_where_the_rules_are_used() -> None:
    # GIVEN a head probability and a rules probability
    # WHEN fused with and without the rules
    # THEN the noisy-OR of the two, or the head's alone
    assert fuse_probability(0.5, 0.5, use_rules=True) == pytest.approx(0.75)
    assert fuse_probability(0.5, 0.9, use_rules=False) == 0.5
    assert fuse_probability(0.0, 0.3, use_rules=True) == pytest.approx(0.3)


def test_the_head_s_probability_is_its_logistic_over_the_features() -> None:
    # GIVEN a head whose class j reads feature j
    head = toy_head()
    # WHEN features give Beach a logit of 2 and Sunset -2
    p = head.probabilities(logits(x2=2.0, x3=-2.0)[None])[0]
    # THEN the probabilities are the logistic of those logits (0.5 at logit 0)
    assert p[2] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-6)
    assert p[3] == pytest.approx(1 / (1 + np.exp(2.0)), abs=1e-6)
    assert p[0] == pytest.approx(0.5)


def test_with_a_head_its_scenes_take_its_thresholds_and_the_others_keep_theirs() -> None:
    # GIVEN the committed rules and a head over six scenes with threshold 0.6
    fused = SCENES.with_head(toy_head())
    by_name = {s.name: s for s in fused.scenes}
    rules = {s.name: s for s in SCENES.scenes}
    # THEN the head's scenes show at 0.6, the rest (Bathroom) keep the rules' threshold,
    # and the version names the head
    assert by_name["Beach"].threshold == pytest.approx(0.6)
    assert by_name["Bathroom"].threshold == rules["Bathroom"].threshold
    assert fused.version.startswith(SCENES.version + "+head")


def test_the_head_alone_decides_where_the_rules_are_not_fused() -> None:
    # GIVEN a head that gives Beach 0.12 and does not use the rules, and the classifier sure
    # of a seashore (the rules alone would say Beach)
    fused = SCENES.with_head(toy_head())
    mass = _seashore_mass()
    rules_only = SCENES.score(entry_mass=mass, objects=None, features={})
    assert rules_only["Beach"] > 0.9
    # WHEN scored with the head (sure it is outdoors, so the exclusion leaves Beach alone)
    probs = score(fused, logits(x0=-30.0, x1=4.0, x2=-2.0), mass=mass)
    # THEN the head's probability is Beach's
    assert probs["Beach"] == pytest.approx(1 / (1 + np.exp(2.0)), abs=1e-6)


def test_the_rules_add_evidence_where_they_are_fused() -> None:
    # GIVEN the same head, now fusing the rules for Beach
    fused = SCENES.with_head(toy_head(use_rules=(False, False, True, False, False, False)))
    mass = _seashore_mass()
    rules_only = SCENES.score(entry_mass=mass, objects=None, features={})["Beach"]
    head = 1 / (1 + np.exp(2.0))
    # WHEN scored THEN Beach is the noisy-OR of the head's and the rules' probabilities
    probs = score(fused, logits(x0=-30.0, x1=4.0, x2=-2.0), mass=mass)
    assert probs["Beach"] == pytest.approx(1 - (1 - head) * (1 - rules_only), abs=1e-6)


def test_indoors_and_outdoors_still_exclude_each_other_after_the_fusion() -> None:
    # GIVEN a head sure of Indoors (logit 3) and rather sure of Outdoors (logit 1)
    fused = SCENES.with_head(toy_head())
    probs = score(fused, logits(x0=3.0, x1=1.0))
    p_in, p_out = 1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(-1.0))
    # THEN the less likely one is scaled down by (1 - the other)
    assert probs["Indoors"] == pytest.approx(p_in, abs=1e-6)
    assert probs["Outdoors"] == pytest.approx(p_out * (1 - p_in), abs=1e-6)


def test_what_lies_under_the_losing_side_is_scaled_with_it() -> None:
    # GIVEN a head sure of Indoors and the rules' sky feature saying Sky (a bright ceiling)
    fused = SCENES.with_head(toy_head())
    rules_sky = SCENES.score(entry_mass=None, objects=None, features={"sky": 0.9})["Sky"]
    probs = fused.score(entry_mass=None, objects=None, features={"sky": 0.9}, pooled=logits(x0=4.0))
    p_in = 1 / (1 + np.exp(-4.0))
    # THEN Sky, under Outdoors, is scaled down with Outdoors: it cannot make the photo
    # Outdoors again through its parent
    assert rules_sky > 0.5
    assert probs["Sky"] == pytest.approx(rules_sky * (1 - p_in), abs=1e-6)
    assert probs["Indoors"] == pytest.approx(p_in, abs=1e-6)


def test_a_head_needs_the_pooled_features() -> None:
    fused = SCENES.with_head(toy_head())
    with pytest.raises(ValueError, match="pooled"):
        fused.score(entry_mass=None, objects=None, features={}, pooled=None)


def test_a_head_and_rules_that_disagree_fail_loudly() -> None:
    # GIVEN a head with a class the rules do not have
    with pytest.raises(RulesError, match="Volcano"):
        SCENES.with_head(toy_head(("Indoors", "Volcano")))
    # GIVEN a head without Sunset, which scenes.yml says only the head provides
    with pytest.raises(RulesError, match="Sunset"):
        SCENES.with_head(toy_head(("Indoors", "Outdoors", "Building", "Market")))


def test_learned_scenes_show_nothing_without_the_head() -> None:
    # GIVEN the rules alone (e.g. the classifier is off) THEN Sunset, Market and Building,
    # which only the head provides, have probability 0
    probs = SCENES.score(entry_mass=None, objects={"bed": 0.9}, features={"sky": 1.0})
    assert probs["Sunset"] == probs["Market"] == probs["Building"] == 0.0


def _seashore_mass() -> np.ndarray:
    from labelkit.labelers.taxonomy import load_taxonomy

    index = {c["names"][0]: c["index"] for c in load_taxonomy()["classes"]}
    p = np.full(1000, 0.1 / 999, dtype=np.float32)
    p[index["seashore"]] = 0.9
    mass: np.ndarray = RULES.mass(p[None])[0]
    return mass


# --- the committed file -------------------------------------------------------------------


def test_the_committed_head_loads_with_the_declared_classes() -> None:
    # GIVEN the head file that ships in the package
    head = SceneHead(HEAD_PATH)
    head.load()
    # THEN it is small, of this format, and every class is a scene of scenes.yml
    assert HEAD_PATH.stat().st_size < 200_000
    with np.load(HEAD_PATH, allow_pickle=False) as data:
        assert int(data["format"]) == HEAD_FORMAT
        assert data["weight"].dtype == np.float16 and data["weight"].shape == (1280, len(head.classes))
    names = {s.name for s in SCENES.scenes}
    assert set(head.classes) <= names
    assert {"Indoors", "Outdoors", "Sky", "Beach", "City", "Street", "Kitchen", "Night"} <= set(head.classes)
    assert ((head.thresholds > 0) & (head.thresholds <= 1)).all()


def test_the_head_file_s_hash_is_in_the_scene_version() -> None:
    # GIVEN the committed head THEN its SHA-256 (first 8 hex digits) names it in the version
    # the labeller's model version is made from
    digest = hashlib.sha256(HEAD_PATH.read_bytes()).hexdigest()[:8]
    assert digest in load_scenes_with_head(RULES).version


def test_a_changed_head_file_changes_the_version(tmp_path: Path) -> None:
    # GIVEN a copy of the head with one weight changed
    copy = tmp_path / "scene_head.npz"
    with np.load(HEAD_PATH, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["bias"] = arrays["bias"] + np.float32(0.5)
    np.savez_compressed(copy, **arrays)
    # THEN the fused scenes' version differs from the committed head's
    assert SCENES.with_head(SceneHead(copy)).version != load_scenes_with_head(RULES).version


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "missing"), (b"not a zip file", "Cannot load")],
)
def test_a_missing_or_broken_head_file_says_what_is_wrong(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "scene_head.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LabelerError, match=message):
        SceneHead(path).load()


def test_a_head_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scene_head.npz"
    with np.load(HEAD_PATH, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["format"] = np.array(HEAD_FORMAT + 1)
    np.savez_compressed(path, **arrays)
    with pytest.raises(LabelerError, match="format"):
        SceneHead(path).load()
