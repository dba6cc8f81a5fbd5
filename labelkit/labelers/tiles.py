"""A second, tiled detector pass for crowds and small things (issue 26).

The detector sees the whole photo squashed to 300 x 300, so a person 40 px tall in a 1,000 px
crowd photo is 12 px to it, and most of a crowd goes unboxed. When the whole-photo pass finds
a crowd or small things (:func:`needs_tiles`), the photo is decoded again larger and the
detector runs on :data:`GRID` x :data:`GRID` overlapping tiles (each :data:`SHARE` of the
width and height: 20% overlap, so anything up to a fifth of the photo wide fits whole in one
tile); their detections are mapped back and merged with the whole-photo ones
(:func:`merge`). Photos without a crowd or small things cost nothing more.

Merging, per class, best score first: a box is dropped when it overlaps a kept one at
IoU >= :data:`MERGE_IOU`, or when one of the two is a tile's and lies mostly inside the other
(:data:`CONTAINED` of the smaller box's area: a tile's view of part of a large object). A
tile's box that touches one of the tile's inner edges is dropped before that (the object is
cut; the whole pass or a neighbouring tile has it whole).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from labelkit.domain import BoundingBox
from labelkit.labelers.detect import MAX_DETECTIONS, SIZE, Detection, intersection

#: The whole-photo pass's finds that call for tiles: this many persons, or this many small
#: detections (each under SMALL_AREA of the photo), at the detector's own floor score.
PERSONS = 4
SMALL = 3
SMALL_AREA = 0.01
GRID = 2
SHARE = 0.6
MERGE_IOU = 0.5
CONTAINED = 0.7
#: The longer side the photo is decoded at for tiling (each tile then has >= 300 px).
TILE_SOURCE_SIDE = 1000
#: How close to a tile's inner edge a box must come to count as cut (share of the tile).
EDGE = 0.01

Window = tuple[float, float, float, float]  # left, top, width, height (shares of the photo)


def needs_tiles(detections: Sequence[Detection]) -> bool:
    """Whether the whole-photo pass found a crowd or small things."""
    persons = sum(d.name == "person" for d in detections)
    small = sum(d.area < SMALL_AREA for d in detections)
    return persons >= PERSONS or small >= SMALL


def windows(grid: int = GRID, share: float = SHARE) -> list[Window]:
    """The tiles, row by row: ``grid`` x ``grid`` of ``share`` each, spread edge to edge."""
    step = (1.0 - share) / (grid - 1) if grid > 1 else 0.0
    return [(c * step, r * step, share, share) for r in range(grid) for c in range(grid)]


def crops(rgb: Image.Image, tiles: Sequence[Window]) -> list[np.ndarray]:
    """Each tile of ``rgb`` squashed to the detector's 300 x 300 input."""
    w, h = rgb.size
    out = []
    for left, top, width, height in tiles:
        box = (round(left * w), round(top * h), round((left + width) * w), round((top + height) * h))
        tile = rgb.crop(box).resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        out.append(np.asarray(tile, dtype=np.uint8))
    return out


def _cut(box: BoundingBox, tile: Window) -> bool:
    """Whether a box (in tile fractions) touches an inner edge of its tile."""
    left, top, width, height = tile
    inner_left, inner_top = left > 0, top > 0
    inner_right, inner_bottom = left + width < 1 - 1e-9, top + height < 1 - 1e-9
    return (
        (inner_left and box.left <= EDGE)
        or (inner_top and box.top <= EDGE)
        or (inner_right and box.left + box.width >= 1 - EDGE)
        or (inner_bottom and box.top + box.height >= 1 - EDGE)
    )


def to_photo(d: Detection, tile: Window) -> Detection:
    """A tile's detection in the photo's fractions."""
    left, top, width, height = tile
    b = d.box
    box = BoundingBox.clamped(left + b.left * width, top + b.top * height, b.width * width, b.height * height)
    return Detection(name=d.name, score=d.score, box=box)


def _overlaps(a: BoundingBox, b: BoundingBox) -> tuple[float, float]:
    """(IoU, intersection over the smaller box's area)."""
    inter = intersection(a, b)
    area_a, area_b = a.width * a.height, b.width * b.height
    union = area_a + area_b - inter
    smaller = min(area_a, area_b)
    return (inter / union if union > 0 else 0.0, inter / smaller if smaller > 0 else 0.0)


def merge(
    whole: Sequence[Detection], tiled: Sequence[Sequence[Detection]], tiles: Sequence[Window]
) -> list[Detection]:
    """The whole-photo detections and the tiles' (in tile fractions), merged; best first."""
    candidates = [(d, False) for d in whole]
    for found, tile in zip(tiled, tiles, strict=True):
        candidates += [(to_photo(d, tile), True) for d in found if not _cut(d.box, tile)]
    candidates.sort(key=lambda c: -c[0].score)  # stable: the whole pass first on ties
    kept: list[tuple[Detection, bool]] = []
    for d, from_tile in candidates:
        if not any(_same(k, k_tile, d, from_tile) for k, k_tile in kept):
            kept.append((d, from_tile))
    return [d for d, _ in kept[:MAX_DETECTIONS]]


def _same(kept: Detection, kept_tile: bool, d: Detection, from_tile: bool) -> bool:
    """Whether ``d`` is ``kept`` seen again: the same class at IoU >= MERGE_IOU, or a tile's
    box mostly inside a whole-photo box (part of a large object; two people one in front of
    the other, both from the whole pass, stay two)."""
    if kept.name != d.name:
        return False
    iou_, within = _overlaps(kept.box, d.box)
    return iou_ >= MERGE_IOU or (from_tile != kept_tile and within >= CONTAINED)
