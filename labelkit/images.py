"""Image intake: decide whether some bytes are an image Labelkit accepts, and decode them safely.

Every upload and every object the worker fetches is untrusted. This module is the only
place that hands those bytes to Pillow, and it does so in a fixed order, cheapest and
safest check first, because each check protects the next one:

1. **Empty** -- nothing to look at; say so plainly.
2. **Size limit** (``max_bytes``) -- before *anything* is parsed, so a 2 GB upload
   costs a ``len()`` and not a parse.
3. **Type from magic bytes** (:func:`sniff_format`) -- the name and the browser's
   content type are ignored. The sniffed type picks exactly one Pillow plugin class,
   so Pillow never probes the rarer, less hardened decoders (EPS, which runs
   Ghostscript; ICNS; PSD...) with hostile bytes. Anything else gets a message naming
   what the file seems to be (:func:`describe_unknown`).
4. **Dimensions from the header** -- opening an image reads only its header. The
   pixel limit (``max_pixels``) is enforced on those dimensions *before* any pixel is
   decoded, so a 100 kB PNG that declares 100000 x 100000 pixels (a decompression bomb)
   is refused without allocating 10 GB. We do not touch Pillow's process-wide
   ``Image.MAX_IMAGE_PIXELS``: Pillow's own ``DecompressionBombError`` stays on as a
   backstop and is translated like every other error.
5. **Verification decode** -- a full decode of the first frame, so truncated or corrupt
   files are refused at upload time rather than failing later in the worker. JPEGs are
   decoded with ``draft()`` at 1/8 scale: libjpeg still entropy-decodes every byte of
   the scan (so truncation is still detected, with Pillow's default
   ``ImageFile.LOAD_TRUNCATED_IMAGES = False``) but skips most of the inverse DCT and
   colour work, which makes a 12 MP photo several times cheaper to check.

Errors: every failure is a :class:`labelkit.errors.IntakeError` whose ``reason`` is a
sentence for people. Pillow, zlib, struct and memory errors never escape and no stack
trace is printed for bad input (tracebacks are logged at DEBUG only).

Decoding for the labeller (:func:`decode_rgb`) and thumbnails (:func:`make_thumbnail`)
go through the same checks, so both are safe to call on untrusted bytes directly.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import struct
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageCms,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from labelkit import sandbox
from labelkit.errors import IntakeError

if TYPE_CHECKING:
    from labelkit.settings import Settings

logger = logging.getLogger(__name__)

__all__ = [
    "ACCEPTED_FORMATS",
    "DecodeLimits",
    "ImageInfo",
    "decode_rgb",
    "describe_unknown",
    "inspect_image",
    "make_thumbnail",
    "orientation_of",
    "run_task",
    "safe_display_name",
    "sniff_format",
]

# format -> (content type, extension). The order is the order shown to people.
_FORMATS: Final[dict[str, tuple[str, str]]] = {
    "JPEG": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "WEBP": ("image/webp", ".webp"),
    "GIF": ("image/gif", ".gif"),
    "BMP": ("image/bmp", ".bmp"),
    "TIFF": ("image/tiff", ".tiff"),
}
ACCEPTED_FORMATS: Final[tuple[str, ...]] = tuple(_FORMATS)
_ACCEPTED_TEXT: Final = "Labelkit accepts JPEG, PNG, WebP, GIF, BMP and TIFF."

# One plugin class per accepted format: instantiating it directly parses the header with
# that decoder only (no probing of other formats) and applies no global pixel policy.
_OPENERS: Final[dict[str, Callable[[IO[bytes]], ImageFile.ImageFile]]] = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "GIF": GifImagePlugin.GifImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
}

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

_EXIF_ORIENTATION: Final = 0x0112
_DAMAGED: Final = "The image is damaged or truncated and cannot be read."
_MB: Final = 1024 * 1024


@dataclass(frozen=True)
class ImageInfo:
    """What intake learned about an accepted image.

    ``width`` and ``height`` are as displayed, i.e. after EXIF orientation.
    """

    format: str
    content_type: str
    extension: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    frames: int = 1

    @property
    def animated(self) -> bool:
        return self.frames > 1

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


# --------------------------------------------------------------------------- sniffing


def sniff_format(data: bytes) -> str | None:
    """The accepted format named by the magic bytes at the start of ``data``, or None.

    Only the bytes decide: file names and declared content types are not evidence.
    """
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    # "BM" alone is weak (any text starting "BM..."), so also require a known DIB
    # header size at offset 14: 12 (OS/2 v1), 40, 52, 56, 64, 108, 124.
    if head[:2] == b"BM" and len(data) >= 18:
        if struct.unpack_from("<I", data, 14)[0] in (12, 16, 40, 52, 56, 64, 108, 124):
            return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


# Signatures of common non-image (or not-accepted image) files, checked in order.
_SIGNATURES: Final[tuple[tuple[int, bytes, str], ...]] = (
    (0, b"%PDF", "Not an image: the file looks like a PDF document."),
    (0, b"%!PS", "Not an image: the file looks like a PostScript document."),
    (0, b"\x7fELF", "Not an image: the file looks like a program (executable)."),
    (0, b"MZ", "Not an image: the file looks like a Windows program (executable)."),
    (0, b"\xcf\xfa\xed\xfe", "Not an image: the file looks like a macOS program (executable)."),
    (0, b"\xfe\xed\xfa\xcf", "Not an image: the file looks like a macOS program (executable)."),
    (0, b"\xca\xfe\xba\xbe", "Not an image: the file looks like a program (executable)."),
    (0, b"\x1f\x8b", "Not an image: the file looks like a compressed (gzip) archive."),
    (0, b"7z\xbc\xaf\x27\x1c", "Not an image: the file looks like a 7-Zip archive."),
    (0, b"Rar!\x1a\x07", "Not an image: the file looks like a RAR archive."),
    (0, b"BZh", "Not an image: the file looks like a compressed (bzip2) archive."),
    (0, b"\xfd7zXZ\x00", "Not an image: the file looks like a compressed (xz) archive."),
    (257, b"ustar", "Not an image: the file looks like a tar archive."),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "Not an image: the file looks like an old Office document."),
    (0, b"{\\rtf", "Not an image: the file looks like a rich-text (RTF) document."),
    (0, b"8BPS", "Photoshop (PSD) files are not supported: please export a JPEG or PNG."),
    (0, b"\x00\x00\x01\x00", "Icon (ICO) files are not supported: please use a JPEG or PNG."),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 images are not supported: please use JPEG or PNG."),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000 images are not supported: please use JPEG or PNG."),
    (0, b"\xff\x0a", "JPEG XL images are not supported yet: please use JPEG or PNG."),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL images are not supported yet: please use JPEG or PNG."),
    (0, b"ID3", "Not an image: the file looks like an audio file (MP3)."),
    (0, b"OggS", "Not an image: the file looks like an audio or video file (Ogg)."),
    (0, b"fLaC", "Not an image: the file looks like an audio file (FLAC)."),
    (0, b"\x1aE\xdf\xa3", "Not an image: the file looks like a video (Matroska/WebM)."),
    (0, b"SQLite format 3\x00", "Not an image: the file looks like a database (SQLite)."),
)

_HEIF_BRANDS: Final = {
    b"heic",
    b"heix",
    b"hevc",
    b"hevx",
    b"heim",
    b"heis",
    b"hevm",
    b"hevs",
    b"mif1",
    b"msf1",
}
_AVIF_BRANDS: Final = {b"avif", b"avis"}


def _describe_zip(data: bytes) -> str:
    # Office Open XML and OpenDocument files are ZIPs; their first entries give them away.
    window = data[:4096]
    if b"word/" in window:
        return "Not an image: the file looks like a Word document."
    if b"xl/" in window:
        return "Not an image: the file looks like an Excel spreadsheet."
    if b"ppt/" in window:
        return "Not an image: the file looks like a PowerPoint presentation."
    if b"application/vnd.oasis.opendocument" in window:
        return "Not an image: the file looks like an OpenDocument file."
    if b"application/epub+zip" in window:
        return "Not an image: the file looks like an e-book (EPUB)."
    return "Not an image: the file looks like a ZIP archive."


def _describe_text(data: bytes) -> str | None:
    sample = data[:4096]
    codec = "utf-8"
    boms = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
    for bom, bom_codec in boms:
        if sample.startswith(bom):
            sample, codec = sample[len(bom) :], bom_codec
            break
    try:
        text = sample.decode(codec)
    except UnicodeDecodeError as e:
        # A multi-byte character cut by the 4 kB window is still text.
        if e.start < len(sample) - 4:
            return None
        text = sample[: e.start].decode(codec, errors="ignore")
    if not text:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\t\r\n\f")
    if printable / len(text) < 0.95:
        return None
    lowered = text.lstrip().lower()
    if "<svg" in lowered:
        return "SVG drawings are not supported: please export a PNG or JPEG."
    if lowered.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in lowered[:1024]:
        return "Not an image: the file looks like a web page (HTML)."
    if lowered.startswith("<?xml") or lowered.startswith("<"):
        return "Not an image: the file looks like an XML document."
    if lowered.startswith(("{", "[")):
        return "Not an image: the file looks like a JSON or other text file."
    if lowered.startswith("#!"):
        return "Not an image: the file looks like a script."
    return "Not an image: the file looks like plain text."


def describe_unknown(data: bytes) -> str:
    """A sentence for people naming what ``data`` seems to be, when it is not an accepted image."""
    if not data:
        return "The file is empty."
    for offset, magic, message in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return message
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _describe_zip(data)
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        brands = {brand} | {data[i : i + 4] for i in range(16, min(len(data), 64), 4)}
        if brands & _AVIF_BRANDS:
            return "AVIF images are not supported yet: please convert the photo to JPEG."
        if brands & _HEIF_BRANDS:
            return "HEIC/HEIF photos are not supported yet: please convert the photo to JPEG."
        return "Not an image: the file looks like a video (MP4/MOV)."
    if data[:4] == b"RIFF":
        kind = data[8:12]
        if kind == b"WAVE":
            return "Not an image: the file looks like an audio file (WAV)."
        if kind == b"AVI ":
            return "Not an image: the file looks like a video (AVI)."
    if data[:3] in (b"GIF", b"\x89PN") or data[:2] == b"\xff\xd8":
        return _DAMAGED
    text = _describe_text(data)
    if text is not None:
        return text
    return f"Not an image: the file type is not recognised. {_ACCEPTED_TEXT}"


# --------------------------------------------------------------------------- limits


def _format_mb(n: int) -> str:
    value = n / _MB
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


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
        raise IntakeError(
            f"File is too big: {len(data) / _MB:.1f} MB (the limit is {_format_mb(max_bytes)} MB)."
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


# --------------------------------------------------------------------------- structure walks
#
# Pillow's parsers are written for files that mean well. Two kinds of file make them (or
# the C decoders behind them) do work out of all proportion to their size, so the file's
# structure is walked here first, with plain byte searches, and refused with a reason:
#
# * JPEG: each progressive scan costs a pass over every block of the image, so a 300 kB
#   file that repeats its last scan 2,000 times costs minutes. Pillow also keeps every
#   APPn segment in a list, so 5 million empty ones (20 MB) cost 1.3 GB.
# * PNG: chunk CRCs (Pillow's decode does not check them), compressed text chunks that
#   inflate past Pillow's limit (refused as too large, not as damaged), and the pixel
#   data's length: a PNG whose zlib stream ends cleanly after 10 of its 1,000 rows is
#   "loaded" by Pillow with the rest black, so the inflated size is counted here.

_JPEG_SOF: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_PROGRESSIVE: Final = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# The end of entropy-coded data: 0xFF followed by anything but a stuffed zero, a restart
# marker or fill. (A run of fill bytes ends at its last 0xFF, which this finds.)
_JPEG_END_OF_SCAN: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_NEXT_MARKER: Final = re.compile(rb"\xff+[^\x00\xff]")
_JPEG_FILL: Final = re.compile(rb"\xff+")
#: libjpeg's default progressive script writes 6 scans (grey) or 10 (colour); encoders that
#: tune their scripts stay in the tens. Every scan is a pass over the whole image.
MAX_JPEG_SCANS: Final = 100
#: Tables, metadata (an ICC profile is at most 255 APP2 chunks) and scans of one picture.
MAX_JPEG_SEGMENTS: Final = 1000
#: Stray bytes between segments that libjpeg (and Pillow, a byte at a time) skip over.
_MAX_JPEG_JUNK: Final = 64 * 1024
#: libpng-style encoders write 8-64 kB IDAT chunks (a 20 MB PNG: a few thousand chunks).
MAX_PNG_CHUNKS: Final = 100_000

_PNG_CHANNELS: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS: Final = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7: Final = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_INFLATE_STEP: Final = 1 << 20

_TEXT_TOO_LARGE: Final = (
    "The image's embedded text is too large: a compressed text chunk unpacks to more than {mb} MB."
)


@dataclass(frozen=True, slots=True)
class _JpegFacts:
    """What the marker walk learned about the first picture of a JPEG file."""

    scans: int
    segments: int
    progressive: bool
    #: Bytes libjpeg holds for the whole image's DCT coefficients when it must read every
    #: scan before it can output a row (progressive, or baseline in several scans).
    coefficient_bytes: int


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _jpeg_coefficient_bytes(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    if not sampling:
        return 0
    h_max = max(h for h, _ in sampling) or 1
    v_max = max(v for _, v in sampling) or 1
    total = 0
    for h, v in sampling:
        blocks_x = _ceil_div(_ceil_div(width * h, h_max), 8)
        blocks_y = _ceil_div(_ceil_div(height * v, v_max), 8)
        total += blocks_x * blocks_y * 64 * 2  # one 16-bit coefficient per sample
    return total


def _walk_jpeg(data: bytes) -> _JpegFacts:
    """Count the segments and scans of the first picture, refusing absurd numbers."""
    pos, n = 2, len(data)
    segments = scans = junk = 0
    progressive = False
    width = height = 0
    sampling: list[tuple[int, int]] = []
    while pos < n:
        if data[pos] != 0xFF:
            # Stray bytes before a marker: tolerated (libjpeg warns), within reason.
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                break
            junk += found.start() - pos
            if junk > _MAX_JPEG_JUNK:
                raise IntakeError(_DAMAGED)
            pos = found.start()
        fill = _JPEG_FILL.match(data, pos)
        pos = fill.end() if fill else pos + 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI: the end of the first picture (an MPO's others are not decoded)
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise IntakeError(
                f"The JPEG has too many segments (more than {MAX_JPEG_SEGMENTS:,}); "
                "real photos have a few dozen, so it is refused."
            )
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # standalone markers have no length
        if marker in (0x00, 0xD8) or pos + 2 > n:
            raise IntakeError(_DAMAGED)
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise IntakeError(_DAMAGED)
        body = pos + 2
        end = pos + length
        if marker in _JPEG_SOF and not sampling and end <= n and length >= 8:
            height, width, count = struct.unpack_from(">HHB", data, body + 1)
            for i in range(count):
                at = body + 6 + 3 * i + 1
                if at < end:
                    sampling.append((data[at] >> 4, data[at] & 0x0F))
            progressive = marker in _JPEG_PROGRESSIVE
        if marker == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise IntakeError(
                    f"The JPEG has too many progressive scans (more than {MAX_JPEG_SCANS}); "
                    "decoding it would take minutes, so it is refused."
                )
            found = _JPEG_END_OF_SCAN.search(data, end)
            if found is None:
                break  # ends inside the scan: the decoder reports the truncation
            pos = found.start()
            continue
        pos = end
    buffered = progressive or scans > 1
    return _JpegFacts(
        scans=scans,
        segments=segments,
        progressive=progressive,
        coefficient_bytes=_jpeg_coefficient_bytes(width, height, sampling) if buffered else 0,
    )


def _png_raw_size(width: int, height: int, depth: int, colour: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines the IDAT stream must inflate to."""
    bits = depth * _PNG_CHANNELS[colour]

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    if not interlaced:
        return rows(width, height)
    return sum(
        rows(-(-(width - x0) // dx), -(-(height - y0) // dy))
        for x0, y0, dx, dy in _ADAM7
        if width > x0 and height > y0
    )


def _inflated_text(body: memoryview, start: int, *, profile: bool = False) -> int:
    """Length of a zlib text (or colour profile) payload, refusing one over Pillow's limit."""
    limit = PngImagePlugin.MAX_TEXT_CHUNK
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body[start:], limit + 1)
    except zlib.error as e:
        raise IntakeError(_DAMAGED) from e
    if len(out) > limit:
        if profile:
            raise IntakeError(
                f"The image's colour profile is too large: it unpacks to more than {_format_mb(limit)} MB."
            )
        raise IntakeError(_TEXT_TOO_LARGE.format(mb=_format_mb(limit)))
    return len(out)


def _walk_png(data: bytes, max_pixels: int) -> None:
    """Check every chunk's CRC, the text chunks' sizes and the pixel data's length."""
    view = memoryview(data)
    pos, n, count = 8, len(data), 0
    expected = inflated = 0
    inflater: zlib._Decompress | None = None
    idat_state = "before"  # before -> inside -> after: IDAT chunks must be consecutive
    text_memory = 0
    while True:
        if pos + 12 > n:
            raise IntakeError(_DAMAGED)  # no IEND: truncated
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > n:
            raise IntakeError(_DAMAGED)
        body = view[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise IntakeError(_DAMAGED)
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise IntakeError(
                f"The PNG has too many chunks (more than {MAX_PNG_CHUNKS:,}), so it is refused."
            )
        if count == 1:
            if kind != b"IHDR" or length != 13:
                raise IntakeError(_DAMAGED)
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if width == 0 or height == 0 or depth not in _PNG_DEPTHS.get(colour, ()):
                raise IntakeError(_DAMAGED)
            _check_pixels(width, height, max_pixels)  # a bomb is a bomb before it is incomplete
            expected = _png_raw_size(width, height, depth, colour, interlace == 1)
        if kind == b"IDAT":
            if idat_state == "after":
                raise IntakeError(_DAMAGED)
            idat_state = "inside"
            if inflater is None:
                inflater = zlib.decompressobj()
            chunk: bytes | memoryview = body
            # Inflate in steps and only count: no buffer as large as the image.
            while chunk and inflated < expected and not inflater.eof:
                try:
                    inflated += len(inflater.decompress(chunk, _INFLATE_STEP))
                except zlib.error as e:
                    raise IntakeError(_DAMAGED) from e
                chunk = inflater.unconsumed_tail
        elif idat_state == "inside":
            idat_state = "after"
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"iCCP"):
            text_memory += _text_chunk_size(kind, body)
            if text_memory > PngImagePlugin.MAX_TEXT_MEMORY:
                raise IntakeError(
                    "The image's embedded text is too large: more than "
                    f"{_format_mb(PngImagePlugin.MAX_TEXT_MEMORY)} MB in all."
                )
        if kind == b"IEND":
            break
        pos = end
    if inflater is None:
        raise IntakeError(_DAMAGED)  # no pixel data at all
    if inflated < expected:
        if not inflater.eof:
            raise IntakeError(_DAMAGED)  # the stream stops mid-way: truncated
        raise IntakeError(
            f"The image is incomplete: its pixel data stops at {100 * inflated // expected} % "
            "of the picture, so it cannot be read."
        )


def _text_chunk_size(kind: bytes, body: memoryview) -> int:
    keyword_end = bytes(body[:80]).find(b"\x00")
    if keyword_end < 0:
        return len(body)  # malformed: Pillow ignores it; count it as it stands
    if kind == b"tEXt":
        return len(body) - keyword_end - 1
    if kind == b"iCCP":
        _inflated_text(body, keyword_end + 2, profile=True)
        return 0  # a profile does not count as text memory for Pillow
    if kind == b"zTXt":
        return _inflated_text(body, keyword_end + 2)
    # iTXt: keyword \0 flag method language \0 translated \0 text
    flag = body[keyword_end + 1] if keyword_end + 1 < len(body) else 0
    rest = bytes(body[keyword_end + 3 :])
    language_end = rest.find(b"\x00")
    translated_end = rest.find(b"\x00", language_end + 1) if language_end >= 0 else -1
    if translated_end < 0:
        return len(body)
    start = keyword_end + 3 + translated_end + 1
    return _inflated_text(body, start) if flag == 1 else len(body) - start


def _walk(data: bytes, fmt: str, max_pixels: int) -> _JpegFacts | None:
    """The structure checks, before Pillow parses anything (its header parse can be the bomb)."""
    if fmt == "JPEG":
        return _walk_jpeg(data)
    if fmt == "PNG":
        _walk_png(data, max_pixels)
    return None


# --------------------------------------------------------------------------- memory budget

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


# --------------------------------------------------------------------------- open and load


def _open(data: bytes, fmt: str, max_pixels: int) -> ImageFile.ImageFile:
    """Check 4: parse the header only, then enforce the pixel limit before any decoding."""
    try:
        with _quiet_pillow():
            im = _OPENERS[fmt](io.BytesIO(data))
    except Exception as e:  # untrusted input: translate everything
        raise _translate(e, max_pixels) from e
    if im.format != fmt and not (fmt == "JPEG" and im.format == "MPO"):
        # Cannot happen with the plugin classes above, but the contract matters more.
        raise IntakeError(_DAMAGED)
    width, height = im.size
    _check_pixels(width, height, max_pixels)
    return im


def orientation_of(im: Image.Image) -> int:
    """The EXIF (or XMP) orientation tag, 1-8; 1 when absent or unreadable.

    Call it only after the image is loaded: for PNG, Pillow's ``getexif()`` decodes the
    whole image to reach an eXIf chunk after the pixels, and a failure there would be
    swallowed below and leave Pillow believing the image is loaded.
    """
    try:
        with _quiet_pillow():
            value = im.getexif().get(_EXIF_ORIENTATION, 1)
        orientation = int(value)
    except Exception as e:  # a broken EXIF block must not refuse a good photo
        logger.debug("unreadable EXIF ignored: %s: %s", type(e).__name__, e)
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _frame_count(im: Image.Image) -> int:
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception as e:  # a broken later frame: the first is still used
        logger.debug("could not count frames: %s: %s", type(e).__name__, e)
        return 1


def _load(im: ImageFile.ImageFile, fmt: str, max_pixels: int) -> None:
    """The verification decode: the first and only ``load()``, and its errors are final."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Somebody switched Pillow's process-wide leniency on; truncated files would pass.
        logger.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated images will not be refused")
    if fmt != "WEBP" and not im.tile:
        # Pillow empties the tile list when a load starts, even one that fails; an empty
        # list here means something already tried (and a second load() would "succeed").
        raise IntakeError(_DAMAGED)
    try:
        with _quiet_pillow():
            im.load()
    except Exception as e:  # untrusted input: translate everything
        raise _translate(e, max_pixels) from e
    # A frame can grow the canvas while loading (GIF); re-check what was actually built.
    _check_pixels(im.size[0], im.size[1], max_pixels)


# --------------------------------------------------------------------------- decode limits

#: Defaults of the ``decode_*`` settings (see :class:`DecodeLimits`).
DEFAULT_DECODE_MEMORY_BYTES: Final = 400 * _MB
DEFAULT_DECODE_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What decoding one image may cost.

    ``memory_bytes``: the estimate (:func:`_check_memory`) above which an image is
    refused before decoding; with ``isolated``, also roughly how far the decoder
    process may grow before the kernel stops it. ``seconds``: how long one decode may
    take (enforced only when ``isolated``: a decoder stuck in C code can only be
    stopped by killing its process). ``processes``: decoder processes per caller
    process, so at most that many decodes run (and hold memory) at once.
    """

    memory_bytes: int = DEFAULT_DECODE_MEMORY_BYTES
    seconds: float = DEFAULT_DECODE_SECONDS
    isolated: bool = True
    processes: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeLimits:
        return cls(
            memory_bytes=settings.decode_memory_mb * _MB,
            seconds=settings.decode_timeout_seconds,
            isolated=settings.decode_isolation == "process",
            processes=settings.decode_processes,
        )


def _default_limits() -> DecodeLimits:
    from labelkit.settings import get_settings

    return DecodeLimits.from_settings(get_settings())


def _run(
    task: str, params: dict[str, Any], data: bytes, limits: DecodeLimits | None
) -> tuple[dict[str, Any], bytes]:
    """Run one decode task: in a sandboxed child process, or here if isolation is off."""
    limits = limits or _default_limits()
    params = {**params, "memory_bytes": limits.memory_bytes}
    if not limits.isolated:
        return run_task(task, params, data)
    pool = sandbox.get_sandbox(memory_bytes=limits.memory_bytes, processes=limits.processes)
    header, payload = pool.run(task, params, data, timeout=limits.seconds)
    if not header.get("ok"):
        reason = str(header.get("reason") or _DAMAGED)[:500]
        raise IntakeError(reason)
    return header, payload


# --------------------------------------------------------------------------- public API


def inspect_image(
    data: bytes, *, max_bytes: int, max_pixels: int, limits: DecodeLimits | None = None
) -> ImageInfo:
    """Check ``data`` fully (see the module docstring for the order) and describe it.

    Raises :class:`IntakeError` for anything that is not an acceptable, readable image.
    """
    fmt = _check_bytes(data, max_bytes)
    header, _ = _run("inspect", {"max_pixels": max_pixels}, data, limits)
    content_type, extension = _FORMATS[fmt]
    return ImageInfo(
        format=fmt,
        content_type=content_type,
        extension=extension,
        width=int(header["width"]),
        height=int(header["height"]),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        frames=int(header["frames"]),
    )


def decode_rgb(
    data: bytes, *, max_pixels: int, min_side: int | None = None, limits: DecodeLimits | None = None
) -> Image.Image:
    """Decode untrusted ``data`` to an 8-bit RGB image as displayed.

    EXIF orientation is applied, transparency is composited on white, and CMYK, 16-bit,
    palette and greyscale images are converted. Animated images give their first frame.

    With ``min_side``, the image may come back smaller than stored, but its shorter side
    is at least ``min_side`` (or the original size if that is smaller): JPEGs are
    decoded at 1/2, 1/4 or 1/8 scale by libjpeg (``draft``), other formats are reduced
    by an integer factor after decoding, before any conversion.
    """
    _check_bytes(data, None)
    header, payload = _run("decode_rgb", {"max_pixels": max_pixels, "min_side": min_side}, data, limits)
    width, height = int(header["width"]), int(header["height"])
    if len(payload) != width * height * 3:
        raise IntakeError(_DAMAGED)
    return Image.frombytes("RGB", (width, height), payload)


def make_thumbnail(
    data: bytes, *, size: int = 320, max_pixels: int, quality: int = 85, limits: DecodeLimits | None = None
) -> bytes:
    """A JPEG thumbnail whose longer side is ``size`` (never upscaled), EXIF-rotated.

    No metadata is copied into the thumbnail (no EXIF, so no GPS position).
    """
    if size < 1:
        raise ValueError("size must be positive")
    _check_bytes(data, None)
    _, payload = _run("thumbnail", {"max_pixels": max_pixels, "size": size, "quality": quality}, data, limits)
    if not payload.startswith(b"\xff\xd8"):
        raise IntakeError(_DAMAGED)
    return payload


def run_task(task: str, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes]:
    """Do one task on untrusted ``data`` here, in this process: the decoder child's entry.

    Returns a JSON-able header and raw bytes; raises :class:`IntakeError`.
    """
    fmt = _check_bytes(data, None)
    max_pixels = int(params["max_pixels"])
    budget = int(params.get("memory_bytes") or DEFAULT_DECODE_MEMORY_BYTES)
    if task == "inspect":
        width, height, frames = _inspect_here(data, fmt, max_pixels, budget)
        return {"width": width, "height": height, "frames": frames}, b""
    if task == "decode_rgb":
        min_side = params.get("min_side")
        rgb = _decode_here(data, fmt, max_pixels, budget, min_side=int(min_side) if min_side else None)
        return {"width": rgb.width, "height": rgb.height}, rgb.tobytes()
    if task == "thumbnail":
        size = int(params["size"])
        rgb = _decode_here(data, fmt, max_pixels, budget, longer_side=size)
        rgb.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=int(params.get("quality", 85)), optimize=False)
        return {}, out.getvalue()
    raise ValueError(f"unknown decode task {task!r}")


