"""File names people gave their uploads, made harmless to show and store."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["not_a_device_name", "safe_display_name"]

_BIDI_CONTROLS: Final = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u061c"]
)
_JOINERS: Final = frozenset(["\u200d", "\u200c"])
_WHITESPACE: Final = re.compile(r"\s+")
_MAX_EXTENSION: Final = 16
# Names Windows keeps for devices, whatever follows them (``nul.jpg``, ``COM1 .tar.gz``): a file
# of that name cannot be created or unpacked there. COM and LPT also take 0 and the superscript
# digits ¹²³, which Windows matches as well.
_DEVICE_NAMES: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"]
)


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


def not_a_device_name(name: str) -> str:
    """``name`` with ``_`` in front if Windows would take it for a device.

    Windows reserves CON, PRN, AUX, NUL, COM0-9, LPT0-9 (also COM¹²³, LPT¹²³, CONIN$ and
    CONOUT$) in any case, alone or with any extension, and ignores trailing dots and spaces
    before the extension: ``CON.jpg``, ``nul.tar.gz``, ``Com1 .png`` and ``aux.`` are all
    devices, and become ``_CON.jpg``, ``_nul.tar.gz``, ``_Com1 .png``, ``_aux.``. Other
    names (``CONSOLE.jpg``, ``COM10.jpg``, ``my-con.jpg``) are returned as they are. For
    names of files people will unpack (bundles), on top of :func:`safe_display_name` or a
    stricter cleaning.
    """
    base = name.split(".", 1)[0].rstrip(" .")
    return f"_{name}" if base.upper() in _DEVICE_NAMES else name


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
