"""Opening and decoding: the header parse (check 4), the verification decode (check 5),
the decode limits and the sandboxed run, the public calls (:func:`inspect_image`,
:func:`decode_rgb`, :func:`make_thumbnail`, :func:`run_task`) and the conversions to RGB."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
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
from labelkit.images.budget import _REDUCIBLE, _STRIP_PIXELS, _TWO_BYTE_MODES, _WIDE_MODES, _check_memory
from labelkit.images.limits import _MB, _check_bytes, _check_pixels, _quiet_pillow, _translate
from labelkit.images.sniff import _DAMAGED, _FORMATS
from labelkit.images.walks import _walk

if TYPE_CHECKING:
    from labelkit.settings import Settings

logger = logging.getLogger(__name__)

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

_EXIF_ORIENTATION: Final = 0x0112


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
    """Check ``data`` fully (see :mod:`labelkit.images` for the order) and describe it.

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
