"""What some bytes are: the accepted formats, sniffed from magic bytes, and a sentence
naming anything else (check 3 of the order in :mod:`labelkit.images`)."""

from __future__ import annotations

import struct
from typing import Final

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

#: The refusal for bytes that cannot be read as the image they start like; every later
#: check (header, structure walk, decode) refuses damaged files with the same sentence.
_DAMAGED: Final = "The image is damaged or truncated and cannot be read."


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
