"""Text in photos (Rekognition's DetectText): PP-OCRv6 small, shipped in ``rapidocr``, in two stages.

Why this one (checked on this machine, 2026-12-07): ``rapidocr==3.10.0`` ships PP-OCRv6 small
as ONNX inside its wheel (detection 9.9 MB, recognition 21.2 MB; Apache-2.0 code and models,
its ``MODEL_LICENSES.md``), and reads every line of scikit-image's ``page`` right, spaces
included (``rapidocr-onnxruntime`` 1.4.4, PP-OCRv4, drops the spaces). Only its files and two
helpers are used; its ``RapidOCR`` pipeline is not: it resolves model paths and downloads
what it does not find, and makes its own onnxruntime sessions (threads spinning). Here the
two ``.onnx`` files are opened from the installed package with the sessions every local
model uses (:func:`labelkit.labelers.model.ort_session`), so nothing can be downloaded and a
missing file is a clear error (``make venv``).

Two stages, so a photo without text costs only the first:

1. **detect** (DB text detector): the photo scaled so its longer side is ``detect_side``
   (480 px by default; small photos are scaled up to it, which finds the small print of a
   scanned page), about 15-60 ms on the busy 2-core machine. Its line boxes are kept as
   fractions of the photo. No box: done, no text.
2. **recognise** (CTC recogniser), only for photos with boxes: each box is cut out of the
   photo, straightened, scaled to 48 px high and read, six lines at a time. When the
   labeller's decoded copy is small (a 12 MP JPEG is decoded at 1/8 scale), a larger copy is
   decoded first (:attr:`TextInput.larger`, longer side up to :data:`RECOGNISE_SIDE`), so
   small text keeps its letters. Its cost grows with the lines' length: about 0.1 s per
   long line of print, so at most :data:`MAX_LINES` lines (the largest) are read.

Boxes covering more than :data:`MAX_LINE_AREA` of the photo are not lines (on 120
development photos the only two were a textured wall and a patterned sofa, read as "LL" and
"90"); lines whose mean character probability is below :data:`MIN_LINE_CONFIDENCE`, or with
fewer than two letters or digits, are dropped (single characters read at 0.4-0.7 on the
package photos' fur and flowers were the only false text there). Each line is split into
words at its spaces; a word's box is the stretch of the line its characters were read from
(the CTC columns), as Rekognition gives a box per word.

Labels from the text (:func:`text_labels`; simple rules, stated as such):

* **Text**: lines read covering at least :data:`TEXT_MIN_AREA` of the photo (text a person
  would notice: a shop sign, a jersey number, not a far-off street sign, which is still read,
  stored and searchable); confidence = the best line's (mean character probability x 100).
* **Document**: at least :data:`DOCUMENT_LINES` lines covering at least
  :data:`DOCUMENT_AREA` of the photo (line boxes' area added up), of at least
  :data:`DOCUMENT_WORDS_PER_LINE` words a line on average: a page, a letter, a menu; not a
  stack of road signs (four lines of one or two words: the only Document of the 354
  development photos before that last condition).
* **Screenshot**: at least :data:`SCREENSHOT_LINES` upright lines (tilt under
  :data:`UPRIGHT_DEGREES`), all small (median height under :data:`SCREENSHOT_LINE_HEIGHT` of
  the photo), on a photo whose pixels are at least :data:`SCREENSHOT_FLAT` exactly equal to
  their neighbours (flat colours: camera noise makes that rare in photos). A clean scan of
  a form can pass for one; a photo of a screen does not (it is not flat).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labelkit.domain import BoundingBox, Label, TextDetection
from labelkit.labelers.model import LocalModel, ort_session

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

PACKAGE = "rapidocr"
DETECTOR_FILE = "PP-OCRv6_det_small.onnx"
RECOGNISER_FILE = "PP-OCRv6_rec_small.onnx"

#: Longer side of the detection stage's input (pixels; a multiple of 32).
DETECT_SIDE = 480
#: Longer side of the copy lines are cut from for recognition, at most.
RECOGNISE_SIDE = 1600
#: The recogniser's input height, and the narrowest batch it is given (PaddleOCR's 48 x 320).
REC_HEIGHT = 48
REC_MIN_WIDTH = 320
REC_BATCH = 6
#: Lines read per photo at most (the largest boxes): Rekognition returns up to 100 words.
MAX_LINES = 50
#: A box covering more of the photo than this is not a line of text.
MAX_LINE_AREA = 0.4
#: A line is kept when its mean character probability reaches this ...
MIN_LINE_CONFIDENCE = 0.7
#: ... and it has at least this many letters or digits.
MIN_LINE_CHARACTERS = 2
#: DB post-processing (PaddleOCR's defaults for PP-OCRv5/v6, as rapidocr's config.yaml).
DB_THRESH = 0.3
DB_BOX_THRESH = 0.5
DB_UNCLIP_RATIO = 1.6

TEXT_MIN_AREA = 0.005
DOCUMENT_LINES = 4
DOCUMENT_AREA = 0.15
DOCUMENT_WORDS_PER_LINE = 2.0
SCREENSHOT_LINES = 3
SCREENSHOT_FLAT = 0.4
SCREENSHOT_LINE_HEIGHT = 0.08
UPRIGHT_DEGREES = 3.0

#: What the labels from text are (names, parents, aliases, categories), as Rekognition names them.
TEXT = "Text"
DOCUMENT = "Document"
SCREENSHOT = "Screenshot"
CATEGORY = "Text and Documents"
CATALOGUE: dict[str, dict[str, tuple[str, ...]]] = {
    TEXT: {"parents": (), "aliases": ("Writing", "Words"), "categories": (CATEGORY,)},
    DOCUMENT: {"parents": (TEXT,), "aliases": ("Page", "Paper"), "categories": (CATEGORY,)},
    SCREENSHOT: {"parents": (TEXT,), "aliases": ("Screen Capture",), "categories": (CATEGORY,)},
}

#: (4, 2) float32 corners, fractions of the photo: top left, top right, bottom right, bottom left.
Quad = np.ndarray
#: A line read: (text, mean character probability, words as (text, probability, start, end)
#: with start and end fractions of the line's length).
Read = tuple[str, float, list[tuple[str, float, float, float]]]


@dataclass(frozen=True, slots=True)
class TextInput:
    """One photo, ready for both stages."""

    detect: np.ndarray  # (3, H, W) float32, BGR normalised to [-1, 1], H and W multiples of 32
    bgr: np.ndarray  # (h, w, 3) uint8: the decoded copy, lines are cut from it
    flat: float  # share of pixels equal to their right and lower neighbours (screenshots)
    #: Decodes a larger copy (RGB) whose longer side is about the given number of pixels, when
    #: the decoded one is smaller than the photo; None: ``bgr`` is all there is.
    larger: Callable[[int], Image.Image] | None = None


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    confidence: float  # 0-1
    quad: Quad


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    confidence: float  # 0-1: mean character probability
    quad: Quad
    words: tuple[Word, ...] = ()


@dataclass(slots=True)
class TextOutput:
    """What was read in one photo, and what it cost."""

    lines: list[Line] = field(default_factory=list)
    boxes: int = 0  # line boxes the detection stage found
    timings_ms: dict[str, float] = field(default_factory=dict)  # "detect", "recognise" (when run)

    @property
    def recognised(self) -> bool:
        return "recognise" in self.timings_ms


def package_dir() -> Path | None:
    """The installed rapidocr package's folder (found without importing it), or None."""
    found = importlib.util.find_spec(PACKAGE)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


