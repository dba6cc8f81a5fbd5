"""The tiled detector pass (issue 26 item 4): when it runs, and how tiles' boxes merge."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labelkit.domain import BoundingBox
from labelkit.labelers.detect import SIZE, Detection
from labelkit.labelers.tiles import crops, merge, needs_tiles, to_photo, windows


def _d(name: str, score: float, left: float, top: float, width: float, height: float) -> Detection:
    return Detection(name=name, score=score, box=BoundingBox(left=left, top=top, width=width, height=height))


def test_tiles_run_for_a_crowd_or_small_things_only() -> None:
    big_person = _d("person", 0.9, 0.1, 0.1, 0.5, 0.8)
    assert not needs_tiles([big_person, _d("dog", 0.8, 0.5, 0.5, 0.3, 0.3)])
    assert needs_tiles([_d("person", 0.5, 0.1 * i, 0.4, 0.08, 0.3) for i in range(4)])
    assert needs_tiles([big_person] + [_d("cup", 0.4, 0.1 * i, 0.8, 0.05, 0.05) for i in range(3)])
    assert not needs_tiles([])


def test_four_overlapping_tiles_cover_the_photo() -> None:
    grid = windows()
    assert grid == [(0.0, 0.0, 0.6, 0.6), (0.4, 0.0, 0.6, 0.6), (0.0, 0.4, 0.6, 0.6), (0.4, 0.4, 0.6, 0.6)]
    rgb = Image.fromarray(np.arange(800 * 600 * 3, dtype=np.uint32).reshape(600, 800, 3).astype(np.uint8))
    tiles = crops(rgb, grid)
    assert [t.shape for t in tiles] == [(SIZE, SIZE, 3)] * 4 and all(t.dtype == np.uint8 for t in tiles)


def test_a_tiles_box_is_mapped_back_to_the_photo() -> None:
    d = to_photo(_d("person", 0.7, 0.5, 0.5, 0.25, 0.5), (0.4, 0.4, 0.6, 0.6))
    assert (d.box.left, d.box.top, d.box.width, d.box.height) == pytest.approx((0.7, 0.7, 0.15, 0.3))


def test_merging_keeps_new_people_and_drops_the_same_ones_seen_again() -> None:
    whole = [_d("person", 0.9, 0.05, 0.05, 0.1, 0.2)]
    grid = windows()
    tiled = [
        [
            # the same person, seen by the top-left tile (box in tile fractions): dropped
            _d("person", 0.8, 0.05 / 0.6, 0.05 / 0.6, 0.1 / 0.6, 0.2 / 0.6),
            # a person the whole pass missed, where the two top tiles overlap: kept
            _d("person", 0.6, 0.75, 0.1, 0.1, 0.3),
            # cut by the tile's right edge (an inner edge): dropped
            _d("person", 0.7, 0.9, 0.5, 0.1, 0.3),
        ],
        # the top-right tile sees the missed person again, at a lower score: dropped
        [_d("person", 0.5, 0.05 / 0.6, 0.1, 0.1, 0.3)],
        [],
        # a cup by the photo's own right and bottom edges (outer edges): kept
        [_d("cup", 0.5, 0.9, 0.9, 0.1, 0.1)],
    ]
    merged = merge(whole, tiled, grid)
    people = [d for d in merged if d.name == "person"]
    assert len(people) == 2
    assert people[0] == whole[0]
    assert people[1].box.left == pytest.approx(0.45) and people[1].score == 0.6
    assert [d.name for d in merged].count("cup") == 1
    assert [d.score for d in merged] == sorted((d.score for d in merged), reverse=True)


def test_a_tiles_view_of_part_of_a_large_object_is_dropped_but_two_whole_pass_boxes_stay() -> None:
    bus = _d("bus", 0.9, 0.0, 0.2, 0.9, 0.6)
    grid = windows()
    # a wheel-sized "bus" inside the big one, from the bottom-left tile, not at its inner edges
    part = _d("bus", 0.6, 0.2, 0.2, 0.3, 0.3)
    assert merge([bus], [[], [], [part], []], grid) == [bus]
    # two whole-pass people, one in front of the other, are not merged by containment
    adult, child = _d("person", 0.9, 0.2, 0.1, 0.4, 0.9), _d("person", 0.8, 0.3, 0.5, 0.2, 0.45)
    assert merge([adult, child], [[], [], [], []], grid) == [adult, child]
