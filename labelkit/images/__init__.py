"""Image intake: decide whether some bytes are an image Labelkit accepts, and decode them safely.

Every upload and every object the worker fetches is untrusted. This package is the only
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

Where each step lives: :mod:`~labelkit.images.sniff` (check 3: the accepted formats,
magic bytes, what anything else seems to be), :mod:`~labelkit.images.limits` (checks 1-3
and the pixel limit, decoder errors as sentences, Pillow's warnings),
:mod:`~labelkit.images.walks` (JPEG markers and PNG chunks walked before Pillow parses),
:mod:`~labelkit.images.budget` (the decode memory estimate) and
:mod:`~labelkit.images.decode` (checks 4-5, the decode limits and the sandboxed run, the
public calls and the conversions to RGB). The decoder child's entry is :func:`run_task`.
Upload names are cleaned by :mod:`labelkit.filenames`.
"""

from __future__ import annotations

from labelkit.filenames import safe_display_name
from labelkit.images.decode import (
    DecodeLimits,
    ImageInfo,
    decode_rgb,
    inspect_image,
    make_thumbnail,
    orientation_of,
    run_task,
)
from labelkit.images.sniff import ACCEPTED_FORMATS, describe_unknown, sniff_format

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