class TextReader(LocalModel[TextInput, TextOutput]):
    """PP-OCRv6 small: detect lines, then read only the photos that have some."""

    name = "text"

    def __init__(
        self, threads: int = 2, *, detect_side: int = DETECT_SIDE, max_lines: int = MAX_LINES
    ) -> None:
        super().__init__(threads=threads)
        self.detect_side = max(64, int(round(detect_side / 32)) * 32)
        self.max_lines = max(1, int(max_lines))
        self._detector: Any = None
        self._recogniser: Any = None
        self._postprocess: Any = None
        self._characters: list[str] = []

    @property
    def model_version(self) -> str:
        return f"ppocrv6s-{self.detect_side}"

    # --- 1. locate ------------------------------------------------------------------

    def files(self) -> list[Path]:
        root = package_dir()
        models = (root / "models") if root is not None else Path(PACKAGE) / "models"
        return [models / DETECTOR_FILE, models / RECOGNISER_FILE]

    def how_to_fix(self) -> str:
        return "Install the text reader with `make venv` (requirements.txt: rapidocr)."

    # --- 2. load once ---------------------------------------------------------------

    def _load(self) -> None:
        # The DB post-processing (contours -> rotated boxes, unclipped) is rapidocr's own,
        # pinned with it; nothing of it reads files or the network.
        from rapidocr.ch_ppocr_det.utils import DBPostProcess

        det_path, rec_path = self.files()
        self._detector = ort_session(det_path, self.threads, fixed_shapes=False)
        self._recogniser = ort_session(rec_path, self.threads, fixed_shapes=False)
        meta = self._recogniser.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise RuntimeError(f"{rec_path} has no character list")
        # CTC: index 0 is the blank, the last is the space (PaddleOCR's dictionary layout).
        self._characters = ["", *meta["character"].splitlines(), " "]
        self._postprocess = DBPostProcess(
            thresh=DB_THRESH,
            box_thresh=DB_BOX_THRESH,
            max_candidates=1000,
            unclip_ratio=DB_UNCLIP_RATIO,
            score_mode="fast",
            use_dilation=True,
        )

    # --- 3. predict -----------------------------------------------------------------

    def prepare(self, rgb: Image.Image, larger: Callable[[int], Image.Image] | None = None) -> TextInput:
        """The detection input (longer side ``detect_side``) and the decoded copy as BGR."""
        from PIL import Image as PILImage

        arr = np.asarray(rgb.convert("RGB") if rgb.mode != "RGB" else rgb, dtype=np.uint8)
        bgr = np.ascontiguousarray(arr[..., ::-1])
        h, w = bgr.shape[:2]
        scale = self.detect_side / max(h, w)
        size = (max(32, round(w * scale / 32) * 32), max(32, round(h * scale / 32) * 32))
        small = np.asarray(rgb.resize(size, PILImage.Resampling.BILINEAR), dtype=np.float32)[..., ::-1]
        detect = ((small / 127.5) - 1.0).transpose(2, 0, 1)
        return TextInput(
            detect=np.ascontiguousarray(detect, dtype=np.float32),
            bgr=bgr,
            flat=flat_share(arr),
            larger=larger if max(h, w) < RECOGNISE_SIDE else None,
        )

    def preprocess(self, prepared: Sequence[TextInput]) -> list[np.ndarray]:
        # One photo per call: the inputs differ in shape (each keeps its aspect ratio).
        return [p.detect[None] for p in prepared]

    def infer(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        name = self._detector.get_inputs()[0].name
        return [self._detector.run(None, {name: x})[0] for x in batch]

    def postprocess(self, raw: list[np.ndarray], prepared: Sequence[TextInput]) -> list[TextOutput]:
        """Probability maps -> line boxes (fractions), top to bottom; nothing read yet."""
        out = []
        for pred, item in zip(raw, prepared, strict=True):
            h, w = item.detect.shape[1:]
            quads, _scores = self._postprocess(pred, (h, w))
            boxes = [np.asarray(q, dtype=np.float32) / np.array([w, h], dtype=np.float32) for q in quads]
            boxes = [q for q in boxes if _area(q) <= MAX_LINE_AREA]
            out.append(TextOutput(lines=[Line("", 0.0, q) for q in _reading_order(boxes)], boxes=len(boxes)))
        return out

    def predict(self, prepared: Sequence[TextInput]) -> list[TextOutput]:
        """Detect lines in every photo, then read the lines of the photos that have some."""
        if not prepared:
            return []
        outputs: list[TextOutput] = []
        for item in prepared:
            started = time.perf_counter()
            found = super().predict([item])[0]
            found.timings_ms["detect"] = (time.perf_counter() - started) * 1e3
            outputs.append(found)
        for item, found in zip(prepared, outputs, strict=True):
            if not found.lines:
                continue  # no text: the recogniser never runs
            started = time.perf_counter()
            found.lines = self.recognise(item, [line.quad for line in found.lines])
            found.timings_ms["recognise"] = (time.perf_counter() - started) * 1e3
        return outputs

    def recognise(self, item: TextInput, quads: Sequence[Quad]) -> list[Line]:
        """Read these line boxes (fractions) of one photo; lines too unsure or too short are dropped."""
        self.load()
        bgr = item.bgr
        if item.larger is not None:
            bigger = item.larger(RECOGNISE_SIDE)
            if max(bigger.size) > max(bgr.shape[:2]):
                bgr = np.ascontiguousarray(np.asarray(bigger.convert("RGB"), dtype=np.uint8)[..., ::-1])
        h, w = bgr.shape[:2]
        chosen = _largest(quads, self.max_lines)
        crops = [_crop(bgr, quads[i] * np.array([w, h], dtype=np.float32)) for i in chosen]
        try:
            read = self._read([c for c, _ in crops])
        except Exception as exc:  # the engine's own errors, as the base class translates them
            from labelkit.errors import LabelerError

            raise LabelerError(f"local {self.name} model failed: {exc}") from exc
        lines = []
        for i, (_, turned), (text, confidence, spans) in sorted(
            zip(chosen, crops, read, strict=True), key=lambda t: t[0]
        ):
            text = text.strip()
            if confidence < MIN_LINE_CONFIDENCE or sum(c.isalnum() for c in text) < MIN_LINE_CHARACTERS:
                continue
            quad = quads[i]
            words = tuple(
                Word(word, conf, quad if turned else _stretch(quad, x0, x1)) for word, conf, x0, x1 in spans
            )
            lines.append(Line(text, confidence, quad, words))
        return lines

    def _read(self, crops: Sequence[np.ndarray]) -> list[Read]:
        """CTC recognition of line crops (BGR), one :data:`Read` each."""
        out: list[Any] = [None] * len(crops)
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / max(1, crops[i].shape[0]))
        name = self._recogniser.get_inputs()[0].name
        for start in range(0, len(order), REC_BATCH):
            idx = order[start : start + REC_BATCH]
            ratios = [crops[i].shape[1] / max(1, crops[i].shape[0]) for i in idx]
            width = max(REC_MIN_WIDTH, int(REC_HEIGHT * max(ratios)))
            batch = np.zeros((len(idx), 3, REC_HEIGHT, width), dtype=np.float32)
            used: list[int] = []
            for k, i in enumerate(idx):
                resized = _rec_resize(crops[i], width)
                batch[k, :, :, : resized.shape[2]] = resized
                used.append(resized.shape[2])
            probs = self._recogniser.run(None, {name: batch})[0]  # (B, T, characters)
            steps = probs.shape[1]
            for k, i in enumerate(idx):
                out[i] = self._decode(probs[k], width / steps / max(1, used[k]))
        return out

    def _decode(self, probs: np.ndarray, column_share: float) -> Read:
        """Greedy CTC decoding of one line; ``column_share``: the line's width one output column covers."""
        best = probs.argmax(axis=1)
        prob = probs.max(axis=1)
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        columns = np.flatnonzero(keep)
        chars = [
            self._characters[int(best[c])] if int(best[c]) < len(self._characters) else "" for c in columns
        ]
        text = "".join(chars)
        confidence = float(prob[columns].mean()) if len(columns) else 0.0
        words: list[tuple[str, float, float, float]] = []
        current: list[int] = []

        def close() -> None:
            if current:
                word = "".join(chars[j] for j in current)
                conf = float(np.mean([prob[columns[j]] for j in current]))
                x0 = max(0.0, (columns[current[0]] - 0.5) * column_share)
                x1 = min(1.0, (columns[current[-1]] + 1.5) * column_share)
                words.append((word, conf, x0, max(x0, x1)))
                current.clear()

        for j, ch in enumerate(chars):
            if ch.isspace():
                close()
            else:
                current.append(j)
        close()
        return text, confidence, words


