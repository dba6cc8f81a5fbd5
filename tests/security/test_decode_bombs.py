"""CPU and memory bombs: small files built to make decoding cost minutes or gigabytes.

Each goes through the three ways untrusted bytes are decoded (``inspect_image`` at
upload, ``decode_rgb`` for the labeller, ``make_thumbnail`` for the dashboard). Memory is
measured in a fresh process per call (``tests/support/peak.py``): the caller's own high
water mark and its decoder children's, each against its idle size. The target (issue
15): no single upload makes any process grow more than 600 MB.

Timing is never asserted: the scan bomb is refused by the marker walk before anything is
decoded, and the deadline test uses a decode that costs ~40x its deadline and asserts
only the refusal.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelkit.errors import IntakeError
from labelkit.images import decode_rgb, inspect_image, make_thumbnail
from labelkit.settings import get_settings
from labelkit.testing import photos as f
from tests.support import bombs
from tests.support.peak import measure

MB = 1024 * 1024
MAX_PIXELS = 50_000_000
TARGET_MB = 600  # most any one process may grow for one upload
CALLS = {
    "inspect_image": {"max_bytes": 20 * MB, "max_pixels": MAX_PIXELS},
    "decode_rgb": {"max_pixels": MAX_PIXELS, "min_side": 260},
    "make_thumbnail": {"max_pixels": MAX_PIXELS},
}


def _call(name: str, data: bytes) -> object:
    fn = {"inspect_image": inspect_image, "decode_rgb": decode_rgb, "make_thumbnail": make_thumbnail}[name]
    return fn(data, **CALLS[name])  # type: ignore[operator]


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Decode in this process: no child, so no deadline to hide behind."""
    monkeypatch.setenv("LABELKIT_DECODE_ISOLATION", "none")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# --------------------------------------------------------------------------- CPU


@pytest.mark.parametrize("call", list(CALLS))
def test_progressive_scan_bomb_is_refused_by_the_marker_walk(call: str, in_process: None) -> None:
    # GIVEN a 342 kB progressive JPEG whose last scan is repeated 2,000 times (93 s per decode)
    bomb = bombs.progressive_scan_bomb()
    assert len(bomb) < 400_000 and bombs.scans_in(bomb) > 2000
    # WHEN any decode path meets it, in-process (no deadline)
    with pytest.raises(IntakeError) as caught:
        _call(call, bomb)
    # THEN the marker walk refuses it, counting scans times pixels, before libjpeg sees a byte
    assert "scans over 7,000 × 7,000 pixels" in caught.value.reason


@pytest.mark.parametrize("call", list(CALLS))
def test_app_segment_bomb_is_refused_before_pillow_parses_it(call: str, tmp_path: Path) -> None:
    # GIVEN 20 MB of 5 million empty APP segments in front of an 8x8 JPEG (711 MB, 16 s in Pillow)
    bomb = bombs.app_segment_bomb()
    # WHEN it is decoded (with the default settings) THEN it is refused for its segment count,
    # and no process grew by more than a few MB
    peak = measure(call, bomb, tmp_path, CALLS[call])
    assert not peak.ok and peak.reason and "too many segments" in peak.reason
    assert peak.worst_growth_mb < 100, peak


