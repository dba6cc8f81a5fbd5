"""The cheap limits and how refusals are worded: emptiness, size and type before any
parse, the pixel limit on declared dimensions, decoder errors translated to sentences for
people, and Pillow's warnings about hostile input kept quiet."""

from __future__ import annotations

import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from PIL import Image, PngImagePlugin

from labelkit.errors import IntakeError
from labelkit.images.sniff import _DAMAGED, describe_unknown, sniff_format

logger = logging.getLogger(__name__)

_MB: Final = 1024 * 1024

# What decoders raise on hostile or broken input. Anything else is unexpected but is
# still translated (see _translate), because the input is untrusted.
_DECODE_ERRORS: Final = (
    OSError,  # includes UnidentifiedImageError, "image file is truncated"
    SyntaxError,  # Pillow's "not a ... file", "broken PNG file"
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    zlib.error,
    OverflowError,
    ZeroDivisionError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # only raised if warnings are turned into errors
)

_TEXT_TOO_LARGE: Final = (
    "The image's embedded text is too large: a compressed text chunk unpacks to more than {mb} MB."
)


def _format_mb(n: int) -> str:
    value = n / _MB
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _format_binary(n: int) -> str:
    """A byte count in MiB (or KiB under 1 MiB), to one decimal unless whole: "20 MiB", "2.5 MiB"."""
    unit, size = ("MiB", _MB) if n >= _MB else ("KiB", 1024)
    value = n / size
    return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"


def _format_mp(n: int) -> str:
    value = n / 1_000_000
    if value >= 1 and value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 0.1 else f"{value:.3g}"


def _check_bytes(data: bytes, max_bytes: int | None) -> str:
    """Checks 1-3: emptiness, size, type. Returns the sniffed format."""
    if not data:
        raise IntakeError("The file is empty.")
    if max_bytes is not None and len(data) > max_bytes:
        # Exact bytes: a file one byte over the limit must not read as the limit itself.
        raise IntakeError(
            f"File is too big: {len(data):,} bytes; the limit is {max_bytes:,} bytes "
            f"({_format_binary(max_bytes)})."
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise IntakeError(describe_unknown(data))
    return fmt


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        limit = _format_mp(max_pixels)
        raise IntakeError(f"Image has too many pixels: {width} × {height} (the limit is {limit} megapixels).")


def _translate(e: BaseException, max_pixels: int) -> IntakeError:
    """Turn whatever a decoder raised into an IntakeError for people."""
    logger.debug("image rejected: %s: %s", type(e).__name__, e, exc_info=True)
    if isinstance(e, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return IntakeError(f"Image has too many pixels (the limit is {_format_mp(max_pixels)} megapixels).")
    if isinstance(e, MemoryError) or (isinstance(e, OSError) and "out of memory" in str(e)):
        return IntakeError("The image is too large to decode.")
    if isinstance(e, ValueError) and "MAX_TEXT" in str(e):
        # Pillow's own text-chunk limits (our PNG walk normally refuses these first).
        return IntakeError(_TEXT_TOO_LARGE.format(mb=_format_mb(PngImagePlugin.MAX_TEXT_CHUNK)))
    if not isinstance(e, _DECODE_ERRORS):
        logger.warning("unexpected %s while decoding an upload; refused as damaged", type(e).__name__)
    return IntakeError(_DAMAGED)


@contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Silence Pillow's warnings about hostile input while it parses one upload.

    Pillow *warns* (does not raise) about corrupt EXIF, short TIFF reads and images
    over its own pixel threshold. For untrusted input these are expected and we enforce
    our own pixel limit right after, so they are noise, not news. The filter is limited
    to warnings raised from ``PIL.*``: ``catch_warnings`` is not thread-safe in Python
    3.11, so in a rare race this filter could outlive the block, and then it should
    silence nothing but Pillow.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning, module=r"PIL\.")
        yield