# --------------------------------------------------------------------------- geometry


def flat_share(rgb: np.ndarray) -> float:
    """Share of pixels exactly equal to their right and lower neighbours (on a copy at most
    512 px a side): flat colours, as in screenshots; camera noise makes it rare in photos."""
    step = max(1, max(rgb.shape[:2]) // 512)
    a = rgb[::step, ::step]
    if a.shape[0] < 2 or a.shape[1] < 2:
        return 0.0
    same = (a[:-1, :-1] == a[:-1, 1:]).all(axis=-1) & (a[:-1, :-1] == a[1:, :-1]).all(axis=-1)
    return float(same.mean())


def _reading_order(quads: Sequence[Quad]) -> list[Quad]:
    """Top to bottom, then left to right within a row (rows: tops within half a line's height)."""
    if not quads:
        return []
    heights = [float(np.linalg.norm(q[0] - q[3])) for q in quads]
    tol = max(1e-3, 0.5 * float(np.median(heights)))
    ranked = sorted(range(len(quads)), key=lambda i: float(quads[i][0][1]))
    rows: list[list[int]] = []
    for i in ranked:
        if rows and float(quads[i][0][1]) - float(quads[rows[-1][0]][0][1]) <= tol:
            rows[-1].append(i)
        else:
            rows.append([i])
    return [quads[i] for row in rows for i in sorted(row, key=lambda i: float(quads[i][0][0]))]


def _largest(quads: Sequence[Quad], n: int) -> list[int]:
    """Indices of the ``n`` largest boxes (by area), in their given order."""
    if len(quads) <= n:
        return list(range(len(quads)))
    areas = [_area(q) for q in quads]
    return sorted(sorted(range(len(quads)), key=lambda i: -areas[i])[:n])


def _crop(bgr: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, bool]:
    """The line cut out and straightened (pixels); turned a quarter when it stands upright."""
    import cv2

    quad = quad.astype(np.float32)
    width = max(1, int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3]))))
    height = max(1, int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(
        bgr, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if height >= 1.5 * width:  # vertical text (as PaddleOCR): read it turned
        return np.ascontiguousarray(np.rot90(crop)), True
    return crop, False


def _rec_resize(crop: np.ndarray, width: int) -> np.ndarray:
    """(3, 48, w) float32 in [-1, 1], w <= ``width`` (the batch pads the rest with zeros)."""
    import cv2

    h, w = crop.shape[:2]
    resized_w = min(width, int(math.ceil(REC_HEIGHT * w / max(1, h))))
    resized = cv2.resize(crop, (max(1, resized_w), REC_HEIGHT)).astype(np.float32)
    out: np.ndarray = resized.transpose(2, 0, 1) / 127.5 - 1.0
    return out


def _stretch(quad: Quad, x0: float, x1: float) -> Quad:
    """The part of a line box between ``x0`` and ``x1`` (fractions of its length)."""
    tl, tr, br, bl = quad
    return np.array(
        [tl + x0 * (tr - tl), tl + x1 * (tr - tl), bl + x1 * (br - bl), bl + x0 * (br - bl)], dtype=np.float32
    )


def _box(quad: Quad) -> BoundingBox:
    xs, ys = np.clip(quad[:, 0], 0.0, 1.0), np.clip(quad[:, 1], 0.0, 1.0)
    x0, y0 = float(xs.min()), float(ys.min())
    return BoundingBox(left=x0, top=y0, width=float(xs.max()) - x0, height=float(ys.max()) - y0)


def _area(quad: Quad) -> float:
    """The share of the photo a line's own quadrilateral covers (not its upright bounding box,
    which a slanted line fills only in part)."""
    x, y = quad[:, 0].astype(np.float64), quad[:, 1].astype(np.float64)
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _tilt_degrees(quad: Quad, aspect: float) -> float:
    """The angle of a line's top edge to the horizontal (``aspect``: the photo's width / height)."""
    dx = float(quad[1][0] - quad[0][0]) * aspect
    dy = float(quad[1][1] - quad[0][1])
    return abs(math.degrees(math.atan2(dy, dx))) if dx or dy else 0.0


# --------------------------------------------------------------------------- results


def detections(output: TextOutput) -> list[TextDetection]:
    """DetectText's ``TextDetections``: the lines (ids 0..n-1), then their words (ParentId the line)."""
    out: list[TextDetection] = []
    for i, line in enumerate(output.lines):
        out.append(_detection(line.text, "LINE", i, None, line.confidence, line.quad))
    next_id = len(output.lines)
    for i, line in enumerate(output.lines):
        for word in line.words:
            out.append(_detection(word.text, "WORD", next_id, i, word.confidence, word.quad))
            next_id += 1
    return out


def _detection(
    text: str, kind: str, id_: int, parent: int | None, confidence: float, quad: Quad
) -> TextDetection:
    corners = [
        (round(float(min(1.0, max(0.0, x))), 6), round(float(min(1.0, max(0.0, y))), 6)) for x, y in quad
    ]
    return TextDetection(
        text=text,
        type="LINE" if kind == "LINE" else "WORD",
        id=id_,
        parent_id=parent,
        confidence=round(min(100.0, max(0.0, 100.0 * confidence)), 3),
        box=_box(quad),
        polygon=corners,
    )


def text_labels(output: TextOutput, *, flat: float, aspect: float = 1.0) -> list[Label]:
    """Text, and Document / Screenshot where their rules hold (see the module docstring).

    ``flat``: :func:`flat_share` of the photo; ``aspect``: its width / height."""
    lines = output.lines
    boxes = [_box(line.quad) for line in lines]
    area = sum(_area(line.quad) for line in lines)
    if not lines or area < TEXT_MIN_AREA:
        return []
    confidence = round(min(100.0, 100.0 * max(line.confidence for line in lines)), 3)
    found = [_label(TEXT, confidence)]
    words = sum(len(line.text.split()) for line in lines)
    if (
        len(lines) >= DOCUMENT_LINES
        and area >= DOCUMENT_AREA
        and words >= DOCUMENT_WORDS_PER_LINE * len(lines)
    ):
        found.append(_label(DOCUMENT, confidence))
    heights = sorted(b.height for b in boxes)
    upright = all(_tilt_degrees(line.quad, aspect) <= UPRIGHT_DEGREES for line in lines)
    if (
        len(lines) >= SCREENSHOT_LINES
        and upright
        and heights[len(heights) // 2] < SCREENSHOT_LINE_HEIGHT
        and flat >= SCREENSHOT_FLAT
    ):
        found.append(_label(SCREENSHOT, confidence))
    return found


def _label(name: str, confidence: float) -> Label:
    known = CATALOGUE[name]
    return Label(
        name=name,
        confidence=confidence,
        parents=list(known["parents"]),
        aliases=list(known["aliases"]),
        categories=list(known["categories"]),
    )


def merge_labels(labels: Sequence[Label], extra: Sequence[Label]) -> list[Label]:
    """``labels`` with ``extra`` added; a name already there keeps its parents, aliases and
    categories (joined with the extra's) and the higher confidence."""
    by_name = {lab.name: lab for lab in labels}
    for new in extra:
        old = by_name.get(new.name)
        if old is None:
            by_name[new.name] = new
            continue
        by_name[new.name] = old.model_copy(
            update={
                "confidence": max(old.confidence, new.confidence),
                "parents": list(dict.fromkeys([*old.parents, *new.parents])),
                "aliases": list(dict.fromkeys([*old.aliases, *new.aliases])),
                "categories": list(dict.fromkeys([*old.categories, *new.categories])),
            }
        )
    return list(by_name.values())


#: A page or a screen is neither inside nor outside. The scene head, which learnt the sides from
#: wide scenes, still names one for a flat image of print (a scanned page got "Outdoors 98").
PAGE_NAMES = frozenset({"Document", "Screenshot"})
SIDE_NAMES = frozenset({"Indoors", "Outdoors"})


def without_sides_on_pages(labels: Sequence[Label], threshold: float = 50.0) -> list[Label]:
    """``labels`` without Indoors and Outdoors when the text makes the photo a Document or a
    Screenshot (at ``threshold`` or more)."""
    if not any(lab.name in PAGE_NAMES and lab.confidence >= threshold for lab in labels):
        return list(labels)
    return [lab for lab in labels if lab.name not in SIDE_NAMES]
