"""Structure walks: JPEG markers and PNG chunks checked with plain byte searches before
Pillow parses anything (its header parse can be the bomb)."""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Final

from PIL import PngImagePlugin

from labelkit.errors import IntakeError
from labelkit.images.limits import _TEXT_TOO_LARGE, _check_pixels, _format_mb
from labelkit.images.sniff import _DAMAGED

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
#: Scans times pixels: each scan is a pass over the whole image, so the cost is their product.
#: A 50-megapixel progressive photo with libjpeg's 10 scans is 500 million; a file under the
#: scan cap with 80 scans of 7000 x 7000 (3.9 billion) cost 8 s at intake and 8 s again in
#: the worker.
MAX_JPEG_SCAN_PIXELS: Final = 600_000_000
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
            # (One scan is an ordinary decode: its pixels alone are limited, with the other
            # formats', after the walk.)
            if scans > 1 and scans * width * height > MAX_JPEG_SCAN_PIXELS:
                raise IntakeError(
                    f"The JPEG has {scans} or more scans over {width:,} × {height:,} pixels; decoding "
                    f"that many passes over so many pixels (more than {MAX_JPEG_SCAN_PIXELS:,}) would "
                    "take too long, so it is refused."
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
