"""Face detection: YuNet (libfacedetection) through ``yuface``, one box per face.

Why this one (checked on this machine, see docs/DESIGN "The local model"): ``yuface==2023.5.1``
is BSD-3 and has the model compiled into its wheel, so nothing is downloaded or converted;
it found 5/5 faces on a group photo. Two facts shape the code:

* its score is 0-100; at 50 (the package default) it finds "faces" on a dog and on a star
  field, so only faces scoring at least ``min_score`` (default 0.8) are kept;
* it is made for images of at most 960 px a side (it warns above that) and its time grows
  with the pixel count (measured, one thread: ~9 ms at 320 px, ~28 ms at 480 px, ~46 ms at
  640 px), so images are downscaled to ``max_side`` (default 640, at most 960) first.

libfacedetection parallelises with OpenMP (its own bundled libgomp). OpenMP's idle threads
spin, which on a shared 2-core machine made it 4x slower in CPU time than with one thread;
so the number of OpenMP threads is set (``omp_set_num_threads``, per calling thread, as
OpenMP's setting is per thread) before every call.

With the object detector on, the labeller looks for faces only around the detected persons
(:attr:`FaceInput.region`, the union of their boxes plus a margin), and not at all in photos
without one: a face is only labelled where a person is, and a photo of a kitchen costs no
face search.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from labelkit.domain import BoundingBox
from labelkit.labelers.model import LocalModel

logger = logging.getLogger(__name__)

MIN_SCORE = 0.8
MAX_SIDE = 640
#: yuface's own limit ("may cause detection performance degradation" above).
YUFACE_MAX_SIDE = 960


@dataclass(frozen=True, slots=True)
class Face:
    score: float  # 0-1
    box: BoundingBox


@dataclass(frozen=True, slots=True)
class FaceInput:
    bgr: np.ndarray  # (h, w, 3) uint8, C-contiguous, at most max_side a side
    #: Look only here (fractions of the image), e.g. around the detected persons; None: everywhere.
    region: BoundingBox | None = None


@dataclass(frozen=True, slots=True)
class _Crop:
    bgr: np.ndarray
    x0: int
    y0: int
    width: int  # of the whole prepared image
    height: int


@lru_cache(maxsize=1)
def _omp_set_num_threads() -> Any:
    """``omp_set_num_threads`` of the libgomp bundled with yuface (None if not found)."""
    found = importlib.util.find_spec("yuface")
    if found is None or not found.submodule_search_locations:
        return None
    root = Path(next(iter(found.submodule_search_locations))).parent
    for path in sorted(glob.glob(str(root / "yuface.libs" / "libgomp*.so*"))):
        try:
            return ctypes.CDLL(path).omp_set_num_threads
        except (OSError, AttributeError):
            continue
    return None


class FaceDetector(LocalModel[FaceInput, list[Face]]):
    name = "faces"

    def __init__(self, threads: int = 1, *, min_score: float = MIN_SCORE, max_side: int = MAX_SIDE) -> None:
        super().__init__(threads=threads)
        if not 0 < min_score <= 1:
            raise ValueError("min_score must be in (0, 1]")
        self.min_score = min_score
        self.max_side = max(32, min(int(max_side), YUFACE_MAX_SIDE))
        self._detect: Any = None

    @property
    def model_version(self) -> str:
        return f"yunet-{int(self.min_score * 100)}-{self.max_side}"

    def files(self) -> list[Path]:
        return []  # compiled into the yuface wheel

    def how_to_fix(self) -> str:
        return "Install the face detector with `make venv` (requirements.txt: yuface)."

    def _load(self) -> None:
        from yuface import c_detect  # the raw call: the package's wrapper only filters and warns

        # One call now, under the load lock. Its first call initialises pybind11's numpy bridge
        # (a C++ function-local static that imports numpy while holding the GIL): two worker
        # threads making that first call at once deadlocked, one waiting on the static's guard
        # with the GIL, the other waiting for the GIL inside the guard (seen beside two CPU hogs:
        # both photos stuck in "labelling", py-spy showing __cxa_guard_acquire).
        set_threads = _omp_set_num_threads()
        if set_threads is not None:
            set_threads(1)
        c_detect(np.zeros((32, 32, 3), dtype=np.uint8))
        self._detect = c_detect

    def prepare(self, rgb: Image.Image) -> FaceInput:
        scale = self.max_side / max(rgb.size)
        if scale < 1:
            size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        arr = np.asarray(rgb, dtype=np.uint8)
        return FaceInput(bgr=np.ascontiguousarray(arr[..., ::-1]))

    def preprocess(self, prepared: Sequence[FaceInput]) -> list[_Crop]:
        crops = []
        for item in prepared:
            h, w = item.bgr.shape[:2]
            x0, y0, x1, y1 = 0, 0, w, h
            if item.region is not None:
                r = item.region
                x0, y0 = int(r.left * w), int(r.top * h)
                x1 = max(x0 + 1, min(w, int(np.ceil((r.left + r.width) * w))))
                y1 = max(y0 + 1, min(h, int(np.ceil((r.top + r.height) * h))))
            crops.append(_Crop(np.ascontiguousarray(item.bgr[y0:y1, x0:x1]), x0, y0, w, h))
        return crops

    def infer(self, batch: list[_Crop]) -> list[np.ndarray]:
        set_threads = _omp_set_num_threads()
        if set_threads is not None:
            set_threads(self.threads)
        return [np.asarray(self._detect(crop.bgr)) for crop in batch]

    def postprocess(self, raw: list[np.ndarray], prepared: Sequence[FaceInput]) -> list[list[Face]]:
        out = []
        for result, crop in zip(raw, self.preprocess(prepared), strict=True):
            faces = []
            for row in result.reshape(-1, result.shape[-1] if result.ndim == 2 else 1):
                if row.size < 5:
                    continue
                score = float(row[0]) / 100.0
                if score < self.min_score:
                    continue
                x, y = float(row[1]) + crop.x0, float(row[2]) + crop.y0
                box = _box(x, y, float(row[3]), float(row[4]), crop.width, crop.height)
                if box is not None:
                    faces.append(Face(score=round(score, 3), box=box))
            faces.sort(key=lambda f: -f.score)
            out.append(faces)
        return out


def _box(x: float, y: float, bw: float, bh: float, w: int, h: int) -> BoundingBox | None:
    """Pixel box -> fractions of the image, clipped to it (faces at the edge overshoot)."""
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(w), x + bw), min(float(h), y + bh)
    if x1 <= x0 or y1 <= y0:
        return None
    return BoundingBox(left=x0 / w, top=y0 / h, width=(x1 - x0) / w, height=(y1 - y0) / h)
