"""The domain's own types, shared by the data layer, auth, the labellers and the pages.

This module imports nothing of the project, so every layer may import it:

* :class:`Viewer` - who is asking; every person-facing query is scoped by it.
  :func:`system_viewer` makes the viewers of the system's own work (the worker's
  housekeeping, the command line, notebooks), the one way to do so.
* The Rekognition-shaped label result every labeller returns (:class:`LabelResult`
  with :class:`Label`, :class:`Instance`, :class:`BoundingBox`, :class:`ImageProperties`).
  It maps one to one onto Rekognition's DetectLabels response
  (:meth:`LabelResult.to_rekognition` / :meth:`LabelResult.from_rekognition`).
  Confidences are percentages (0-100); boxes are fractions of the image size.
  Beside the labels, a result may carry the text read in the photo (:class:`TextDetection`,
  DetectText-shaped: :meth:`LabelResult.to_detect_text`) and moderation labels
  (:class:`ModerationLabel`, DetectModerationLabels-shaped: :meth:`LabelResult.to_moderation`).
* :class:`ImageFeatures` - what the worker derives from a photo besides its labels
  (perceptual hash, embedding, thumbnail), for similar photos, near-duplicates and the gallery.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking. Every person-facing query is scoped by this."""

    user_id: str
    is_admin: bool = False


SystemPurpose = Literal["system", "cli", "notebook"]


def system_viewer(purpose: SystemPurpose) -> Viewer:
    """The administrator viewer of the system's own work: ``"system"`` (housekeeping and
    relabelling by the use cases and the worker), ``"cli"`` (``python -m
    labelkit.interchange``) or ``"notebook"``. Its ``user_id`` names the purpose (no
    account has it: user ids are random hex)."""
    return Viewer(user_id=purpose, is_admin=True)


class BoundingBox(BaseModel):
    model_config = ConfigDict(frozen=True)

    left: float = Field(ge=0, le=1)
    top: float = Field(ge=0, le=1)
    width: float = Field(ge=0, le=1)
    height: float = Field(ge=0, le=1)

    @classmethod
    def clamped(cls, left: float, top: float, width: float, height: float) -> BoundingBox:
        """A box moved inside the image: its edges (left/right, top/bottom) clamped to
        ``[0, 1]`` and its size what lies between them, so ``left + width <= 1``.
        Rekognition's own boxes can pass the frame (``Left + Width > 1``, a negative ``Left``)."""
        x0, w = clamp_extent(left, width)
        y0, h = clamp_extent(top, height)
        return cls(left=x0, top=y0, width=w, height=h)


class Instance(BaseModel):
    model_config = ConfigDict(frozen=True)

    box: BoundingBox
    confidence: float = Field(ge=0, le=100)


