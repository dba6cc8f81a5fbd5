"""Generators for image-intake test inputs: good images of every accepted kind and a
corpus of bad ones (wrong types, truncations, decompression bombs, odd modes).

Everything is built in memory with Pillow/numpy/zlib, from real photos shipped in
scikit-learn (``china.jpg``) so JPEG sizes and decode times are realistic. No network.
Tests and benchmarks use these: ``from labelkit.testing import photos as f``.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

# --------------------------------------------------------------------------- bases


@lru_cache(maxsize=1)
def _china() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image("china.jpg"))  # 427 x 640 RGB, bundled


def photo(width: int = 640, height: int = 427, *, noise: int = 6, seed: int = 0) -> Image.Image:
    """A real photo (china.jpg) resized to ``width`` x ``height``, with mild sensor-like noise
    so that a large JPEG has realistic size and decode cost."""
    im = Image.fromarray(_china()).resize((width, height), Image.Resampling.BILINEAR)
    if noise:
        # A tiled 256x256 noise patch: as costly to compress as full noise, much cheaper to make.
        rng = np.random.default_rng(seed)
        tile = rng.integers(-noise, noise + 1, (256, 256, 3), dtype=np.int16)
        reps = (-(-height // 256), -(-width // 256), 1)
        arr = np.asarray(im, dtype=np.int16) + np.tile(tile, reps)[:height, :width]
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return im


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **params)
    return out.getvalue()


def jpeg(width: int = 640, height: int = 427, *, quality: int = 90, **params: Any) -> bytes:
    return encode(photo(width, height), "JPEG", quality=quality, **params)


@lru_cache(maxsize=2)
def big_jpeg(width: int = 4000, height: int = 3000) -> bytes:
    """A 12 MP camera-sized JPEG (~4-6 MB), cached because it takes ~0.5 s to build."""
    return jpeg(width, height, quality=92)


def png(width: int = 64, height: int = 48, mode: str = "RGB") -> bytes:
    return encode(photo(width, height, noise=0).convert(mode), "PNG")


# --------------------------------------------------------------------------- odd but valid


def marker_image(width: int = 60, height: int = 40) -> Image.Image:
    """Landscape image, white, with a red block in the top-left corner: shows orientation."""
    im = Image.new("RGB", (width, height), (255, 255, 255))
    im.paste((255, 0, 0), (0, 0, width // 3, height // 3))
    return im


def exif_rotated_jpeg(orientation: int = 6, width: int = 60, height: int = 40) -> bytes:
    """Stored as ``width`` x ``height`` with EXIF orientation set (6 = rotate 90° clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(marker_image(width, height), "JPEG", quality=95, exif=exif)


def huge_exif_jpeg() -> bytes:
    """A JPEG whose EXIF block is nearly the 64 kB APP1 maximum, full of junk, plus orientation 6."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "x" * 60_000  # ImageDescription
    return encode(marker_image(), "JPEG", exif=exif)


def broken_exif_jpeg() -> bytes:
    """A JPEG whose APP1 'Exif' segment is garbage (claims offsets far past its end)."""
    good = encode(marker_image(), "JPEG")
    junk = b"Exif\x00\x00MM\x00*\xff\xff\xff\xf0" + bytes(range(256)) * 8
    segment = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    return good[:2] + segment + good[2:]


def png_with_big_exif_chunk(megabytes: int = 4) -> bytes:
    """A valid small PNG carrying a multi-megabyte eXIf chunk of random junk."""
    base = png(16, 16)
    rng = np.random.default_rng(1)
    blob = b"MM\x00*" + rng.integers(0, 256, megabytes * 1024 * 1024, dtype=np.uint8).tobytes()
    iend = base.rindex(b"IEND") - 4
    return base[:iend] + _chunk(b"eXIf", blob) + base[iend:]


def cmyk_jpeg() -> bytes:
    return encode(photo(120, 80, noise=0).convert("CMYK"), "JPEG", quality=90)


def png16_grey(width: int = 40, height: int = 30) -> bytes:
    """A 16-bit greyscale PNG (mode I;16), a horizontal ramp 0..65535."""
    ramp = np.tile(np.linspace(0, 65535, width, dtype=np.uint16), (height, 1))
    return encode(Image.fromarray(ramp), "PNG")


def png16_rgb_raw(width: int = 8, height: int = 6) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow opens it as 8-bit RGB)."""
    row = b"".join(struct.pack(">HHH", 65535, 32768, 0) for _ in range(width))
    raw = b"".join(b"\x00" + row for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return _png_from_chunks(ihdr, zlib.compress(raw))


def palette_png_transparent() -> bytes:
    """A palette PNG whose index 0 is fully transparent (left half) and index 1 is blue."""
    im = Image.new("P", (20, 10), 0)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    im.paste(1, (10, 0, 20, 10))
    return encode(im, "PNG", transparency=0)


def la_png() -> bytes:
    im = Image.new("LA", (10, 10), (0, 0))
    return encode(im, "PNG")


def animated_gif(frames: int = 3) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    images = [Image.new("RGB", (24, 16), colours[i % len(colours)]) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def animated_webp(frames: int = 3) -> bytes:
    images = [Image.new("RGB", (24, 16), (40 * i, 100, 200)) for i in range(frames)]
    return encode(images[0], "WEBP", save_all=True, append_images=images[1:], duration=100, lossless=True)


def multipage_tiff(pages: int = 2) -> bytes:
    images = [photo(32, 24, noise=0) for _ in range(pages)]
    return encode(images[0], "TIFF", save_all=True, append_images=images[1:])


# --------------------------------------------------------------------------- bombs


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_from_chunks(ihdr: bytes, idat: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG (under 1 kB) whose IHDR declares ``width`` x ``height`` 8-bit greyscale pixels.

    The IDAT is a zlib stream of just a few rows of zeros: valid as far as it goes, with
    correct CRCs, so only a pixel limit enforced before decoding can stop it.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 2, 9)
    return _png_from_chunks(ihdr, idat)


def gif_bomb(width: int = 65_535, height: int = 65_535) -> bytes:
    """A GIF whose logical screen is ``width`` x ``height`` but holds one 1x1 frame."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # 2-colour global table
    palette = b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
    data = b"\x02\x02\x44\x01\x00"  # LZW min code size 2; one tiny sub-block; terminator
    return header + palette + descriptor + data + b";"


def gif_frame_bomb(width: int = 65_535, height: int = 65_535) -> bytes:
    """A GIF with a 1x1 logical screen whose first frame claims ``width`` x ``height``
    (Pillow grows the canvas to fit the frame while parsing the header)."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0)
    palette = b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    data = b"\x02\x02\x44\x01\x00"
    return header + palette + descriptor + data + b";"


def tiff_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A real 8x8 little-endian TIFF whose ImageWidth/ImageLength tags are patched."""
    data = bytearray(encode(Image.new("L", (8, 8), 1), "TIFF"))
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            struct.pack_into("<HHII", data, entry, tag, 4, 1, value)  # as LONG
    return bytes(data)


def jpeg_header_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A real JPEG whose SOF0 frame size is patched to ``width`` x ``height``."""
    data = bytearray(encode(Image.new("L", (8, 8), 128), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


# --------------------------------------------------------------------------- damage


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    return data[: int(len(data) * fraction)]


def flipped_bytes(data: bytes, start_fraction: float = 0.6, count: int = 64) -> bytes:
    """Overwrite ``count`` bytes in the middle with 0xFF 0xD9 (an early JPEG end marker) etc."""
    out = bytearray(data)
    start = int(len(out) * start_fraction)
    out[start : start + count] = (b"\xff\xd9" * count)[:count]
    return bytes(out)


# --------------------------------------------------------------------------- not images


def random_bytes(n: int = 4096, seed: int = 7) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    # Make sure no accepted or known signature appears by chance.
    return b"\x13\x37" + data[2:]


def pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def zip_archive(names: tuple[str, ...] = ("photo.jpg",)) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in names:
            zf.writestr(name, b"not really")
    return out.getvalue()


def docx() -> bytes:
    return zip_archive(("[Content_Types].xml", "word/document.xml"))


def html() -> bytes:
    return (
        b"<!DOCTYPE html>\n<html><head><title>hi</title></head>"
        b"<body><img src=x onerror=alert(1)></body></html>"
    )


def svg() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script>'
        b'<rect width="10" height="10"/></svg>'
    )


def text() -> bytes:
    return "Just some notes saved as photo.jpg — naïve café.\nSecond line.\n".encode()


def heic_header() -> bytes:
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64


def avif_header() -> bytes:
    return b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64


def elf() -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\x00" * 120


def windows_exe() -> bytes:
    return b"MZ\x90\x00\x03" + b"\x00" * 120