def _inspect_here(data: bytes, fmt: str, max_pixels: int, budget: int) -> tuple[int, int, int]:
    facts = _walk(data, fmt, max_pixels)
    im = _open(data, fmt, max_pixels)
    with im:
        stored = im.size  # before draft() scales it
        if fmt == "JPEG":
            # Reduced-scale DCT decode (1/8 where possible): every byte of the entropy-coded
            # scan is still read, so truncation is still caught, at a fraction of the cost.
            # Greyscale output skips the colour conversion too (RGB->L is the only mode
            # change draft() allows); CMYK and greyscale JPEGs keep their mode.
            im.draft("L" if im.mode == "RGB" else None, (1, 1))
        _check_memory(im, fmt, facts, budget, converts_full_size=False)
        _load(im, fmt, max_pixels)
        # Only now: for PNG these read chunks after the pixels, i.e. decode (see orientation_of).
        # Orientations 5-8 rotate by 90 degrees: displayed width is the stored height.
        width, height = stored[::-1] if orientation_of(im) >= 5 else stored
        frames = _frame_count(im)
    return width, height, frames


def _decode_here(
    data: bytes,
    fmt: str,
    max_pixels: int,
    budget: int,
    *,
    min_side: int | None = None,
    longer_side: int | None = None,
) -> Image.Image:
    facts = _walk(data, fmt, max_pixels)
    im = _open(data, fmt, max_pixels)
    if fmt == "JPEG" and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
        if min_side is not None and min_side > 0:
            # Shorter side stays >= min_side: draft picks scale s <= min(w, h) // min_side.
            im.draft("RGB" if im.mode == "RGB" else None, (min_side, min_side))
        elif longer_side is not None:
            # Longer side stays >= longer_side: s <= min(w // n, h // n) <= max(w, h) // n.
            im.draft("RGB" if im.mode == "RGB" else None, (longer_side, longer_side))
    if min_side is not None and min_side > 0:
        factor = min(im.size) // min_side
    elif longer_side is not None:
        # Keep twice the thumbnail's size for its Lanczos pass (Pillow's reducing_gap=2).
        factor = max(im.size) // (2 * longer_side)
    else:
        factor = 1
    _check_memory(im, fmt, facts, budget, converts_full_size=factor < 2)
    _load(im, fmt, max_pixels)
    try:
        rgb = _shrink_to_rgb(im, factor)
        return _exif_transpose(im, rgb)
    except Exception as e:  # untrusted input: translate everything
        raise _translate(e, max_pixels) from e