class Label(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    confidence: float = Field(ge=0, le=100)
    parents: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    instances: list[Instance] = Field(default_factory=list)


class DominantColor(BaseModel):
    model_config = ConfigDict(frozen=True)

    red: int = Field(ge=0, le=255)
    green: int = Field(ge=0, le=255)
    blue: int = Field(ge=0, le=255)
    hex_code: str
    simplified_color: str
    pixel_percent: float = Field(ge=0, le=100)


class ImageProperties(BaseModel):
    """Image quality on Rekognition's 0-100 scales, plus dominant colours."""

    model_config = ConfigDict(frozen=True)

    brightness: float = Field(ge=0, le=100)
    sharpness: float = Field(ge=0, le=100)
    contrast: float = Field(ge=0, le=100)
    dominant_colors: list[DominantColor] = Field(default_factory=list)


class TextDetection(BaseModel):
    """A line of text read in a photo, or a word of one (Rekognition's ``TextDetection``).

    ``id`` numbers the detections of one image (lines first, then words); a word's
    ``parent_id`` is its line's ``id``. ``polygon`` is the line's corners (fractions,
    clockwise from the top left) when it is not upright; ``box`` always bounds it."""

    model_config = ConfigDict(frozen=True)

    text: str
    type: Literal["LINE", "WORD"]
    id: int = Field(ge=0)
    parent_id: int | None = None
    confidence: float = Field(ge=0, le=100)
    box: BoundingBox
    polygon: list[tuple[float, float]] = Field(default_factory=list)


class ModerationLabel(BaseModel):
    """A moderation label (Rekognition's DetectModerationLabels): ``Explicit`` at level 1."""

    model_config = ConfigDict(frozen=True)

    name: str
    confidence: float = Field(ge=0, le=100)
    parent_name: str = ""
    taxonomy_level: int = Field(default=1, ge=1, le=3)

    def as_label(self) -> Label:
        """This flag as it is stored among the image's labels (category ``Moderation``), so
        people see, search, confirm and reject it like any label."""
        return Label(
            name=self.name,
            confidence=self.confidence,
            parents=[self.parent_name] if self.parent_name else [],
            aliases=list(MODERATION_ALIASES.get(self.name, ())),
            categories=[MODERATION_CATEGORY],
        )


#: The category moderation labels are stored under, and the words that find them.
MODERATION_CATEGORY = "Moderation"
MODERATION_ALIASES: dict[str, tuple[str, ...]] = {"Explicit": ("NSFW", "Explicit Content")}


class LabelResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    labels: list[Label]
    image_properties: ImageProperties | None = None
    model_version: str
    #: Text read in the photo; None when this labeller does not read text ([] when it found none).
    text: list[TextDetection] | None = None
    #: Moderation labels; None when this labeller does not moderate ([] when nothing was flagged).
    moderation: list[ModerationLabel] | None = None
    #: The models behind ``text`` / ``moderation`` (DetectText's TextModelVersion and
    #: DetectModerationLabels' ModerationModelVersion).
    text_model_version: str = ""
    moderation_model_version: str = ""

    @property
    def lines(self) -> list[TextDetection]:
        """The lines of text read, top to bottom (no words)."""
        return [d for d in self.text or [] if d.type == "LINE"]

    def to_detect_text(self) -> dict[str, Any]:
        """The text as Rekognition's DetectText response body (``TextDetections`` empty when
        none was read or this labeller reads none)."""
        return detect_text_response(self.text or [], self.text_model_version)

    def to_moderation(self) -> dict[str, Any]:
        """The moderation labels as Rekognition's DetectModerationLabels response body."""
        out: dict[str, Any] = {
            "ModerationLabels": [
                {
                    "Confidence": m.confidence,
                    "Name": m.name,
                    "ParentName": m.parent_name,
                    "TaxonomyLevel": m.taxonomy_level,
                }
                for m in self.moderation or []
            ]
        }
        if self.moderation_model_version:
            out["ModerationModelVersion"] = self.moderation_model_version
        return out

    def to_rekognition(self) -> dict[str, Any]:
        """This result as Rekognition's DetectLabels response body."""
        out: dict[str, Any] = {
            "Labels": [
                {
                    "Name": lab.name,
                    "Confidence": lab.confidence,
                    "Instances": [
                        {
                            "BoundingBox": {
                                "Width": inst.box.width,
                                "Height": inst.box.height,
                                "Left": inst.box.left,
                                "Top": inst.box.top,
                            },
                            "Confidence": inst.confidence,
                        }
                        for inst in lab.instances
                    ],
                    "Parents": [{"Name": p} for p in lab.parents],
                    "Aliases": [{"Name": a} for a in lab.aliases],
                    "Categories": [{"Name": c} for c in lab.categories],
                }
                for lab in self.labels
            ],
            "LabelModelVersion": self.model_version,
        }
        if self.image_properties is not None:
            props = self.image_properties
            out["ImageProperties"] = {
                "Quality": {
                    "Brightness": props.brightness,
                    "Sharpness": props.sharpness,
                    "Contrast": props.contrast,
                },
                "DominantColors": [
                    {
                        "Red": c.red,
                        "Green": c.green,
                        "Blue": c.blue,
                        "HexCode": c.hex_code,
                        "SimplifiedColor": c.simplified_color,
                        "PixelPercent": c.pixel_percent,
                    }
                    for c in props.dominant_colors
                ],
            }
        return out

    @classmethod
    def from_rekognition(cls, response: dict[str, Any], *, model_version: str | None = None) -> LabelResult:
        """Build a result from a DetectLabels response (one to one)."""
        labels = [
            Label(
                name=item["Name"],
                confidence=float(item.get("Confidence", 0.0)),
                parents=[p["Name"] for p in item.get("Parents", [])],
                aliases=[a["Name"] for a in item.get("Aliases", [])],
                categories=[c["Name"] for c in item.get("Categories", [])],
                instances=[
                    Instance(
                        box=BoundingBox.clamped(
                            left=float(inst["BoundingBox"].get("Left", 0.0)),
                            top=float(inst["BoundingBox"].get("Top", 0.0)),
                            width=float(inst["BoundingBox"].get("Width", 0.0)),
                            height=float(inst["BoundingBox"].get("Height", 0.0)),
                        ),
                        confidence=float(inst.get("Confidence", item.get("Confidence", 0.0))),
                    )
                    for inst in item.get("Instances", [])
                    if "BoundingBox" in inst
                ],
            )
            for item in response.get("Labels", [])
        ]
        props = None
        raw_props = response.get("ImageProperties")
        if raw_props:
            quality = raw_props.get("Quality", {})
            props = ImageProperties(
                brightness=float(quality.get("Brightness", 0.0)),
                sharpness=float(quality.get("Sharpness", 0.0)),
                contrast=float(quality.get("Contrast", 0.0)),
                dominant_colors=[
                    DominantColor(
                        red=int(c.get("Red", 0)),
                        green=int(c.get("Green", 0)),
                        blue=int(c.get("Blue", 0)),
                        hex_code=c.get("HexCode", ""),
                        simplified_color=c.get("SimplifiedColor", ""),
                        pixel_percent=float(c.get("PixelPercent", 0.0)),
                    )
                    for c in raw_props.get("DominantColors", [])
                ],
            )
        version = model_version or f"rekognition-{response.get('LabelModelVersion', 'unknown')}"
        return cls(labels=labels, image_properties=props, model_version=version)


def detect_text_response(detections: Sequence[TextDetection], model_version: str = "") -> dict[str, Any]:
    """Rekognition's DetectText response body for these detections (``TextModelVersion``
    when the model is named)."""
    out: dict[str, Any] = {"TextDetections": [_text_detection(d) for d in detections]}
    if model_version:
        out["TextModelVersion"] = model_version
    return out


def _text_detection(d: TextDetection) -> dict[str, Any]:
    box = d.box
    corners = d.polygon or [
        (box.left, box.top),
        (box.left + box.width, box.top),
        (box.left + box.width, box.top + box.height),
        (box.left, box.top + box.height),
    ]
    out: dict[str, Any] = {"DetectedText": d.text, "Type": d.type, "Id": d.id}
    if d.parent_id is not None:
        out["ParentId"] = d.parent_id
    out["Confidence"] = d.confidence
    out["Geometry"] = {
        "BoundingBox": {"Width": box.width, "Height": box.height, "Left": box.left, "Top": box.top},
        "Polygon": [{"X": x, "Y": y} for x, y in corners],
    }
    return out


def clamp_extent(start: float, size: float) -> tuple[float, float]:
    """``(start, size)`` of a box side (fractions) cut to ``[0, 1]``: a start before 0 moves to 0
    and the size loses what lay outside; the size then ends at 1 at most. A side already
    inside keeps its exact values."""
    start, size = float(start), float(size)
    if not (math.isfinite(start) and math.isfinite(size)):
        return _unit(start), 0.0
    if start < 0:
        start, size = 0.0, size + start
    start = min(start, 1.0)
    return start, max(0.0, min(size, 1.0 - start))


def _unit(value: float) -> float:
    """Clamp a box coordinate into [0, 1] (a value that is not finite counts as 0)."""
    value = float(value)
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


#: The label whose boxes are faces (``labelers/data/objects.yml``: ``faces.name``).
FACE_LABEL = "Face"


@dataclass(frozen=True, slots=True)
class FaceVector:
    """One face found in a photo (its box, fractions of the photo) and its descriptor
    (little-endian float32; ``labelkit.labelers.face_id``), for grouping faces into people."""

    box: BoundingBox
    descriptor: bytes


@dataclass(frozen=True, slots=True)
class ImageFeatures:
    """What the worker derives from a photo besides its labels; every part is optional
    (each feature extractor fills its own, :meth:`merged` combines them).

    * ``phash`` - a 64-bit perceptual hash as 16 hex digits (near-duplicates);
    * ``embedding`` / ``embedding_model`` - a compact image embedding and the model that
      made it (similar photos; only embeddings of the same model are compared);
    * ``thumbnail`` - the gallery thumbnail's bytes (the pipeline stores them, once);
    * ``faces`` - the faces' descriptors (people, issue #29).
    """

    phash: str | None = None
    embedding: bytes | None = None
    embedding_model: str | None = None
    thumbnail: bytes | None = None
    thumbnail_type: str | None = None
    #: Faces described for grouping into people (``face_model`` made them); ``None``: no
    #: face extractor ran (Rekognition only, or grouping is off), so stored faces are kept.
    faces: tuple[FaceVector, ...] | None = None
    face_model: str | None = None
    #: Faces found but too small to describe reliably (counted, not stored).
    faces_skipped: int = 0

    def merged(self, other: ImageFeatures) -> ImageFeatures:
        """These features with ``other``'s filled in where these have none."""
        return ImageFeatures(
            phash=self.phash or other.phash,
            embedding=self.embedding if self.embedding is not None else other.embedding,
            embedding_model=self.embedding_model or other.embedding_model,
            thumbnail=self.thumbnail if self.thumbnail is not None else other.thumbnail,
            thumbnail_type=self.thumbnail_type or other.thumbnail_type,
            faces=self.faces if self.faces is not None else other.faces,
            face_model=self.face_model or other.face_model,
            faces_skipped=self.faces_skipped or other.faces_skipped,
        )

    @property
    def empty(self) -> bool:
        return self.phash is None and self.embedding is None and self.thumbnail is None
