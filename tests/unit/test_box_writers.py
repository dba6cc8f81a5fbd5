"""Every export writer (CSV, JSON Lines, COCO, manifest) puts every box inside its image.

A property test over arbitrary boxes (edges far outside the image, negative sizes, the
rounding traps of odd pixel sizes) and image sizes. hypothesis is not installed, so it is a
seeded random loop over many cases. Values are read back as written (decimals, not
floats), so "inside" is exact: ``x + w <= width`` in the file's own numbers.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from labelkit import interchange
from labelkit.db.models import Image
from labelkit.interchange import BoxEntry, ImageEntry, LabelEntry

CASES = 400
EDGE_VALUES = [
    -1.5,
    -0.2,
    -1e-9,
    0.0,
    1e-9,
    0.1,
    1 / 3,
    0.5,
    0.5000001,
    2 / 3,
    0.9999999,
    1.0,
    1.0000001,
    1.5,
]


def _image(n: int, width: int, height: int) -> Image:
    return Image(
        id=f"img{n:04d}",
        owner_id="owner",
        object_key=f"users/owner/img{n:04d}.jpg",
        original_name=f"photo {n}.jpg",
        content_type="image/jpeg",
        bytes=1000,
        width=width,
        height=height,
        sha256="0" * 64,
        created_at=datetime(2024, 5, 1, tzinfo=UTC),
    )


def _coordinate(rng: random.Random) -> float:
    return rng.choice(EDGE_VALUES) if rng.random() < 0.3 else rng.uniform(-0.6, 1.6)


def _entries(seed: int) -> list[ImageEntry]:
    rng = random.Random(seed)
    out = []
    for n in range(CASES):
        width = rng.choice([1, 2, 3, 451, 640, 1023, rng.randint(1, 6000)])
        height = rng.choice([1, 2, 3, 451, 480, 997, rng.randint(1, 6000)])
        boxes = [
            BoxEntry(
                left=_coordinate(rng),
                top=_coordinate(rng),
                width=_coordinate(rng),
                height=_coordinate(rng),
                confidence=rng.uniform(0, 100),
            )
            for _ in range(rng.randint(1, 4))
        ]
        label = LabelEntry(
            name=rng.choice(["Cat", "Dog", "Person"]),
            source="model",
            model_version="test-1",
            confidence=rng.uniform(50, 100),
            parents=["Animal"],
            aliases=[],
            categories=[],
            review="unreviewed",
            created_at=datetime(2024, 5, 2, tzinfo=UTC),
            boxes=boxes,
        )
        out.append(ImageEntry(image=_image(n, width, height), owner="alice", labels=[label]))
    return out


def _inside(box: Sequence[Decimal], width: Decimal, height: Decimal) -> bool:
    x, y, w, h = box
    return 0 <= x and 0 <= y and 0 <= w and 0 <= h and x + w <= width and y + h <= height


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_writer_keeps_every_box_inside_its_image(seed: int) -> None:
    # GIVEN images of arbitrary sizes with arbitrary boxes (many outside the image)
    entries = _entries(seed)
    sizes = {e.image.id: (Decimal(e.image.width), Decimal(e.image.height)) for e in entries}
    boxes = sum(len(lab.boxes) for e in entries for lab in e.labels)

    # WHEN each writer writes them, THEN each box it writes lies inside its image
    rows = list(csv.DictReader(io.StringIO(interchange.to_csv(entries).decode())))
    box_rows = [r for r in rows if r["instance"] != "0"]
    assert len(box_rows) == boxes
    for r in box_rows:
        width, height = sizes[r["image_id"]]
        px = [Decimal(r[f"box_{k}_px"]) for k in ("left", "top", "width", "height")]
        unit = [Decimal(r[f"box_{k}"]) for k in ("left", "top", "width", "height")]
        assert _inside(px, width, height), r
        assert _inside(unit, Decimal(1), Decimal(1)), r

    written = 0
    for line in interchange.to_jsonl(entries).decode().splitlines():
        record = json.loads(line, parse_float=Decimal)
        for lab in record["labels"]:
            for b in lab["instances"]:
                assert _inside([b["left"], b["top"], b["width"], b["height"]], Decimal(1), Decimal(1)), b
                written += 1
    assert written == boxes

    coco = json.loads(interchange.to_coco(entries), parse_float=Decimal)
    images = {i["id"]: (Decimal(i["width"]), Decimal(i["height"])) for i in coco["images"]}
    assert len(coco["annotations"]) == boxes
    for a in coco["annotations"]:
        assert _inside([Decimal(v) for v in a["bbox"]], *images[a["image_id"]]), a
        assert a["area"] >= 0

    written = 0
    for line in interchange.to_manifest(entries, storage_url="s3://bucket").decode().splitlines():
        record = json.loads(line)
        size = record["bounding-box"]["image_size"][0]
        for b in record["bounding-box"]["annotations"]:
            assert all(isinstance(b[k], int) for k in ("left", "top", "width", "height")), b
            assert _inside(
                [Decimal(b[k]) for k in ("left", "top", "width", "height")],
                Decimal(size["width"]),
                Decimal(size["height"]),
            ), b
            written += 1
    assert written == boxes


def test_manifest_rounds_edges_not_sizes() -> None:
    # GIVEN the box of the issue: left 0.5, width 0.5 on a 451 px wide image
    box = BoxEntry(left=0.5, top=0.5, width=0.5, height=0.5, confidence=90)
    entry = _entries(0)[0]
    entry.image.width = entry.image.height = 451
    entry.labels[0].boxes = [box]
    # WHEN it is written as a manifest
    record = json.loads(interchange.to_manifest([entry], storage_url="s3://bucket").decode())
    ann = record["bounding-box"]["annotations"][0]
    # THEN it ends on the image's last pixel, not one past it (226 + 226 = 452 before)
    assert ann["left"] + ann["width"] == 451 and ann["top"] + ann["height"] == 451


def test_clamp_box_moves_edges_inside() -> None:
    assert interchange.clamp_box(1.5, 0.2, -0.2, 0.5) == pytest.approx((1.0, 0.2, 0.0, 0.5))
    assert interchange.clamp_box(-0.1, 0.9, 0.4, 0.3) == pytest.approx((0.0, 0.9, 0.3, 0.1))
    assert interchange.clamp_box(float("nan"), 0, float("inf"), 1) == (0.0, 0.0, 0.0, 1.0)
