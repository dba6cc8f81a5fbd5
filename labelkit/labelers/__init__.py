"""Labellers: the ``Labeler`` protocol (see :mod:`labelkit.labelers.base`) and adapters.

``local``        EfficientNet-Lite on onnxruntime (:mod:`labelkit.labelers.local`), the default
``rekognition``  Amazon Rekognition DetectLabels (:mod:`labelkit.labelers.rekognition`)
``fake``         a deterministic stand-in for tests and demos (:mod:`labelkit.labelers.fake`)

Several names (``LABELKIT_LABELER=local,rekognition``) is compare mode: every
image is labelled by each, and each result is stored under its model version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labelkit.domain import Label, LabelResult
from labelkit.labelers.base import ImageInput, Labeler, LabelOptions

if TYPE_CHECKING:
    from labelkit.settings import Settings

__all__ = ["ImageInput", "Label", "LabelOptions", "LabelResult", "Labeler", "make_labelers", "options_from"]


def make_labeler(name: str, settings: Settings) -> Labeler:
    if name == "local":
        from labelkit.labelers.local import LocalLabeler

        return LocalLabeler.from_settings(settings)
    if name == "rekognition":
        from labelkit.labelers.rekognition import RekognitionLabeler

        return RekognitionLabeler.from_settings(settings)
    if name == "fake":
        from labelkit.labelers.fake import FakeLabeler

        return FakeLabeler()
    raise ValueError(f"unknown labeler {name!r}")


def make_labelers(settings: Settings) -> list[Labeler]:
    """The labellers the settings ask for (model loading itself stays lazy)."""
    return [make_labeler(name, settings) for name in settings.labeler_names]


def options_from(settings: Settings) -> LabelOptions:
    return LabelOptions(min_confidence=settings.min_confidence, max_labels=settings.max_labels)
