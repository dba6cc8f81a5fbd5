"""People's pure parts: re-clustering groups close descriptors, a face crop is a square JPEG of
the face, and the image page's boxes name a person's face in place of the detector's "Face"."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dashboard.image_view import with_people
from labelkit import people, render
from labelkit.domain import FACE_LABEL, BoundingBox, Instance, Label, LabelResult
from labelkit.features import FeatureInput
from labelkit.features.faces import FaceExtractor
from labelkit.labelers.face_id import FaceCrops, FaceEncoder


def _blob(seed: int, n: int, spread: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(128)
    centre /= np.linalg.norm(centre)
    noise = rng.standard_normal((n, 128))
    noise *= spread / np.linalg.norm(noise, axis=1, keepdims=True)
    return centre + noise


def test_recluster_groups_each_person_and_keeps_a_stranger_apart() -> None:
    x = np.vstack([_blob(1, 5), _blob(2, 4), _blob(3, 1)])
    groups = people.cluster(x)
    assert len(set(groups[:5])) == 1 and len(set(groups[5:9])) == 1
    assert len({groups[0], groups[5], groups[9]}) == 3
    assert people.cluster(np.zeros((0, 128))) == [] and people.cluster(x[:1]) == [0]


def test_a_face_crop_is_a_square_around_the_face() -> None:
    photo = np.zeros((400, 600, 3), dtype=np.uint8)
    photo[100:200, 300:400] = (250, 10, 10)  # the "face"
    out = io.BytesIO()
    Image.fromarray(photo).save(out, format="JPEG", quality=95)
    crop = render.face_crop(out.getvalue(), (0.5, 0.25, 1 / 6, 0.25), side=120)
    with Image.open(io.BytesIO(crop)) as im:
        assert im.size == (120, 120)
        centre = np.asarray(im.convert("RGB"))[60, 60]
        corner = np.asarray(im.convert("RGB"))[2, 2]
    assert centre[0] > 200 and centre[1] < 60  # the face in the middle
    assert corner.sum() < 60  # with a margin of the photo around it


def test_a_named_face_replaces_the_detectors_face_box_only() -> None:
    face = render.Box(left=0.3, top=0.1, width=0.2, height=0.2, caption="Face")
    elsewhere = render.Box(left=0.7, top=0.6, width=0.1, height=0.1, caption="Face")
    dog = render.Box(left=0.3, top=0.1, width=0.2, height=0.2, caption="Dog")
    named = [(BoundingBox(left=0.31, top=0.1, width=0.2, height=0.21), "Grandma")]
    shown = with_people([face, elsewhere, dog], named)
    assert [b.caption for b in shown] == ["Face", "Dog", "Grandma"]
    assert shown[0] == elsewhere


class _Encoder(FaceEncoder):
    """The descriptor's interface without its model: every face described by its box's left."""

    def files(self) -> list[Path]:
        return []

    def _load(self) -> None:
        pass

    def preprocess(self, prepared: Sequence[FaceCrops]) -> list[Any]:
        return [rect for crops in prepared for rect in crops.rects]

    def infer(self, batch: list[Any]) -> np.ndarray:
        return np.array([[float(r[0])] * 128 for r in batch], dtype=np.float32).reshape(-1, 128)


def test_faces_too_small_to_tell_apart_are_skipped_and_counted() -> None:
    big = Instance(box=BoundingBox(left=0.1, top=0.1, width=0.3, height=0.4), confidence=99)
    small = Instance(box=BoundingBox(left=0.7, top=0.7, width=0.05, height=0.05), confidence=90)
    result = LabelResult(
        labels=[Label(name=FACE_LABEL, confidence=99, instances=[small, big])], model_version="t"
    )
    photo = Image.new("RGB", (400, 300))
    extractor = FaceExtractor(_Encoder(), lambda data, side: photo)
    features = extractor.extract(FeatureInput(b"jpeg", results=[result]))
    # The 120 x 120 px face is described, the 20 x 15 px one skipped and counted
    assert features.faces is not None and len(features.faces) == 1
    assert features.faces[0].box == big.box and features.faces_skipped == 1
    assert np.frombuffer(features.faces[0].descriptor, dtype="<f4")[0] == 40.0  # its left, 0.1 x 400 px
    # A photo without a face costs no decode and stores none
    none = extractor.extract(FeatureInput(b"jpeg", results=[LabelResult(labels=[], model_version="t")]))
    assert none.faces == () and none.faces_skipped == 0
