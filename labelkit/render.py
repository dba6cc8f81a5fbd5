"""Pictures for people: boxes with their labels drawn on a photo, square gallery crops,
``data:`` URLs and colour swatches. Pure functions over PIL images and bytes, no Streamlit.

Everything here works on JPEGs this process made itself (thumbnails and display copies from
:func:`labelkit.images.make_thumbnail`, which decodes untrusted uploads under its limits);
nothing here decodes an upload.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = [
    "BOX_COLOURS",
    "Box",
    "colour_swatches_html",
    "data_url",
    "draw_boxes",
    "square_crop",
    "with_boxes",
]

BOX_COLOURS = ("#f59e0b", "#10b981", "#3b82f6", "#ef4444", "#8b5cf6", "#ec4899")
TAG_PAD = 3  # pixels between a box's caption and the edge of its tag
_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")


@dataclass(frozen=True, slots=True)
class Box:
    """A box to draw, in fractions of the photo's width and height (as labels store them)."""

    left: float
    top: float
    width: float
    height: float
    caption: str


def draw_boxes(photo: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """A copy of ``photo`` (RGB) with each box outlined in its own colour and its caption on a
    filled tag at its top-left corner. Boxes are clamped to the photo; a tag that would run off
    the right or bottom edge is moved in so the caption stays readable."""
    im = photo.convert("RGB")  # always a copy, even of an RGB image
    draw = ImageDraw.Draw(im)
    w, h = im.size
    line = max(2, round(max(w, h) / 300))
    font = ImageFont.load_default(size=max(12, round(max(w, h) / 60)))
    for i, b in enumerate(boxes):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        x0, y0 = _clamp(b.left * w, w), _clamp(b.top * h, h)
        x1, y1 = _clamp((b.left + b.width) * w, w), _clamp((b.top + b.height) * h, h)
        draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=colour, width=line)
        # textbbox at the origin: the caption's extent and its offset from the anchor.
        tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), b.caption, font=font)
        tag_w, tag_h = (tx1 - tx0) + 2 * TAG_PAD, (ty1 - ty0) + 2 * TAG_PAD
        left = max(0.0, min(x0, w - tag_w))
        top = max(0.0, min(y0, h - tag_h))
        draw.rectangle((left, top, left + tag_w, top + tag_h), fill=colour)
        draw.text((left + TAG_PAD - tx0, top + TAG_PAD - ty0), b.caption, fill="white", font=font)
    return im


def _clamp(value: float, side: int) -> float:
    return min(max(value, 0.0), side - 1.0)


def with_boxes(jpeg: bytes, boxes: Sequence[Box], *, quality: int = 88) -> bytes:
    """``jpeg`` with :func:`draw_boxes` applied, as a JPEG (the same bytes when there are none)."""
    if not boxes:
        return jpeg
    with Image.open(io.BytesIO(jpeg)) as im:
        drawn = draw_boxes(im, boxes)
    return _jpeg(drawn, quality)


def square_crop(jpeg: bytes, *, quality: int = 85) -> bytes:
    """The largest centred square of ``jpeg``, as a JPEG: gallery cards stay even, as photo
    galleries do."""
    with Image.open(io.BytesIO(jpeg)) as im:
        side = min(im.size)
        return _jpeg(ImageOps.fit(im, (side, side)), quality)


def face_crop(
    jpeg: bytes, box: tuple[float, float, float, float], *, side: int = 160, quality: int = 85
) -> bytes:
    """A square crop around a face box (``left, top, width, height``, fractions of the photo),
    with a margin of half the box each side where the photo allows, ``side`` px a side."""
    left, top, width, height = box
    with Image.open(io.BytesIO(jpeg)) as im:
        w, h = im.size
        cx, cy = (left + width / 2) * w, (top + height / 2) * h
        half = max(width * w, height * h, 1.0)
        x0, y0 = max(0, round(cx - half)), max(0, round(cy - half))
        x1, y1 = min(w, round(cx + half)), min(h, round(cy + half))
        crop = ImageOps.fit(im.convert("RGB").crop((x0, y0, max(x0 + 1, x1), max(y0 + 1, y1))), (side, side))
        return _jpeg(crop, quality)


def _jpeg(im: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def data_url(jpeg: bytes | None) -> str | None:
    """JPEG bytes as a ``data:`` URL (None stays None).

    The dashboard hands photos to ``st.image`` this way so they travel only over the
    session's WebSocket: given bytes, Streamlit would serve them at a ``/media/…`` URL that
    answers anyone who has it, signed in or not.
    """
    if jpeg is None:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def colour_swatches_html(colours: Iterable[Mapping[str, Any]]) -> str:
    """The image page's dominant colours (as the labeller reports them: ``hex_code``,
    ``simplified_color``, ``pixel_percent``) as small HTML swatches.

    Only colours whose ``hex_code`` is ``#rrggbb`` are drawn, and every text is escaped, so
    the result is safe to show with ``unsafe_allow_html``. Empty when none is valid.
    """
    parts = []
    for c in colours:
        hex_code = str(c.get("hex_code", ""))
        if not _HEX.match(hex_code):
            continue
        name = html.escape(str(c.get("simplified_color", "")))
        pct = float(c.get("pixel_percent", 0.0))
        parts.append(
            f'<div style="display:inline-block;margin:0 10px 8px 0;text-align:center;font-size:0.8rem">'
            f'<div style="width:56px;height:40px;border-radius:6px;border:1px solid #ddd;'
            f'background:{hex_code}"></div>{html.escape(hex_code)}<br>{name} {pct:.0f}%</div>'
        )
    return "".join(parts)
