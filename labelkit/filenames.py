"""File names people gave their uploads, made harmless to show and store."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["safe_display_name"]

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
