"""The labeller port: options, the input, and the ``Labeler`` protocol.

The Rekognition-shaped result types it returns live in :mod:`labelkit.domain`.

Every labeller (the local ONNX model, Amazon Rekognition, test fakes) returns a
:class:`LabelResult`. It maps one to one onto Rekognition's DetectLabels
response (:meth:`LabelResult.to_rekognition` / :meth:`LabelResult.from_rekognition`).
Confidences are percentages (0-100); boxes are fractions of the image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from labelkit.domain import Label, LabelResult


class LabelOptions(BaseModel):
    """What the caller wants back (Rekognition's DetectLabels options)."""

    model_config = ConfigDict(frozen=True)

    min_confidence: float = Field(default=55.0, ge=0, le=100)
    max_labels: int = Field(default=20, ge=1)
    include_labels: tuple[str, ...] = ()
    exclude_labels: tuple[str, ...] = ()
    include_categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()

    def apply(self, labels: Sequence[Label]) -> list[Label]:
        """Filter and cut labels as Rekognition does: confidence, filters, then the top N."""
        inc_l = {s.casefold() for s in self.include_labels}
        exc_l = {s.casefold() for s in self.exclude_labels}
        inc_c = {s.casefold() for s in self.include_categories}
        exc_c = {s.casefold() for s in self.exclude_categories}
        kept = []
        for lab in labels:
            cats = {c.casefold() for c in lab.categories}
            if lab.confidence < self.min_confidence:
                continue
            if inc_l and lab.name.casefold() not in inc_l:
                continue
            if lab.name.casefold() in exc_l:
                continue
            if inc_c and not (cats & inc_c):
                continue
            if cats & exc_c:
                continue
            kept.append(lab)
        kept.sort(key=lambda lab: lab.confidence, reverse=True)
        return kept[: self.max_labels]


@dataclass(frozen=True, slots=True)
class ImageInput:
    """An image to label: its bytes, and where it lives in S3 if it does
    (Rekognition reads S3 objects directly; the local model uses the bytes)."""

    data: bytes
    s3_bucket: str | None = None
    s3_key: str | None = None


@runtime_checkable
class Labeler(Protocol):
    """What the pipeline calls. Implementations raise ``IntakeError`` for bytes
    that are not a usable image and ``LabelerError`` for everything else."""

    @property
    def model_version(self) -> str: ...

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult: ...
