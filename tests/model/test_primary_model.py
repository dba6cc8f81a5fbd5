"""The headline label with every real model, on photos that ship in packages (issue 26's
"the primary label of the astronaut photo is Person")."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from labelkit.label import json_line
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.local import LocalLabeler
from labelkit.primary import primary_of_labels

pytestmark = pytest.mark.model


def _jpeg(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(out, format="JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def labeler(full_model_dir: Path) -> LocalLabeler:
    return LocalLabeler(model_dir=full_model_dir, precision="int8")


@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        ("astronaut", "Person"),  # a portrait: the person, not the computer mouse or a scene
        ("chelsea", "Cat"),
        ("coffee", "Espresso"),  # the drink, not its cup
        ("page", "Document"),  # a page of print: the document (the scene head says Outdoors)
    ],
)
def test_the_headline_of_a_package_photo(labeler: LocalLabeler, photo: str, expected: str) -> None:
    data = _jpeg(getattr(skimage.data, photo)())
    result = labeler.label(ImageInput(data), LabelOptions())
    assert primary_of_labels(result.labels) == expected, [(lab.name, lab.confidence) for lab in result.labels]
    # AND `labelkit label --json` carries it beside the Rekognition-shaped responses
    line = json.loads(json.dumps(json_line(photo, result)))
    assert line["primary"] == expected
    assert set(line) == {"image", "response", "text", "moderation", "primary"}
