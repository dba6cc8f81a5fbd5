"""The learned scene head with the real classifier, on photos that ship in packages.

Real models, no network, no data set: the head file is committed
(labelkit/labelers/data/scene_head.npz, card: docs/models/scene-head.md).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image
from sklearn.datasets import load_sample_image

from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.classify import ClassifierOutput
from labelkit.labelers.local import LocalLabeler
from labelkit.labelers.scenes import HEAD_PATH, SceneHead, load_scenes

pytestmark = pytest.mark.model

MODELS = ("classifier", "detector", "faces")
#: Scenes a photo of one thing up close shows none of.
LANDSCAPES = {
    "Sky",
    "Sunset",
    "Mountain",
    "Forest",
    "Field",
    "Sea",
    "Beach",
    "Snow",
    "City",
    "Street",
    "Road",
}


def _jpeg(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(out, format="JPEG", quality=92)
    return out.getvalue()


PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "china": lambda: load_sample_image("china.jpg"),
    "rocket": skimage.data.rocket,
    "coffee": skimage.data.coffee,
    "astronaut": skimage.data.astronaut,
}


@pytest.fixture(scope="module")
def labeler(full_model_dir: Path) -> LocalLabeler:
    return LocalLabeler(model_dir=full_model_dir, precision="int8", models=MODELS)


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {name: _jpeg(make()) for name, make in PHOTOS.items()}


def _head(labeler: LocalLabeler, data: bytes) -> dict[str, float]:
    """The head's own probability per scene (no rules), on the classifier's pooled features."""
    head = labeler.scenes.head
    assert head is not None
    labeler.label(ImageInput(data), LabelOptions())
    pooled = labeler.pooled_features(data)
    return dict(zip(head.classes, head.probabilities(pooled[None])[0].tolist(), strict=True))


def _shown(labeler: LocalLabeler, data: bytes) -> dict[str, float]:
    result = labeler.label(ImageInput(data), LabelOptions())
    return {lab.name: lab.confidence for lab in result.labels}


def _above(probs: dict[str, float], names: Sequence[str], head: SceneHead) -> bool:
    threshold = dict(zip(head.classes, head.thresholds.tolist(), strict=True))
    return all(probs[n] >= threshold[n] for n in names)


def test_china_is_outdoors_with_sky(labeler: LocalLabeler, photos: dict[str, bytes]) -> None:
    # GIVEN scikit-learn's china.jpg (a temple roof under a blue sky)
    # WHEN labelled THEN Outdoors and Sky are shown (confidence >= 55)
    labels = _shown(labeler, photos["china"])
    assert labels.get("Outdoors", 0) >= 55 and labels.get("Sky", 0) >= 55
    # AND the head itself is sure it is outdoors, and of the buildings
    head = labeler.scenes.head
    assert head is not None
    assert _above(_head(labeler, photos["china"]), ["Outdoors", "Building"], head)


def test_the_rocket_on_its_pad_is_outdoors(labeler: LocalLabeler, photos: dict[str, bytes]) -> None:
    # GIVEN scikit-image's rocket at dusk on the launch pad THEN the head says Outdoors and the
    # label is shown (the rules alone showed no scene at all here)
    labels = _shown(labeler, photos["rocket"])
    assert labels.get("Outdoors", 0) >= 55
    head = labeler.scenes.head
    assert head is not None
    assert _above(_head(labeler, photos["rocket"]), ["Outdoors"], head)


@pytest.mark.parametrize("name", ["coffee", "astronaut"])
def test_a_close_up_gets_no_landscape_scene(
    labeler: LocalLabeler, photos: dict[str, bytes], name: str
) -> None:
    # GIVEN a cup of coffee and a portrait (close-ups, no scene in view)
    # WHEN labelled THEN no landscape or street scene is named (the head learnt close-ups)
    labels = _shown(labeler, photos[name])
    named = {n for n, c in labels.items() if c >= 50} & LANDSCAPES
    assert not named, named
    probs = _head(labeler, photos[name])
    assert max(probs[n] for n in LANDSCAPES) < 0.3


def test_the_head_reads_the_features_the_classifier_already_computed(
    labeler: LocalLabeler, photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a count of the classifier's runs
    calls: list[int] = []
    run = labeler.classifier.predict

    def counted(prepared: Sequence[np.ndarray]) -> list[ClassifierOutput]:
        calls.append(len(prepared))
        return run(prepared)

    monkeypatch.setattr(labeler.classifier, "predict", counted)
    # WHEN one photo is labelled THEN the classifier ran once, and the scenes came with it
    labels = _shown(labeler, photos["china"])
    assert calls == [1]
    assert "Outdoors" in labels


def test_the_labeller_s_version_changes_with_the_head_s_weights(
    labeler: LocalLabeler, full_model_dir: Path, tmp_path: Path
) -> None:
    # GIVEN the labeller's model version with the committed head
    before = labeler.model_version
    # WHEN the head's weights change (a copy with another bias)
    copy = tmp_path / "scene_head.npz"
    with np.load(HEAD_PATH, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["bias"] = arrays["bias"] - np.float32(0.25)
    np.savez_compressed(copy, **arrays)
    other = LocalLabeler(model_dir=full_model_dir, precision="int8", models=MODELS)
    other.scenes = load_scenes(other.rules).with_head(SceneHead(copy))
    # THEN the model version differs (relabelling picks the new head up), in the same family
    assert other.model_version != before
    assert other.model_version.startswith("efficientnet-lite2-int8+det+tile+face-")
