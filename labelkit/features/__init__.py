"""What the worker derives from a photo besides its labels (issue #18).

Each :class:`FeatureExtractor` fills part of an :class:`~labelkit.domain.ImageFeatures`
(perceptual hash, embedding, thumbnail); the pipeline runs them after the labellers, merges
what they return and writes it with the labels (``image_features``, migration 0009). An
extractor that fails is logged and skipped: features are derived data, an image is labelled
without them and gets them when it is labelled again.

:class:`FeatureInput` is what extractors see: the stored bytes, the labellers' results and
the gallery thumbnail, made at most once (in the decoder sandbox, under the decode limits)
for every extractor that asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from labelkit.domain import ImageFeatures, LabelResult

logger = logging.getLogger(__name__)


class FeatureInput:
    """One photo as the extractors see it. ``thumbnail`` is made on first use, once."""

    def __init__(
        self,
        data: bytes,
        *,
        results: Sequence[LabelResult] = (),
        make_thumbnail: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.data = data
        self.results = list(results)
        self._make_thumbnail = make_thumbnail
        self._thumbnail: bytes | None = None

    @property
    def thumbnail(self) -> bytes:
        """The gallery thumbnail (JPEG, our own bytes: safe to decode in-process)."""
        if self._thumbnail is None:
            if self._make_thumbnail is None:
                raise RuntimeError("this FeatureInput was made without a thumbnail maker")
            self._thumbnail = self._make_thumbnail(self.data)
        return self._thumbnail


@runtime_checkable
class FeatureExtractor(Protocol):
    """Derives part of a photo's features. Raise anything on failure: it is logged, and the
    image is labelled without this extractor's part."""

    @property
    def name(self) -> str: ...

    def extract(self, image: FeatureInput) -> ImageFeatures: ...


def thumbnail_key(object_key: str) -> str:
    """Where a photo's gallery thumbnail is stored, beside it in the same store."""
    return f"thumbs/{object_key}.jpg"


def extract_all(extractors: Sequence[FeatureExtractor], image: FeatureInput) -> ImageFeatures:
    """Every extractor's part, merged; an extractor that fails contributes nothing."""
    features = ImageFeatures()
    for extractor in extractors:
        try:
            features = features.merged(extractor.extract(image))
        except Exception:
            logger.warning(
                "feature extractor %s failed; the image is labelled without it", extractor.name, exc_info=True
            )
    return features
