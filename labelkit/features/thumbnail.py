"""The gallery thumbnail, made once by the worker (issue #18) and stored beside the photo.

The worker stores :attr:`FeatureInput.thumbnail` (a JPEG whose longer side is the settings'
``thumbnail_size``, EXIF-rotated, no metadata) at :func:`~labelkit.features.thumbnail_key`;
the gallery reads it back instead of decoding the full photo. One stored image per photo:
the plain thumbnail, not the gallery's square crop. The square is cut from these few
kilobytes when a card is drawn (a 320-pixel decode, not a 12 MP one), and the other
extractors that read ``FeatureInput.thumbnail`` (the perceptual hash) see the whole photo.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from labelkit.domain import ImageFeatures
from labelkit.features import FeatureInput, thumbnail_key
from labelkit.images import DecodeLimits, make_thumbnail

if TYPE_CHECKING:
    from labelkit.settings import Settings

THUMBS_PREFIX = "thumbs/"  # the store's folder of thumbnails (:func:`~labelkit.features.thumbnail_key`)
THUMBNAIL_QUALITY = 85  # the gallery's JPEG quality (as before thumbnails were stored)
THUMBNAIL_TYPE = "image/jpeg"


def photo_key_of(thumb_key: str) -> str | None:
    """The object key of the photo whose thumbnail is stored at ``thumb_key`` (the inverse of
    :func:`~labelkit.features.thumbnail_key`); None for a key no photo's thumbnail has."""
    if not thumb_key.startswith(THUMBS_PREFIX) or not thumb_key.endswith(".jpg"):
        return None
    photo = thumb_key[len(THUMBS_PREFIX) : -len(".jpg")]
    return photo if photo and thumbnail_key(photo) == thumb_key else None


def thumbnail_maker(settings: Settings) -> Callable[[bytes], bytes]:
    """The settings' gallery thumbnail: ``thumbnail_size`` a side at most, made in the decoder
    sandbox under the decode limits (the bytes are untrusted)."""
    return partial(
        make_thumbnail,
        size=settings.thumbnail_size,
        max_pixels=settings.max_pixels,
        quality=THUMBNAIL_QUALITY,
        limits=DecodeLimits.from_settings(settings),
    )


class ThumbnailExtractor:
    """Hands the pipeline the gallery thumbnail to store (``thumbs/<object key>.jpg``)."""

    name = "thumbnail"

    def extract(self, image: FeatureInput) -> ImageFeatures:
        return ImageFeatures(thumbnail=image.thumbnail, thumbnail_type=THUMBNAIL_TYPE)
