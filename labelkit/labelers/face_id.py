"""Face descriptors for grouping faces into people (issue #29): dlib's face recognition ResNet.

Why this one (see ../shared/DESIGN.md): 128-d descriptors, 99.38% on LFW per its authors,
released into the public domain; the weights ship on PyPI in ``face-recognition-models``
(CC0) and the ``dlib-bin`` wheel runs them on the CPU, so nothing is downloaded or built.

* **Alignment** with dlib's 5-point landmark model (``shape_predictor_5_face_landmarks``).
  The 68-point model in the same package is never loaded: its training data (iBUG 300-W)
  restricts commercial use.
* **Boxes** are the face detector's (YuNet, :mod:`labelkit.labelers.faces`): the 5-point
  model places its landmarks inside any tight face box, and the descriptors of the same face
  boxed by YuNet in shifted, flipped, darkened and rotated copies of a photo stay within
  0.2 of each other (``tests/model/test_people_model.py``), where two people are 0.8 apart.
* **Distance**: Euclidean between descriptors; dlib's authors use 0.6 as "same person".
  Labelkit's thresholds are chosen on ``../shared/data/faces`` (``make bench-people``).
* **Cost**: about 0.1-0.2 s per face on one core (the ResNet on a 150x150 chip).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from labelkit.labelers.model import LocalModel

#: Descriptor size of dlib's face recognition ResNet.
DESCRIPTOR_DIM = 128
#: Side of the aligned chip the ResNet reads, and the margin around the landmarks' face.
CHIP_SIZE = 150
CHIP_PADDING = 0.25
PACKAGE = "face_recognition_models"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@dataclass(frozen=True, slots=True)
class FaceCrops:
    """One photo and the faces in it to describe, as pixel rectangles (left, top, right, bottom)."""

    rgb: np.ndarray  # (h, w, 3) uint8, C-contiguous
    rects: tuple[tuple[int, int, int, int], ...] = field(default=())


def models_dir() -> Path | None:
    """Where ``face-recognition-models`` keeps its weights (found without importing it: its
    ``__init__`` imports ``pkg_resources``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceEncoder(LocalModel[FaceCrops, np.ndarray]):
    """Photo + face rectangles -> an (n, 128) float32 matrix of descriptors, one per rectangle."""

    name = "face descriptor"

    def __init__(
        self, threads: int = 1, *, flip: bool = False, padding: float = CHIP_PADDING, jitters: int = 0
    ) -> None:
        """``flip``: each face's descriptor is the mean of its chip's and its mirror's (twice the
        ResNet's work). ``padding``: the chip's margin around the landmarks' face (dlib trained the
        ResNet on 0.25). ``jitters``: dlib's ``num_jitters`` (that many randomly jittered and
        flipped copies averaged, that many times the work)."""
        super().__init__(threads=threads)
        self.flip = flip
        self.padding = float(padding)
        self.jitters = max(0, int(jitters))
        self._landmarks: Any = None
        self._resnet: Any = None

    @property
    def model_version(self) -> str:
        version = "dlib-resnet-v1-5pt"
        if self.padding != CHIP_PADDING:
            version += f"-pad{self.padding:g}"
        if self.flip:
            version += "-flip"
        if self.jitters > 1:
            version += f"-jitter{self.jitters}"
        return version

    def files(self) -> list[Path]:
        root = models_dir()
        if root is None:
            return [Path(PACKAGE) / "models" / RESNET_FILE]  # reported missing
        return [root / LANDMARKS_FILE, root / RESNET_FILE]

    def how_to_fix(self) -> str:
        return "Install it with `make venv` (requirements.txt: dlib-bin, face-recognition-models)."

    def _load(self) -> None:
        import dlib

        landmarks, resnet = self.files()
        self._landmarks = dlib.shape_predictor(str(landmarks))
        self._resnet = dlib.face_recognition_model_v1(str(resnet))
        # One pass now, under the load lock: the first call of a pybind11 function taking a
        # numpy array initialises its numpy bridge (a C++ static), and two threads making that
        # first call at once can deadlock (as yuface's did: labelkit/labelers/faces.py).
        blank = np.zeros((64, 64, 3), dtype=np.uint8)
        shape = self._landmarks(blank, dlib.rectangle(8, 8, 56, 56))
        self._resnet.compute_face_descriptor([dlib.get_face_chip(blank, shape, size=CHIP_SIZE)])

    def prepare(self, rgb: Image.Image) -> FaceCrops:
        return FaceCrops(rgb=np.ascontiguousarray(np.asarray(rgb.convert("RGB"), dtype=np.uint8)))

    def with_rects(self, crops: FaceCrops, rects: Sequence[tuple[int, int, int, int]]) -> FaceCrops:
        return FaceCrops(rgb=crops.rgb, rects=tuple(rects))

    def preprocess(self, prepared: Sequence[FaceCrops]) -> list[Any]:
        """Every face aligned to a chip by its 5 landmarks (dlib images), in order; with ``flip``
        each chip is followed by its mirror."""
        import dlib

        chips: list[Any] = []
        for crops in prepared:
            for left, top, right, bottom in crops.rects:
                shape = self._landmarks(crops.rgb, dlib.rectangle(left, top, right, bottom))
                chip = dlib.get_face_chip(crops.rgb, shape, size=CHIP_SIZE, padding=self.padding)
                chips.append(chip)
                if self.flip:
                    chips.append(np.ascontiguousarray(chip[:, ::-1]))
        return chips

    def infer(self, batch: list[Any]) -> np.ndarray:
        if not batch:
            return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)
        return np.asarray(self._resnet.compute_face_descriptor(batch, self.jitters), dtype=np.float32)

    def postprocess(self, raw: np.ndarray, prepared: Sequence[FaceCrops]) -> list[np.ndarray]:
        if self.flip:  # a chip and its mirror: their mean
            raw = raw.reshape(-1, 2, DESCRIPTOR_DIM).mean(axis=1)
        out: list[np.ndarray] = []
        start = 0
        for crops in prepared:
            out.append(raw[start : start + len(crops.rects)].reshape(-1, DESCRIPTOR_DIM))
            start += len(crops.rects)
        return out
