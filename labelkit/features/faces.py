"""Face descriptors of a labelled photo (issue #29): the faces the labeller boxed, described by
:class:`~labelkit.labelers.face_id.FaceEncoder`, for grouping into people.

The labeller's face boxes come from a small copy of the photo; describing a face needs its
pixels, so the photo is decoded again (in the decoder sandbox, under the decode limits) with
its shorter side at least :data:`DECODE_SIDE` px, and each box cut from that. A face whose
box is under :data:`MIN_FACE_PX` px a side there is too small to tell people apart (the ResNet
reads a 150 px chip): it is skipped and counted (``faces_skipped``), not stored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from labelkit.domain import FACE_LABEL, BoundingBox, FaceVector, ImageFeatures
from labelkit.features import FeatureInput
from labelkit.labelers.face_id import FaceEncoder

MIN_FACE_PX = 40
DECODE_SIDE = 1200
#: At most this many faces of one photo are described (the largest): a crowd's 19th face is
#: rarely someone to name, and each costs ~0.15 s.
MAX_FACES = 12


def face_boxes(image: FeatureInput) -> list[BoundingBox]:
    """The face boxes the labellers found, largest first."""
    boxes = [
        inst.box
        for result in image.results
        for label in result.labels
        if label.name == FACE_LABEL
        for inst in label.instances
    ]
    return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)


def pixel_rect(box: BoundingBox, width: int, height: int) -> tuple[int, int, int, int]:
    left, top = round(box.left * width), round(box.top * height)
    right = round((box.left + box.width) * width)
    bottom = round((box.top + box.height) * height)
    return left, top, max(left + 1, right), max(top + 1, bottom)


class FaceExtractor:
    """Describes each face the labeller boxed (a ``FeatureExtractor``)."""

    name = "faces"

    def __init__(self, encoder: FaceEncoder, decode: Callable[[bytes, int], Image.Image]) -> None:
        self.encoder = encoder
        self.decode = decode  # (bytes, min_side) -> RGB, in the decoder sandbox

    @property
    def model_name(self) -> str:
        return f"{self.encoder.model_version}-{MIN_FACE_PX}px"

    def extract(self, image: FeatureInput) -> ImageFeatures:
        boxes = face_boxes(image)
        if not boxes:
            return ImageFeatures(faces=(), face_model=self.model_name)
        rgb = self.decode(image.data, DECODE_SIDE)
        width, height = rgb.size
        kept: list[tuple[BoundingBox, tuple[int, int, int, int]]] = []
        for box in boxes:
            rect = pixel_rect(box, width, height)
            if min(rect[2] - rect[0], rect[3] - rect[1]) >= MIN_FACE_PX and len(kept) < MAX_FACES:
                kept.append((box, rect))
        skipped = len(boxes) - len(kept)
        if not kept:
            return ImageFeatures(faces=(), face_model=self.model_name, faces_skipped=skipped)
        crops = self.encoder.with_rects(self.encoder.prepare(rgb), [rect for _, rect in kept])
        vectors = self.encoder.predict([crops])[0]
        faces = tuple(
            FaceVector(box=box, descriptor=np.asarray(vec, dtype="<f4").tobytes())
            for (box, _), vec in zip(kept, vectors, strict=True)
        )
        return ImageFeatures(faces=faces, face_model=self.model_name, faces_skipped=skipped)


def unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def unpack_many(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 128), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float32)
