"""The decode memory budget: what decoding an image will need, estimated from its header
and structure and refused before decoding when over the limit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from PIL import Image

from labelkit.errors import IntakeError
from labelkit.images.limits import _MB

if TYPE_CHECKING:
    from labelkit.images.walks import _JpegFacts

# Bytes per pixel as Pillow stores a mode (multi-band 8-bit modes take 4).
_ONE_BYTE_MODES: Final = frozenset({"1", "L", "P"})
_TWO_BYTE_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WIDE_MODES: Final = _TWO_BYTE_MODES | {"I", "F"}
# Decoders that hold a second full-size copy while they work (measured: libwebp decodes
# into its own RGBA buffer, which Pillow then copies).
_DECODER_COPIES: Final = {"WEBP": 2}
# Modes a box filter may average directly; the others (palette, alpha) are converted a
# strip at a time while shrinking (see _reduce_by_strips).
_REDUCIBLE: Final = frozenset({"RGB", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"})
_STRIP_PIXELS: Final = 1 << 21


def _bytes_per_pixel(mode: str) -> int:
    if mode in _ONE_BYTE_MODES:
        return 1
    if mode in _TWO_BYTE_MODES:
        return 2
    return 4


def _check_memory(
    im: Image.Image, fmt: str, facts: _JpegFacts | None, budget: int, *, converts_full_size: bool
) -> None:
    """Refuse, before decoding, an image whose decode would need more than ``budget`` bytes.

    Counted: the decoded image (at draft scale for JPEG), a decoder's own second copy,
    libjpeg's whole-image coefficient buffer for progressive files (always at full
    scale), and RGB conversions when the caller wants the picture at full size.
    """
    width, height = im.size
    pixels = width * height
    need = pixels * _bytes_per_pixel(im.mode) * _DECODER_COPIES.get(fmt, 1)
    if facts is not None:
        need += facts.coefficient_bytes
    if converts_full_size and im.mode != "RGB":
        need += 3 * pixels * 4  # e.g. alpha over white: RGBA copy, white canvas, result
    if need > budget:
        raise IntakeError(
            f"The image is too large to decode: it would need about {_format_mb_round(need)} MB of memory "
            f"(the limit is {_format_mb_round(budget)} MB)."
        )


def _format_mb_round(n: int) -> str:
    return f"{-(-n // _MB):,}"
