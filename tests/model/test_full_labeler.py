"""The full local labeller (classifier + detector + faces + scenes) on photos that ship in packages.

Real models, no network. The fixture converts the detector if ``make model`` has not
(minutes the first time: it builds the conversion venv).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from labelkit.domain import BoundingBox, LabelResult
from labelkit.errors import IntakeError
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.detect import Detector, coco_labels, iou
from labelkit.labelers.local import LocalLabeler

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]


def _jpeg(arr: np.ndarray, quality: int = 92) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _no_content() -> np.ndarray:
    """A generated 'photo' with nothing in it: a smooth gradient with a little noise."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:360, 0:480]
    base = np.stack([xx / 480 * 120 + 60, yy / 360 * 80 + 90, np.full_like(xx, 140.0)], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def labeler(full_model_dir: Path) -> LocalLabeler:
    return LocalLabeler(model_dir=full_model_dir, precision="int8")


@pytest.fixture(scope="module")
def results(labeler: LocalLabeler) -> dict[str, LabelResult]:
    photos = {
        "astronaut": _jpeg(skimage.data.astronaut()),
        "coffee": _jpeg(skimage.data.coffee()),
        "chelsea": _jpeg(skimage.data.chelsea()),
        "empty": _jpeg(_no_content()),
    }
    options = LabelOptions()
    return {name: labeler.label(ImageInput(data), options) for name, data in photos.items()}


def _by_name(result: LabelResult) -> dict[str, object]:
    return {lab.name: lab for lab in result.labels}


def test_astronaut_is_a_person_with_a_box_and_a_face(results: dict[str, LabelResult]) -> None:
    labels = {lab.name: lab for lab in results["astronaut"].labels}
    person, face = labels["Person"], labels["Face"]
    assert person.confidence >= 55 and face.confidence >= 55
    # one box around her: she fills the left two thirds, top to bottom
    assert len(person.instances) == 1
    box = person.instances[0].box
    assert box.left < 0.15 and box.width > 0.5 and box.height > 0.8
    # one face, inside the person's box, where her face is (upper middle)
    assert len(face.instances) == 1
    f = face.instances[0].box
    assert 0.25 < f.left + f.width / 2 < 0.6 and 0.1 < f.top + f.height / 2 < 0.4
    assert box.left <= f.left and f.left + f.width <= box.left + box.width + 0.01


def test_coffee_is_a_cup_and_no_person(results: dict[str, LabelResult]) -> None:
    labels = {lab.name: lab for lab in results["coffee"].labels}
    assert labels["Cup"].confidence >= 55 and labels["Cup"].instances
    assert "Tableware" in labels["Cup"].parents
    assert not {"Person", "Face"} & set(labels)
    assert results["coffee"].labels[0].name == "Cup"  # the specific label leads


def test_chelsea_is_a_cat_and_no_person(results: dict[str, LabelResult]) -> None:
    labels = {lab.name: lab for lab in results["chelsea"].labels}
    assert labels["Cat"].confidence >= 80 and len(labels["Cat"].instances) == 1
    assert "Animal" in labels["Cat"].parents
    assert results["chelsea"].labels[0].name == "Cat"
    assert not {"Person", "People", "Face"} & set(labels)


def test_a_photo_with_no_content_gets_no_person(results: dict[str, LabelResult]) -> None:
    names = {lab.name for lab in results["empty"].labels if lab.confidence >= 50}
    assert not names & {"Person", "People", "Group", "Crowd", "Face"}


def test_boxes_inside_the_image(results: dict[str, LabelResult]) -> None:
    boxes = [i.box for r in results.values() for lab in r.labels for i in lab.instances]
    assert len(boxes) >= 3
    for b in boxes:
        assert 0 <= b.left and 0 <= b.top and b.width > 0 and b.height > 0
        assert b.left + b.width <= 1 + 1e-6 and b.top + b.height <= 1 + 1e-6


@pytest.mark.parametrize(
    "data", [b"", b"not an image", b"<html><body>hi</body></html>", b"\xff\xd8\xff" + b"\0" * 50]
)
def test_bad_input_is_still_refused(labeler: LocalLabeler, data: bytes) -> None:
    with pytest.raises(IntakeError):
        labeler.label(ImageInput(data), LabelOptions())


def test_modes_choose_the_models(full_model_dir: Path) -> None:
    data = _jpeg(skimage.data.astronaut())
    versions = set()
    for models in (
        ("classifier",),
        ("classifier", "detector"),
        ("detector",),
        ("classifier", "detector", "faces"),
    ):
        lab = LocalLabeler(model_dir=full_model_dir, precision="int8", models=models)
        names = {label.name for label in lab.label(ImageInput(data), LabelOptions()).labels}
        assert ("Face" in names) == ("faces" in models)
        assert ("Person" in names) == ("detector" in models)
        assert lab.model_version.startswith("efficientnet-") and len(lab.model_version) <= 64
        versions.add(lab.model_version)
    assert len(versions) == 4


def test_onnx_detector_matches_opencv_on_the_original_graph(full_model_dir: Path) -> None:
    # GIVEN the original TensorFlow graph run by OpenCV's DNN module, and the converted
    # ONNX network with this module's own decoding and NMS (fp32)
    import cv2

    from labelkit.labelers.detect_build import graph_path, graph_text_path

    net = cv2.dnn.readNetFromTensorflow(str(graph_path()), str(graph_text_path()))
    detector = Detector(full_model_dir, precision="fp32")
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    compared = 0
    for rgb in photos:
        square = detector.prepare(Image.fromarray(rgb))  # both get the same 300 x 300 pixels
        net.setInput(cv2.dnn.blobFromImage(square, size=(300, 300), swapRB=False))
        want = [r for r in net.forward()[0, 0] if r[2] >= 0.5]
        got = [d for d in detector.predict([square])[0] if d.score >= 0.45]
        # THEN every confident OpenCV detection is found, same class, same place, same score
        for row in want:
            name = coco_labels()[int(row[1])]
            x0, y0, x1, y1 = (float(np.clip(v, 0, 1)) for v in row[3:7])
            ref = BoundingBox(left=x0, top=y0, width=x1 - x0, height=y1 - y0)
            match = [d for d in got if d.name == name and iou(d.box, ref) > 0.9]
            assert match, (name, float(row[2]))
            assert abs(match[0].score - float(row[2])) < 0.02
            compared += 1
    assert compared >= 4


def test_cli_prints_person_and_face_with_boxes(full_model_dir: Path, tmp_path: Path) -> None:
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    env = {**os.environ, "LABELKIT_MODEL_DIR": str(full_model_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "labelkit.label", str(photo)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
        env=env,
    ).stdout
    lines = {line.split()[0]: line for line in out.splitlines()[3:] if line.strip()}
    assert "1: " in lines["Person"] and "1: " in lines["Face"]


def test_cli_json_lines_are_detect_labels_responses(full_model_dir: Path, tmp_path: Path) -> None:
    import json

    import botocore.session
    from botocore.validate import ParamValidator

    # GIVEN two photos
    photos = []
    for name, rgb in (("astronaut.png", skimage.data.astronaut()), ("coffee.jpg", skimage.data.coffee())):
        photos.append(tmp_path / name)
        Image.fromarray(rgb).save(photos[-1])
    env = {**os.environ, "LABELKIT_MODEL_DIR": str(full_model_dir)}
    # WHEN the CLI labels them with --json
    out = subprocess.run(
        [sys.executable, "-m", "labelkit.label", "--json", *map(str, photos)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
        cwd=ROOT,
        env=env,
    ).stdout
    # THEN each line is {"image", "response", "text", "moderation", "primary"} and each response passes
    # botocore's DetectLabels model (text and moderation: tests/model/test_text_and_moderation.py)
    shape = (
        botocore.session.get_session()
        .get_service_model("rekognition")
        .operation_model("DetectLabels")
        .output_shape
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in photos]
    for line in lines:
        assert set(line) == {"image", "response", "text", "moderation", "primary"}
        report = ParamValidator().validate(line["response"], shape)
        assert not report.has_errors(), report.generate_report()
        assert line["response"]["Labels"] and line["response"]["LabelModelVersion"]
    assert "Person" in {lab["Name"] for lab in lines[0]["response"]["Labels"]}
