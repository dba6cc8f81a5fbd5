"""The local labeller: several local models behind one ``Labeler``, fused into Rekognition-shaped labels.

Each model is a module with one job, all following :class:`labelkit.labelers.model.LocalModel`:

* :mod:`~labelkit.labelers.classify`  EfficientNet-Lite2 (ImageNet): fine-grained names,
  ImageNet's place classes, groups rolled up a WordNet hierarchy (``rules.yml``);
* :mod:`~labelkit.labelers.detect`    SSD MobileNet v2 (COCO, 80 classes): one box per object;
* :mod:`~labelkit.labelers.faces`     YuNet: one box per face;
* :mod:`~labelkit.labelers.scenes`    scenes: a learned head over the classifier's pooled
  features (``scene_head.npz``) fused with rules (``scenes.yml``) over the outputs above
  and a few image features;
* :mod:`~labelkit.labelers.fusion`    everything into one label list (``objects.yml``);
* :mod:`~labelkit.labelers.ocr`       text in the photo (DetectText-shaped), and Text /
  Document / Screenshot from it, merged into the labels;
* :mod:`~labelkit.labelers.moderation` the Explicit flag (DetectModerationLabels-shaped).

Which models run is a setting (``LABELKIT_LOCAL_MODELS``, default all five). With the
classifier alone the output is exactly the earlier labeller's (same model version), the
fastest mode. The time each model took in a thread's last batch is :meth:`LocalLabeler.timings`.

Decoding goes through :func:`labelkit.images.decode_rgb` once per image with ``min_side``
= the largest square input (300 px with the detector), so a 12 MP JPEG is decoded by
libjpeg at 1/8 scale (``draft``) and never materialised at full size. Every model's
``prepare`` (its resize) runs on that one decoded copy; in a batch, images are decoded
and prepared on a small thread pool (Pillow releases the GIL while decoding and
resizing), then each model runs once over the batch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from labelkit.domain import BoundingBox, ImageProperties, LabelResult, ModerationLabel, TextDetection
from labelkit.errors import LabelerError
from labelkit.images import decode_rgb
from labelkit.labelers import tiles
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.calibration import ConfidenceMap, load_calibration
from labelkit.labelers.catalog import Precision
from labelkit.labelers.classify import Classifier, ClassifierOutput
from labelkit.labelers.detect import Detection, Detector
from labelkit.labelers.faces import MAX_SIDE, MIN_SCORE, Face, FaceDetector, FaceInput
from labelkit.labelers.fusion import classifier_labels, fuse, load_fusion
from labelkit.labelers.moderation import EXPLICIT_THRESHOLD, ModerationModel
from labelkit.labelers.ocr import (
    DETECT_SIDE,
    TextInput,
    TextOutput,
    TextReader,
    detections,
    merge_labels,
    without_sides_on_pages,
)
from labelkit.labelers.ocr import text_labels as labels_from_text
from labelkit.labelers.properties import image_properties
from labelkit.labelers.scenes import load_scenes, load_scenes_with_head, scene_features
from labelkit.labelers.taxonomy import CompiledRules, load_rules

if TYPE_CHECKING:
    from PIL import Image

    from labelkit.settings import Settings

logger = logging.getLogger(__name__)

MODEL_NAMES = ("classifier", "detector", "faces", "text", "moderation")
#: Bump when the way the models' outputs are combined changes (beyond the rules files).
FUSION_FORMAT = 1


#: Persons the face search looks around: any detection of this score (the detector's floor
#: is 0.3), their boxes' union grown by this share of its size on each side.
FACE_PERSON_SCORE = 0.3
FACE_MARGIN = 0.1


def person_region(detections: Sequence[Detection]) -> BoundingBox | None:
    """The union of the person boxes plus a margin, or None without a person."""
    boxes = [d.box for d in detections if d.name == "person" and d.score >= FACE_PERSON_SCORE]
    if not boxes:
        return None
    x0 = min(b.left for b in boxes)
    y0 = min(b.top for b in boxes)
    x1 = max(b.left + b.width for b in boxes)
    y1 = max(b.top + b.height for b in boxes)
    mx, my = FACE_MARGIN * (x1 - x0), FACE_MARGIN * (y1 - y0)
    x0, y0, x1, y1 = max(0.0, x0 - mx), max(0.0, y0 - my), min(1.0, x1 + mx), min(1.0, y1 + my)
    return BoundingBox(left=x0, top=y0, width=x1 - x0, height=y1 - y0)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One decoded image, ready for every enabled model, and its properties."""

    pixels: np.ndarray | None  # classifier input (S, S, 3) uint8
    detector: np.ndarray | None  # detector input (300, 300, 3) uint8
    faces: FaceInput | None
    properties: ImageProperties
    features: dict[str, float]
    text: TextInput | None = None
    moderation: np.ndarray | None = None  # open_nsfw input (224, 224, 3) float32
    #: The photo decoded again with its longer side about N px (the tiled detector pass).
    larger: Callable[[int], Image.Image] | None = None


