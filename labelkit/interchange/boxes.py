"""Boxes inside their image: clamping, and the edge rounding every writer uses."""

from __future__ import annotations

from dataclasses import dataclass

from labelkit.domain import clamp_extent


@dataclass(slots=True)
class BoxEntry:
    """A box as fractions of the image, always inside it (see :func:`clamp_box`)."""

    left: float
    top: float
    width: float
    height: float
    confidence: float


def clamp_box(left: float, top: float, width: float, height: float) -> tuple[float, float, float, float]:
    """``(left, top, width, height)`` fractions moved inside the image: the edges (left and
    right, top and bottom) are clamped to ``[0, 1]`` and the size is what lies between them,
    so ``left + width <= 1`` and nothing is negative."""
    x0, w = clamp_extent(left, width)
    y0, h = clamp_extent(top, height)
    return x0, y0, w, h


def box_edges(box: BoxEntry, width: float, height: float, ndigits: int | None) -> tuple[float, ...]:
    """``(x, y, w, h)`` of ``box`` on a ``width`` x ``height`` image, each rounded to ``ndigits``
    (``None``: whole pixels). The edges are rounded, not the sizes, so ``x + w`` is the rounded
    right edge and never passes ``width`` (rounding left and width apart could: ``0.5 + 0.5``
    of 451 px is 226 + 226)."""

    def r(v: float) -> float:
        return round(v) if ndigits is None else round(v, ndigits)

    left, top, w, h = clamp_box(box.left, box.top, box.width, box.height)
    x0 = r(min(width, left * width))
    y0 = r(min(height, top * height))
    x1 = max(x0, r(min(width, (left + w) * width)))
    y1 = max(y0, r(min(height, (top + h) * height)))
    return x0, y0, r(x1 - x0), r(y1 - y0)
