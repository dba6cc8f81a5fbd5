"""A crowd gets most of its person boxes and "Crowd" (issue 26 item 4), with the real detector:
36 copies of scikit-image's astronaut in a 6 x 6 grid, 200 px each."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.local import LocalLabeler

pytestmark = pytest.mark.model

MODELS = ("classifier", "detector", "faces")


def _crowd(n: int = 6, cell: int = 200) -> bytes:
    one = Image.fromarray(skimage.data.astronaut()).resize((cell, cell))
    grid = Image.new("RGB", (n * cell, n * cell))
    for r in range(n):
        for c in range(n):
            grid.paste(one, (c * cell, r * cell))
    out = io.BytesIO()
    grid.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _persons(labeler: LocalLabeler, data: bytes) -> tuple[int, set[str]]:
    labels = labeler.label(ImageInput(data), LabelOptions()).labels
    person = next((lab for lab in labels if lab.name == "Person"), None)
    return (len(person.instances) if person else 0), {lab.name for lab in labels}


def test_a_crowd_gets_most_of_its_person_boxes_and_crowd(full_model_dir: Path) -> None:
    crowd = _crowd()
    one_pass = LocalLabeler(model_dir=full_model_dir, precision="int8", models=MODELS, detect_tiles=False)
    tiled = LocalLabeler(model_dir=full_model_dir, precision="int8", models=MODELS)
    # GIVEN the whole photo squashed to 300 x 300: each person is 50 px, and few are found
    before, _ = _persons(one_pass, crowd)
    # WHEN the tiled pass runs THEN most of the 36 are boxed, and the photo is a Crowd
    after, names = _persons(tiled, crowd)
    assert after >= 27 and after > before + 10, (before, after)
    assert after <= 36  # no person counted twice where tiles overlap
    assert "Crowd" in names
    assert "+tile" in tiled.model_version and "+tile" not in one_pass.model_version


def test_a_portrait_runs_one_pass(full_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN one person filling the photo, and the detector's calls counted
    tiled = LocalLabeler(model_dir=full_model_dir, precision="int8", models=MODELS)
    assert tiled.detector is not None
    batches: list[int] = []
    predict = tiled.detector.predict

    def counted(inputs: list) -> list:  # type: ignore[type-arg]
        batches.append(len(inputs))
        return predict(inputs)

    monkeypatch.setattr(tiled.detector, "predict", counted)
    out = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(out, format="JPEG", quality=90)
    # WHEN it is labelled THEN the detector ran once, on the whole photo (no tiles)
    tiled.label(ImageInput(out.getvalue()), LabelOptions())
    assert batches == [1]
    # AND the crowd makes it run twice: the photo, then its four tiles
    batches.clear()
    tiled.label(ImageInput(_crowd()), LabelOptions())
    assert batches == [1, 4]