class LocalLabeler:
    """Labels images with the local models (satisfies ``Labeler``)."""

    def __init__(
        self,
        model: str = "lite2",
        model_dir: Path = Path("data/models"),
        threads: int = 2,
        *,
        max_pixels: int = 50_000_000,
        rules: CompiledRules | None = None,
        precision: Precision = "fp32",
        models: Sequence[str] = MODEL_NAMES,
        face_min_score: float = MIN_SCORE,
        face_max_side: int = MAX_SIDE,
        text_detect_side: int = DETECT_SIDE,
        moderation_threshold: float = EXPLICIT_THRESHOLD,
        detect_tiles: bool = True,
        calibrate: bool = True,
    ) -> None:
        chosen = tuple(dict.fromkeys(models))
        unknown = sorted(set(chosen) - set(MODEL_NAMES))
        if unknown or not chosen:
            raise LabelerError(
                f"unknown local models {unknown or list(models)}; use some of {list(MODEL_NAMES)}",
                permanent=True,
            )
        self.models = chosen
        self.threads = max(1, int(threads))
        self.max_pixels = max_pixels
        self.rules = rules or load_rules()
        # The classifier object is always built (cheap: loading is lazy): its rules drive
        # the fusion and the scenes even when it does not run.
        self.classifier = Classifier(
            model, Path(model_dir), self.threads, rules=self.rules, precision=precision
        )
        self.detector = (
            Detector(Path(model_dir), self.threads, precision=precision) if "detector" in chosen else None
        )
        # The tiled second pass for crowds and small things (labelkit.labelers.tiles).
        self.detect_tiles = bool(detect_tiles) and self.detector is not None
        # One OpenMP thread: libfacedetection gains little from a second one on small
        # images and its waiting threads cost CPU (faces module docstring).
        self.face_detector = (
            FaceDetector(1, min_score=face_min_score, max_side=face_max_side) if "faces" in chosen else None
        )
        self.text_reader = (
            TextReader(self.threads, detect_side=text_detect_side) if "text" in chosen else None
        )
        self.moderator = (
            ModerationModel(self.threads, threshold=moderation_threshold) if "moderation" in chosen else None
        )
        self.fusion = load_fusion(self.rules)
        # Fitted on the full labeller's output (classifier + detector): only with both.
        self.calibration: ConfidenceMap | None = (
            load_calibration() if calibrate and self.detector is not None and "classifier" in chosen else None
        )
        # The learned scene head reads the classifier's pooled features: with the classifier.
        self.scenes = load_scenes_with_head(self.rules) if "classifier" in chosen else load_scenes(self.rules)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # The classifier's pooled features of the images this thread labelled last, with
        # their bytes (compared by identity): the embedding extractor reads them instead of
        # running the classifier a second time (pooled_features).
        self._recent = threading.local()

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
            models=settings.local_model_names,
            text_detect_side=settings.text_detect_side,
            moderation_threshold=settings.moderation_threshold,
            detect_tiles=settings.detect_tiles,
            calibrate=settings.calibrate,
        )

    @property
    def classifier_only(self) -> bool:
        return self.models == ("classifier",)

    @property
    def uses_classifier(self) -> bool:
        return "classifier" in self.models

    @property
    def model_version(self) -> str:
        """Stable per configuration; changes with any model, rules file or the fusion.

        The classifier alone keeps the earlier labeller's version (its output is the same).
        Every version starts with ``efficientnet-`` (the family relabelling replaces).
        """
        base = self.classifier.model_version
        if self.classifier_only:
            return base
        parts = [base, f"fusion{FUSION_FORMAT}", self.fusion.version, self.scenes.version]
        if self.detector is not None:
            parts.append(self.detector.model_version)
            if self.detect_tiles:
                parts.append(f"tiles{tiles.GRID}x{tiles.SHARE}")
        if self.calibration is not None:
            parts.append(self.calibration.version)
        if self.face_detector is not None:
            parts.append(self.face_detector.model_version)
        if self.text_reader is not None:
            parts.append(self.text_reader.model_version)
        if self.moderator is not None:
            parts.append(self.moderator.model_version)
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]
        short = self.classifier.spec.stem + ("-int8" if self.classifier.precision == "int8" else "")
        if not self.uses_classifier:
            short += "-off"
        tags = "".join(
            t
            for t, on in (
                ("+det", self.detector is not None),
                ("+tile", self.detect_tiles),
                ("+face", self.face_detector is not None),
                ("+ocr", self.text_reader is not None),
                ("+mod", self.moderator is not None),
            )
            if on
        )
        return f"{short}{tags}-f{FUSION_FORMAT}.{digest}"

    @property
    def input_size(self) -> int:
        return self.classifier.size

    # --- public API ---------------------------------------------------------------

    def prepare(self, image: ImageInput) -> Prepared:
        """Decode once (reduced-scale for JPEG) and make every enabled model's input;
        ``IntakeError`` if the bytes are not an image."""
        min_side = (
            max(self.classifier.size if self.uses_classifier else 0, 300 if self.detector else 0) or None
        )
        rgb = decode_rgb(image.data, max_pixels=self.max_pixels, min_side=min_side)
        pixels = self.classifier.prepare(rgb) if self.uses_classifier else None
        detector = self.detector.prepare(rgb) if self.detector is not None else None
        faces = self.face_detector.prepare(rgb) if self.face_detector is not None else None
        small = pixels if pixels is not None else detector
        if small is None:  # faces only: properties from a small copy
            small = self.classifier.prepare(rgb)
        text = None
        if self.text_reader is not None:
            # A JPEG decoded at reduced scale (``draft``) has its shorter side under twice the
            # asked one: the reader may then decode a larger copy to read the lines it found.
            reduced = min_side is not None and min(rgb.size) < 2 * min_side
            larger = partial(self._larger, image.data, rgb.size) if reduced else None
            text = self.text_reader.prepare(rgb, larger=larger)
        return Prepared(
            pixels=pixels,
            detector=detector,
            faces=faces,
            properties=image_properties(small),
            features={} if self.classifier_only else scene_features(small),
            text=text,
            moderation=self.moderator.prepare(rgb) if self.moderator is not None else None,
            larger=partial(self._larger, image.data, rgb.size) if self.detect_tiles else None,
        )

    def _larger(self, data: bytes, size: tuple[int, int], side: int) -> Image.Image:
        """The photo decoded again with its longer side about ``side`` (the stored size at most)."""
        min_side = max(1, round(side * min(size) / max(size)))
        return decode_rgb(data, max_pixels=self.max_pixels, min_side=min_side)

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult:
        return self.label_batch([image], options)[0]

    def label_batch(self, images: Sequence[ImageInput], options: LabelOptions) -> list[LabelResult]:
        """Label several images, each model called once for the batch.

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
        results = self.label_prepared(prepared, options)
        pooled: list[np.ndarray | None] = getattr(self._recent, "pooled", [])
        self._recent.images = list(zip((img.data for img in images), pooled, strict=False))
        return results

    def pooled_features(self, data: bytes) -> np.ndarray:
        """The classifier's pooled features (C,) of these bytes: those of the last
        :meth:`label_batch` in this thread when ``data`` is one of its images (the same
        object), otherwise computed (decode + classifier). Taken once: the reference to
        the bytes is dropped."""
        recent: list[tuple[bytes, np.ndarray | None]] = getattr(self._recent, "images", [])
        for i, (seen, vec) in enumerate(recent):
            if seen is data and vec is not None:
                del recent[i]
                return vec
        if not self.uses_classifier:
            raise LabelerError("the local classifier is not enabled", permanent=True)
        rgb = decode_rgb(data, max_pixels=self.max_pixels, min_side=self.classifier.size)
        return self.classifier.predict([self.classifier.prepare(rgb)])[0].pooled

    def _tiled(self, prep: Prepared, whole: list[Detection] | None) -> list[Detection] | None:
        """The whole-photo detections, merged with a tiled pass's when they show a crowd or
        small things (:mod:`labelkit.labelers.tiles`)."""
        if not whole or prep.larger is None or not tiles.needs_tiles(whole):
            return whole
        assert self.detector is not None
        grid = tiles.windows()
        found = self.detector.predict(tiles.crops(prep.larger(tiles.TILE_SOURCE_SIDE), grid))
        return tiles.merge(whole, found, grid)

    def label_prepared(self, prepared: Sequence[Prepared], options: LabelOptions) -> list[LabelResult]:
        """Run every enabled model on already prepared images and fuse the results."""
        if not prepared:
            return []
        n = len(prepared)
        timings: dict[str, float] = {}
        classified: list[ClassifierOutput | None] = [None] * n
        detected: list[list[Detection] | None] = [None] * n
        found_faces: list[list[Face] | None] = [None] * n
        read: list[TextOutput | None] = [None] * n
        scores: list[float | None] = [None] * n
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + (now - clock) * 1e3
            clock = now

        if self.uses_classifier:
            classified = list(self.classifier.predict([p.pixels for p in prepared if p.pixels is not None]))
            lap("classifier")
        self._recent.pooled = [c.pooled if c is not None else None for c in classified]
        if self.detector is not None:
            detected = list(self.detector.predict([p.detector for p in prepared if p.detector is not None]))
            lap("detector")
            if self.detect_tiles:
                detected = [self._tiled(prep, dets) for prep, dets in zip(prepared, detected, strict=True)]
                lap("detector_tiles")
        if self.face_detector is not None:
            found_faces = self._faces(prepared, detected)
            lap("faces")
        if self.text_reader is not None:
            read = list(self.text_reader.predict([p.text for p in prepared if p.text is not None]))
            for out in read:
                for stage, ms in (out.timings_ms if out is not None else {}).items():
                    timings[f"text_{stage}"] = timings.get(f"text_{stage}", 0.0) + ms
            lap("text")
        if self.moderator is not None:
            scores = list(
                self.moderator.predict([p.moderation for p in prepared if p.moderation is not None])
            )
            lap("moderation")

        results = []
        for i, prep in enumerate(prepared):
            cls = classified[i]
            if self.classifier_only:
                assert cls is not None
                labels = classifier_labels(cls, self.rules, options)
            else:
                dets = detected[i]
                objects: dict[str, float] | None = None
                if dets is not None:
                    objects = {}
                    for d in dets:
                        objects[d.name] = max(objects.get(d.name, 0.0), d.score)
                mass = self.rules.mass(cls.probs[None])[0] if cls is not None else None
                probs = self.scenes.score(
                    entry_mass=mass,
                    objects=objects,
                    features=prep.features,
                    pooled=cls.pooled if cls is not None else None,
                )
                labels = fuse(
                    self.fusion,
                    self.rules,
                    options,
                    classifier=cls,
                    detections=dets,
                    faces=found_faces[i],
                    scenes=self.scenes,
                    scene_probs=probs,
                    calibration=self.calibration,
                )
            text: list[TextDetection] | None = None
            found_text = read[i]
            if found_text is not None and prep.text is not None:
                text = detections(found_text)
                height, width = prep.text.bgr.shape[:2]
                extra = labels_from_text(found_text, flat=prep.text.flat, aspect=width / max(1, height))
                if extra:
                    labels = options.apply(without_sides_on_pages(merge_labels(labels, extra)))
            flags: list[ModerationLabel] | None = None
            score = scores[i]
            if score is not None and self.moderator is not None:
                flags = self.moderator.labels(score)
            results.append(
                LabelResult(
                    labels=labels,
                    image_properties=prep.properties,
                    model_version=self.model_version,
                    text=text,
                    moderation=flags,
                    text_model_version=self.text_reader.model_version if self.text_reader else "",
                    moderation_model_version=self.moderator.model_version if self.moderator else "",
                )
            )
        lap("fusion")
        self._recent.timings = timings
        return results

    def timings(self) -> dict[str, float]:
        """Milliseconds each stage took in this thread's last batch (all its images together):
        classifier, detector, faces, text (of it text_detect and, when any line was found,
        text_recognise), moderation, fusion."""
        return dict(getattr(self._recent, "timings", {}))

    def _faces(
        self, prepared: Sequence[Prepared], detected: Sequence[list[Detection] | None]
    ) -> list[list[Face] | None]:
        """Faces, searched around the detected persons only when the detector runs."""
        assert self.face_detector is not None
        inputs: list[FaceInput] = []
        where: list[int] = []
        for i, (prep, dets) in enumerate(zip(prepared, detected, strict=True)):
            if prep.faces is None:
                continue
            if dets is None:
                inputs.append(prep.faces)
            else:
                region = person_region(dets)
                if region is None:
                    continue
                inputs.append(replace(prep.faces, region=region))
            where.append(i)
        out: list[list[Face] | None] = [[] for _ in prepared]
        for i, faces in zip(where, self.face_detector.predict(inputs), strict=True):
            out[i] = faces
        return out

    def infer(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The classifier alone: (B, S, S, 3) uint8 -> probabilities (B, 1000), features (B, C, h, w)."""
        return self.classifier.infer_probs(pixels)