def test_a_decode_over_its_deadline_is_stopped_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a legal progressive JPEG of 12 scans over 49 megapixels (under the limit of scans
    # times pixels) that takes ~0.5 s to decode, and a 0.1 s deadline
    slow = bombs.progressive_scan_bomb(repeats=6)
    assert bombs.scans_in(slow) == 12
    monkeypatch.setenv("LABELKIT_DECODE_TIMEOUT_SECONDS", "0.1")
    get_settings.cache_clear()
    for call in CALLS:
        # WHEN any decode path runs it THEN the decoder process is killed and the image refused
        with pytest.raises(IntakeError) as caught:
            _call(call, slow)
        assert "takes too long to decode" in caught.value.reason, call
        # AND the next image is decoded by a fresh decoder as usual
        assert inspect_image(f.jpeg(64, 48), **CALLS["inspect_image"]).width == 64  # type: ignore[arg-type]


def test_the_same_slow_image_decodes_within_a_normal_deadline() -> None:
    # The deadline refuses what is slow, not what is progressive: with the default (10 s)
    # the 12-scan file above is an ordinary, if heavy, image.
    slow = bombs.progressive_scan_bomb(repeats=6)
    info = inspect_image(slow, **CALLS["inspect_image"])  # type: ignore[arg-type]
    assert (info.width, info.height) == (7000, 7000)


# --------------------------------------------------------------------------- memory


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["process", "none"])
@pytest.mark.parametrize("call", list(CALLS))
def test_float_tiff_of_49_megapixels_decodes_within_the_memory_target(
    call: str, isolation: str, tmp_path: Path
) -> None:
    # GIVEN a 311 kB 7000 x 7000 float TIFF (1.39 GB peak when it was scaled in float64)
    bomb = bombs.float_tiff()
    assert len(bomb) < 400_000
    # WHEN it is decoded, in a decoder child or in-process
    peak = measure(call, bomb, tmp_path, CALLS[call], env={"LABELKIT_DECODE_ISOLATION": isolation})
    # THEN it is accepted, and no process grew by more than the target
    assert peak.ok, peak.reason
    assert peak.worst_growth_mb < TARGET_MB, peak
    if peak.thumbnail is not None:
        # ... and the picture is right: the top half (0.75) lighter than the bottom (0.25)
        thumb = np.asarray(Image.open(io.BytesIO(peak.thumbnail)).convert("L"), dtype=float)
        assert thumb.shape == (320, 320)
        assert thumb[:150].mean() > 200 and thumb[170:].mean() < 50


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["process", "none"])
@pytest.mark.parametrize("call", list(CALLS))
def test_rgba_png_of_49_megapixels_decodes_within_the_memory_target(
    call: str, isolation: str, tmp_path: Path
) -> None:
    # GIVEN a 208 kB 7000 x 7000 RGBA PNG (975 MB peak when composited on white at full size)
    bomb = bombs.rgba_png()
    assert len(bomb) < 300_000
    # WHEN it is decoded
    peak = measure(call, bomb, tmp_path, CALLS[call], env={"LABELKIT_DECODE_ISOLATION": isolation})
    # THEN it is accepted within the target
    assert peak.ok, peak.reason
    assert peak.worst_growth_mb < TARGET_MB, peak
    if peak.thumbnail is not None:
        # ... red on the left, the transparent right half white
        thumb = np.asarray(Image.open(io.BytesIO(peak.thumbnail)).convert("RGB"), dtype=float)
        left, right = thumb[:, :150].mean(axis=(0, 1)), thumb[:, 170:].mean(axis=(0, 1))
        assert left[0] > 240 and left[1] < 15 and left[2] < 15, left
        assert (right > 240).all(), right


def test_a_decode_over_the_memory_budget_is_refused_before_decoding(tmp_path: Path) -> None:
    # GIVEN a 100 MB decode budget and the 49 MP RGBA PNG (196 MB decoded)
    # WHEN it is inspected THEN it is refused with the figures, before any pixel is decoded
    peak = measure(
        "inspect_image",
        bombs.rgba_png(),
        tmp_path,
        CALLS["inspect_image"],
        env={"LABELKIT_DECODE_MEMORY_MB": "100"},
    )
    assert not peak.ok
    assert peak.reason == (
        "The image is too large to decode: it would need about 187 MB of memory (the limit is 100 MB)."
    )
    assert peak.worst_growth_mb < 60, peak


def test_a_progressive_jpeg_counts_its_coefficient_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    # A progressive JPEG is decoded at 1/8 scale, but libjpeg keeps every scan's DCT
    # coefficients at full size: 4000 x 3000 4:2:0 is 36 MB, whatever the output size.
    data = f.jpeg(4000, 3000, progressive=True, quality=80)
    assert inspect_image(data, **CALLS["inspect_image"]).width == 4000  # type: ignore[arg-type]
    monkeypatch.setenv("LABELKIT_DECODE_MEMORY_MB", "30")
    get_settings.cache_clear()
    with pytest.raises(IntakeError, match=r"about 36 MB of memory \(the limit is 30 MB\)"):
        decode_rgb(data, max_pixels=MAX_PIXELS, min_side=260)
