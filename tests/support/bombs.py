"""Hostile images for the intake tests: CPU bombs, memory bombs and broken PNGs that look whole.

Each is built in memory from Pillow output plus byte surgery (no network, no files), small
on disk and costly to decode the naive way; the docstrings say what each cost before
intake was bounded (measured on the 2-core test machine, see the README's Reliability table).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from functools import lru_cache

import numpy as np
from PIL import Image

_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(ihdr: bytes, idat: bytes, *, before_idat: bytes = b"") -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + before_idat
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def _jpeg_scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every SOS segment with its entropy-coded data."""
    scans = []
    pos = 2
    while pos < len(data) and data[pos + 1] != 0xD9:
        marker = data[pos + 1]
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == 0xDA:
            found = _END_OF_SCAN.search(data, end)
            assert found is not None
            end = found.start()
            scans.append((pos, end))
        pos = end
    return scans


@lru_cache(maxsize=4)
def progressive_scan_bomb(side: int = 7000, repeats: int = 2000) -> bytes:
    """A flat ``side`` x ``side`` progressive JPEG whose last scan (an AC refinement that
    codes the whole image in ~75 bytes) is repeated ``repeats`` times.

    Each repeat is a legal scan that makes libjpeg walk all 766,000 blocks again: with the
    defaults (342 kB) it took 93 s to inspect, and the same again to label and to thumbnail.
    """
    out = io.BytesIO()
    Image.new("L", (side, side), 128).save(out, format="JPEG", progressive=True, quality=90)
    data = out.getvalue()
    start, end = _jpeg_scans(data)[-1]
    return data[:end] + data[start:end] * repeats + data[end:]


def scans_in(data: bytes) -> int:
    return len(_jpeg_scans(data))


def app_segment_bomb(segments: int = 5_000_000) -> bytes:
    """A real 8x8 JPEG preceded by ``segments`` empty APP5 segments (4 bytes each: 20 MB).

    Pillow keeps every APPn segment in a list while it parses the header: 711 MB and 16 s.
    """
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(out, format="JPEG")
    base = out.getvalue()
    return base[:2] + b"\xff\xe5\x00\x02" * segments + base[2:]


@lru_cache(maxsize=2)
def float_tiff(side: int = 7000) -> bytes:
    """A ``side`` x ``side`` 32-bit float TIFF (mode F), deflate-compressed: 311 kB for 49 MP.

    Its greyscale scaling went through float64 at full size: 1.39 GB to make a thumbnail.
    """
    values = np.full((side, side), 0.25, np.float32)
    values[: side // 2] = 0.75  # top half lighter: the decoded picture can be checked
    out = io.BytesIO()
    Image.fromarray(values, mode="F").save(out, format="TIFF", compression="tiff_adobe_deflate")
    return out.getvalue()


@lru_cache(maxsize=2)
def rgba_png(side: int = 7000) -> bytes:
    """A ``side`` x ``side`` RGBA PNG, opaque red on the left half and fully transparent on
    the right: 208 kB for 49 MP. Compositing it on white at full size took 975 MB."""
    half = side // 2
    row = b"\x00" + b"\xff\x00\x00\xff" * half + b"\x00\x00\x00\x00" * (side - half)
    squeeze = zlib.compressobj(9)
    idat = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    return _png(struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0), idat)


def _rows(width: int, height: int) -> list[bytes]:
    """Filter byte 0 + RGB scanlines of a horizontal gradient."""
    return [b"\x00" + bytes((x * 7 + y) % 256 for x in range(width * 3)) for y in range(height)]


def corrupt_deflate_png(width: int = 200, height: int = 100) -> bytes:
    """Valid chunk CRCs around a deflate stream with 40 flipped bytes: the CRC check
    passes, the decode fails. Intake used to accept it (an orientation probe decoded it
    first, swallowed the error, and Pillow then treated the image as loaded), and the
    worker failed on it."""
    raw = zlib.compress(b"".join(_rows(width, height)))
    broken = raw[:20] + bytes(b ^ 0x55 for b in raw[20:60]) + raw[60:]
    return _png(struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0), broken)


def partial_png(width: int = 200, height: int = 1000, rows: int = 100) -> bytes:
    """A PNG whose zlib stream ends cleanly after ``rows`` of its ``height`` rows. Pillow
    loads it without complaint, the missing rows black, and it used to be labelled."""
    return _png(
        struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0),
        zlib.compress(b"".join(_rows(width, rows))),
    )


def text_chunk_bomb(kind: bytes = b"zTXt", megabytes: int = 50) -> bytes:
    """A small valid PNG with one compressed text chunk (``zTXt``, ``iTXt`` or ``iCCP``)
    that inflates to ``megabytes`` MB: about 50 kB on disk. Pillow stops at 1 MB, and intake
    used to call the file "damaged" instead of saying it carries too much text."""
    packed = zlib.compress(b"a" * (megabytes << 20), 9)
    if kind == b"zTXt":
        body = b"Comment\x00\x00" + packed
    elif kind == b"iTXt":
        body = b"Comment\x00\x01\x00en\x00Comment\x00" + packed
    else:
        body = b"profile\x00\x00" + packed
    rows = zlib.compress(b"".join(_rows(16, 16)))
    return _png(struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0), rows, before_idat=_chunk(kind, body))


def many_text_chunks_png(chunks: int = 70, megabytes_each: int = 1) -> bytes:
    """``chunks`` zTXt chunks of just under 1 MB each once inflated: under Pillow's
    per-chunk limit, over its 64 MB total (refused as too large, not as damaged)."""
    packed = zlib.compress(b"b" * ((megabytes_each << 20) - 1024), 9)
    text = b"".join(_chunk(b"zTXt", b"Note%d\x00\x00" % i + packed) for i in range(chunks))
    rows = zlib.compress(b"".join(_rows(16, 16)))
    return _png(struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0), rows, before_idat=text)


def many_chunks_png(chunks: int = 150_000) -> bytes:
    """A small PNG with ``chunks`` empty ancillary chunks (12 bytes each): Pillow reads each
    in Python."""
    rows = zlib.compress(b"".join(_rows(16, 16)))
    filler = _chunk(b"abCd", b"") * chunks
    return _png(struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0), rows, before_idat=filler)


def interlaced_png(width: int, height: int, *, missing: int = 0) -> bytes:
    """An 8-bit greyscale Adam7-interlaced PNG, with its last ``missing`` bytes of pixel data
    left out (the zlib stream still ends cleanly)."""
    passes = (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    )
    raw = b""
    for x0, y0, dx, dy in passes:
        if width > x0 and height > y0:
            w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
            raw += b"".join(b"\x00" + bytes(i % 256 for i in range(w)) for _ in range(h))
    raw = raw[: len(raw) - missing]
    return _png(struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1), zlib.compress(raw))
