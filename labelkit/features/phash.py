"""The perceptual hash of a photo (near-duplicates, issue #18): a 64-bit DCT hash
(``imagehash.phash``) of the gallery thumbnail, stored as 16 lowercase hex digits.

The hash is taken from the thumbnail, never from the uploaded bytes: the thumbnail is our
own JPEG made in the decoder sandbox (under the decode limits, EXIF-rotated), so decoding it
here is safe, and the upload page and the worker hash exactly the same pixels. Two photos are
near-duplicates when the Hamming distance of their hashes is small (thresholds measured in
``bench/near_duplicates.py``; the rule lives in :mod:`labelkit.duplicates`).
"""

from __future__ import annotations

import io

from PIL import Image

from labelkit.domain import ImageFeatures
from labelkit.features import FeatureInput

#: Bits in a hash; the hex form has ``HASH_BITS // 4`` digits.
HASH_BITS = 64


def phash_of(image: Image.Image) -> str:
    """The 64-bit perceptual hash of ``image`` as 16 hex digits."""
    import imagehash  # imported on use: scipy behind it costs ~0.3 s, and only hashing needs it

    return str(imagehash.phash(image, hash_size=8))


def phash_of_thumbnail(thumbnail: bytes) -> str:
    """The hash of one of our own thumbnails (a JPEG made by ``labelkit.images.make_thumbnail``).

    Never call this on uploaded bytes: they go through the decoder sandbox first."""
    with Image.open(io.BytesIO(thumbnail), formats=["JPEG"]) as im:
        im.load()
        return phash_of(im)


def hamming(a: str, b: str) -> int:
    """How many of the 64 bits differ between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


class PerceptualHash:
    """Feature extractor: the thumbnail's perceptual hash."""

    name = "phash"

    def extract(self, image: FeatureInput) -> ImageFeatures:
        return ImageFeatures(phash=phash_of_thumbnail(image.thumbnail))
