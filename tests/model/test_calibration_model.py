"""Calibrated confidence in the fusion and in the real labeller (issue 26 item 2): a class the
detector contradicts falls below the shown threshold with the parents that only echoed it, the
safe family name stays, and what the models agree on stays confident."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelkit.domain import Label
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.calibration import load_calibration
from labelkit.labelers.fusion import fuse
from labelkit.labelers.local import LocalLabeler
from tests.model.test_fusion import ALL, FUSION, RULES, classifier, det

pytestmark = pytest.mark.model

CALIBRATION = load_calibration()


def _fused(calibrated: bool, **kwargs: object) -> dict[str, float]:
    labels = fuse(FUSION, RULES, ALL, calibration=CALIBRATION if calibrated else None, **kwargs)  # type: ignore[arg-type]
    return {lab.name: lab.confidence for lab in labels}


def test_a_cat_the_detector_saw_as_a_dog_is_not_shown_and_takes_feline_with_it() -> None:
    inputs = {"classifier": classifier(Egyptian_cat=0.8), "detections": [det("dog", 0.8)]}
    # GIVEN the classifier sure of a cat where the detector boxed a dog: raw, both are shown
    raw = _fused(False, **inputs)
    assert raw["Cat"] >= 80 and raw["Feline"] >= 80 and raw["Dog"] >= 50
    # WHEN calibrated THEN the cat and its echo fall below 50, the dog and Animal are sure
    cal = _fused(True, **inputs)
    assert cal["Cat"] < 50 and cal["Feline"] < 50
    assert cal["Dog"] >= 90 and cal["Animal"] >= cal["Dog"]


def test_the_safe_parent_stays_when_only_the_specific_name_is_unsure() -> None:
    # GIVEN a person boxed and the classifier half sure of a cat nobody boxed
    cal = _fused(True, classifier=classifier(Egyptian_cat=0.5), detections=[det("person", 0.9)])
    assert cal["Cat"] < 50
    assert cal["Animal"] >= 50  # "an animal" is still what the classifier's evidence says


def test_a_leaf_under_a_boxed_class_is_never_raised() -> None:
    # GIVEN a dog boxed and a breed the classifier barely believes
    raw = _fused(False, classifier=classifier(golden_retriever=0.05), detections=[det("dog", 0.8)])
    cal = _fused(True, classifier=classifier(golden_retriever=0.05), detections=[det("dog", 0.8)])
    assert cal["Golden Retriever"] <= raw["Golden Retriever"] < 50


def png_of(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _labels(labeler: LocalLabeler, data: bytes) -> dict[str, Label]:
    return {lab.name: lab for lab in labeler.label(ImageInput(data), LabelOptions()).labels}


def test_the_real_labeller_is_calibrated_by_default(full_model_dir: Path) -> None:
    import skimage.data

    models = ("classifier", "detector", "faces")
    calibrated = LocalLabeler(model_dir=full_model_dir, precision="int8", models=models)
    raw = LocalLabeler(model_dir=full_model_dir, precision="int8", models=models, calibrate=False)
    assert calibrated.calibration is not None and raw.calibration is None
    assert calibrated.model_version != raw.model_version  # relabelling picks it up
    # the cat and the astronaut keep their confident subject
    cat = _labels(calibrated, png_of(skimage.data.chelsea()))
    assert cat["Cat"].confidence >= 90
    person = _labels(calibrated, png_of(skimage.data.astronaut()))
    assert person["Person"].confidence >= 90