def _shrink_to_rgb(im: Image.Image, factor: int) -> Image.Image:
    """RGB at 1/``factor`` of the size: shrink first, convert after (never a full-size copy)."""
    if factor < 2:
        return _to_rgb(im)
    mode = im.mode
    if mode in _WIDE_MODES:
        # 16-bit and float: a box filter in the native mode, then the scaling to 8 bits.
        if mode in _TWO_BYTE_MODES:
            small = im.resize((-(-im.width // factor), -(-im.height // factor)), Image.Resampling.BOX)
        else:
            small = im.reduce(factor)
        return _to_rgb(small)
    if mode in _REDUCIBLE and "transparency" not in im.info:
        return _to_rgb(im.reduce(factor))
    return _reduce_by_strips(im, factor)


def _reduce_by_strips(im: Image.Image, factor: int) -> Image.Image:
    """Convert (palette, alpha over white) and shrink a band of rows at a time.

    Averaging pixels already composited on white is exactly what compositing the
    average would give, and a band holds about two megapixels, not the whole image.
    """
    width, height = im.size
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = factor * max(1, _STRIP_PIXELS // (width * factor))
    for top in range(0, height, rows):
        band = im.crop((0, top, width, min(height, top + rows)))
        out.paste(_to_rgb(band).reduce(factor), (0, top // factor))
    return out


def _exif_transpose(source: Image.Image, rgb: Image.Image) -> Image.Image:
    """Rotate/flip ``rgb`` as the EXIF orientation of ``source`` asks."""
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation_of(source))
    # Same table as ImageOps.exif_transpose; done here because ``rgb`` is a converted
    # copy that no longer carries the EXIF block, and a broken block must not fail.
    return rgb.transpose(method) if method is not None else rgb


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any mode Pillow can open into 8-bit RGB, transparency over white."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    if mode in _WIDE_MODES:
        return _wide_grey_to_rgb(im)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    profile = im.info.get("icc_profile")
    if profile:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            dst = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
            logger.debug("CMYK ICC conversion failed, using the naive one: %s", e)
    return im.convert("RGB")


def _wide_grey_to_rgb(im: Image.Image) -> Image.Image:
    # Pillow's own I/I;16 -> L conversion clips at 255, which turns most 16-bit images
    # white. Scale by the type's range instead (floats: by their own finite range).
    # Arithmetic stays in float32 / the native integer type: a float64 copy of a 50 MP
    # image alone is 400 MB (callers shrink first, so this is usually small anyway).
    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        values = arr.astype(np.float32, copy=False)
        finite = np.isfinite(values)
        if not finite.all():
            values = np.where(finite, values, np.float32(0))
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if hi > lo:
            # scale * value - scale * lo: no (value - lo) that could overflow float32.
            scale = 255.0 / (hi - lo)
            scaled = values * np.float32(scale) - np.float32(scale * lo)
            grey = np.clip(scaled, 0, 255).astype(np.uint8)
        else:
            grey = np.zeros(values.shape, np.uint8)
    else:
        lo_int = int(arr.min()) if arr.size else 0
        top = int(arr.max()) if arr.size else 0
        if lo_int < 0 or top > 65535:
            span = max(1, top - lo_int)
            scaled = (arr.astype(np.float32) - np.float32(lo_int)) * np.float32(255.0 / span)
            grey = np.clip(scaled, 0, 255).astype(np.uint8)
        elif top > 255:
            grey = (arr >> 8).astype(np.uint8)
        else:
            grey = arr.astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


# --------------------------------------------------------------------------- names

_BIDI_CONTROLS: Final = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u061c"]
)
_JOINERS: Final = frozenset(["\u200d", "\u200c"])
_WHITESPACE: Final = re.compile(r"\s+")
_MAX_EXTENSION: Final = 16


def _split_extension(name: str) -> tuple[str, str]:
    dot = name.rfind(".")
    if dot <= 0 or len(name) - dot > _MAX_EXTENSION + 1 or dot == len(name) - 1:
        return name, ""
    ext = name[dot:]
    if " " in ext:
        return name, ""
    return name[:dot], ext


def _cut(text: str, length: int) -> str:
    """Cut ``text`` to ``length`` characters without leaving half a character cluster."""
    if len(text) <= length:
        return text
    text = text[: max(0, length)]
    while text and (
        unicodedata.combining(text[-1]) or text[-1] in _JOINERS or 0xFE00 <= ord(text[-1]) <= 0xFE0F
    ):
        text = text[:-1]
    return text.rstrip()


def safe_display_name(name: str, *, max_length: int = 200) -> str:
    """A harmless file name to show and store: no directories, controls or bidi tricks.

    Directories are dropped (``../../etc/passwd`` -> ``passwd``; ``\\`` counts as a
    separator too), NUL and control characters are removed, Unicode is NFC-normalised,
    bidi override/isolate characters are removed (they make ``gpj.exe`` show as
    ``exe.jpg``), whitespace is collapsed, and long names are cut keeping the extension.
    Never empty: ``"unnamed"``. HTML escaping is the UI's job, so ``<`` and ``>`` are kept.
    Not for building storage keys.
    """
    if max_length < 1:
        raise ValueError("max_length must be positive")
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/")
    # The last non-empty path component; "." and ".." are not names.
    parts = [p for p in text.split("/") if p.strip() not in ("", ".", "..")]
    text = parts[-1] if parts else ""
    cleaned = []
    for ch in text:
        if ch in _BIDI_CONTROLS or ch == "\ufeff":
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            # Tabs and newlines become spaces (then collapse); NUL and the rest vanish.
            if ch in "\t\n\r\v\f\x85":
                cleaned.append(" ")
            continue
        if category in ("Zl", "Zp"):
            cleaned.append(" ")
            continue
        cleaned.append(ch)
    text = _WHITESPACE.sub(" ", "".join(cleaned)).strip()
    if text in ("", ".", ".."):
        return "unnamed"[:max_length]
    if len(text) > max_length:
        stem, ext = _split_extension(text)
        if ext and len(ext) < max_length:
            text = _cut(stem, max_length - len(ext)) + ext
        else:
            text = _cut(text, max_length)
        if not text.strip():
            return "unnamed"[:max_length]
    return text
