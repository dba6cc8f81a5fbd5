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
from typing import IO, Final

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

from labelkit.errors import IntakeError

logger = logging.getLogger(__name__)

__all__ = [
    "ACCEPTED_FORMATS",
    "ImageInfo",
    "decode_rgb",
    "describe_unknown",
    "inspect_image",
    "make_thumbnail",
    "orientation_of",
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
    if isinstance(e, MemoryError):
        return IntakeError("The image is too large to decode.")
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
    """The EXIF (or XMP) orientation tag, 1-8; 1 when absent or unreadable."""
    try:
        with _quiet_pillow():
            value = im.getexif().get(_EXIF_ORIENTATION, 1)
        orientation = int(value)
    except Exception as e:  # a broken EXIF block must not refuse a good photo
        logger.debug("unreadable EXIF ignored: %s: %s", type(e).__name__, e)
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _displayed_size(im: Image.Image) -> tuple[int, int]:
    width, height = im.size
    # Orientations 5-8 rotate by 90 degrees: displayed width is the stored height.
    return (height, width) if orientation_of(im) >= 5 else (width, height)


def _frame_count(im: Image.Image) -> int:
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception as e:  # a broken later frame: the first is still used
        logger.debug("could not count frames: %s: %s", type(e).__name__, e)
        return 1


def _load(im: ImageFile.ImageFile, max_pixels: int) -> None:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Somebody switched Pillow's process-wide leniency on; truncated files would pass.
        logger.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated images will not be refused")
    try:
        with _quiet_pillow():
            im.load()
    except Exception as e:  # untrusted input: translate everything
        raise _translate(e, max_pixels) from e
    # A frame can grow the canvas while loading (GIF); re-check what was actually built.
    _check_pixels(im.size[0], im.size[1], max_pixels)


def _verify_png(data: bytes, max_pixels: int) -> None:
    try:
        with _quiet_pillow():
            PngImagePlugin.PngImageFile(io.BytesIO(data)).verify()
    except Exception as e:  # untrusted input: translate everything
        raise _translate(e, max_pixels) from e


# --------------------------------------------------------------------------- public API


def inspect_image(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Check ``data`` fully (see the module docstring for the order) and describe it.

    Raises :class:`IntakeError` for anything that is not an acceptable, readable image.
    """
    fmt = _check_bytes(data, max_bytes)
    im = _open(data, fmt, max_pixels)
    with im:
        width, height = _displayed_size(im)
        frames = _frame_count(im)
        if frames > 1:
            im.seek(0)
        if fmt == "JPEG":
            # Reduced-scale DCT decode (1/8 where possible): every byte of the entropy-coded
            # scan is still read, so truncation is still caught, at a fraction of the cost.
            # Greyscale output skips the colour conversion too (RGB->L is the only mode
            # change draft() allows); CMYK and greyscale JPEGs keep their mode.
            im.draft("L" if im.mode == "RGB" else None, (1, 1))
        _load(im, max_pixels)
    if fmt == "PNG":
        # Decoding does not check chunk CRCs, and a flipped bit in compressed data can
        # still inflate; verify() walks every chunk's CRC (cheap: no decompression).
        _verify_png(data, max_pixels)
    content_type, extension = _FORMATS[fmt]
    return ImageInfo(
        format=fmt,
        content_type=content_type,
        extension=extension,
        width=width,
        height=height,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        frames=frames,
    )


def decode_rgb(data: bytes, *, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Decode untrusted ``data`` to an 8-bit RGB image as displayed.

    EXIF orientation is applied, transparency is composited on white, and CMYK, 16-bit,
    palette and greyscale images are converted. Animated images give their first frame.

    With ``min_side``, the image may come back smaller than stored, but its shorter side
    is at least ``min_side`` (or the original size if that is smaller): JPEGs are
    decoded at 1/2, 1/4 or 1/8 scale by libjpeg (``draft``), other formats are reduced
    by an integer factor after decoding.
    """
    im = _open_for_decode(data, max_pixels, min_side=min_side, longer_side=None)
    return _finish_rgb(im, max_pixels, min_side=min_side)


def make_thumbnail(data: bytes, *, size: int = 320, max_pixels: int, quality: int = 85) -> bytes:
    """A JPEG thumbnail whose longer side is ``size`` (never upscaled), EXIF-rotated.

    No metadata is copied into the thumbnail (no EXIF, so no GPS position).
    """
    if size < 1:
        raise ValueError("size must be positive")
    im = _open_for_decode(data, max_pixels, min_side=None, longer_side=size)
    rgb = _finish_rgb(im, max_pixels, min_side=None)
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality, optimize=False)
    return out.getvalue()


def _open_for_decode(
    data: bytes, max_pixels: int, *, min_side: int | None, longer_side: int | None
) -> ImageFile.ImageFile:
    # No max_bytes here: the worker decodes objects that intake already accepted, and a
    # later, lower limit must not strand them. Emptiness and type are still checked.
    fmt = _check_bytes(data, None)
    im = _open(data, fmt, max_pixels)
    if fmt == "JPEG" and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
        if min_side is not None and min_side > 0:
            # Shorter side stays >= min_side: draft picks scale s <= min(w, h) // min_side.
            im.draft("RGB" if im.mode == "RGB" else None, (min_side, min_side))
        elif longer_side is not None:
            # Longer side stays >= longer_side: s <= min(w // n, h // n) <= max(w, h) // n.
            im.draft("RGB" if im.mode == "RGB" else None, (longer_side, longer_side))
    return im


def _finish_rgb(im: ImageFile.ImageFile, max_pixels: int, *, min_side: int | None) -> Image.Image:
    # Not closed with ``with``: a closed Pillow image refuses pixel access, and the
    # source is an in-memory BytesIO, so there is no OS resource to release.
    _load(im, max_pixels)
    try:
        rgb = _to_rgb(im)
        if min_side is not None and min_side > 0:
            factor = min(rgb.size) // min_side
            if factor >= 2:
                rgb = rgb.reduce(factor)
        rgb = _exif_transpose(im, rgb)
    except Exception as e:  # untrusted input: translate everything
        raise _translate(e, max_pixels) from e
    return rgb


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
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
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
    # white. Scale by the type's range instead (floats: by their own range).
    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        finite = np.nan_to_num(arr.astype(np.float64))
        lo, hi = float(finite.min()), float(finite.max())
        scaled = (finite - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(finite)
        grey = scaled.astype(np.uint8)
    else:
        wide = arr.astype(np.int64)
        top = int(wide.max()) if wide.size else 0
        if wide.min() < 0 or top > 65535:
            lo = int(wide.min())
            span = max(1, top - lo)
            grey = ((wide - lo) * 255 // span).astype(np.uint8)
        elif top > 255:
            grey = (wide >> 8).astype(np.uint8)
        else:
            grey = wide.astype(np.uint8)
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
