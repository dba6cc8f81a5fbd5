"""Image intake: every bad input is refused with a sentence a person understands, every
odd-but-valid image is accepted with the right facts, and decoding is fast and correct.

All inputs are generated in memory (see ``labelkit/testing/photos.py``); no network.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFile

from labelkit import images
from labelkit.errors import IntakeError
from labelkit.images import (
    ImageInfo,
    decode,
    decode_rgb,
    describe_unknown,
    inspect_image,
    make_thumbnail,
    sniff_format,
    walks,
)
from labelkit.settings import get_settings
from labelkit.testing import photos as f
from tests.support import bombs

MB = 1024 * 1024
LIMITS = {"max_bytes": 20 * MB, "max_pixels": 50_000_000}


def refuse(data: bytes, **limits: int) -> str:
    """The reason inspect_image gives for refusing ``data`` (fails if it is accepted)."""
    with pytest.raises(IntakeError) as caught:
        inspect_image(data, **{**LIMITS, **limits})
    reason = caught.value.reason
    assert reason and reason[0].isupper() and reason.endswith("."), reason
    assert "Traceback" not in reason and "PIL" not in reason
    return reason


# --------------------------------------------------------------------------- the bad corpus

BAD_CORPUS: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty", lambda: b"", "empty"),
    ("random bytes", f.random_bytes, "not recognised"),
    ("text named .jpg", f.text, "plain text"),
    ("html", f.html, "web page"),
    ("svg", f.svg, "SVG"),
    ("pdf", f.pdf, "PDF"),
    ("zip", f.zip_archive, "ZIP"),
    ("docx", f.docx, "Word"),
    ("heic", f.heic_header, "HEIC"),
    ("avif", f.avif_header, "AVIF"),
    ("elf executable", f.elf, "executable"),
    ("windows executable", f.windows_exe, "executable"),
    ("truncated jpeg", lambda: f.truncated(f.jpeg(640, 427)), "damaged or truncated"),
    ("truncated progressive jpeg", lambda: f.truncated(f.jpeg(640, 427, progressive=True)), "damaged"),
    ("truncated png", lambda: f.truncated(f.png(200, 150)), "damaged or truncated"),
    ("truncated gif", lambda: f.truncated(f.animated_gif(), 0.4), "damaged"),
    ("truncated webp", lambda: f.truncated(f.encode(f.photo(64, 48), "WEBP")), "damaged"),
    ("truncated tiff", lambda: f.truncated(f.encode(f.photo(64, 48), "TIFF")), "damaged"),
    ("jpeg header only", lambda: f.jpeg(64, 48)[:300], "damaged"),
    ("png signature only", lambda: b"\x89PNG\r\n\x1a\n", "damaged"),
    ("png bomb 100000x100000", f.png_bomb, "100000 × 100000"),
    ("gif bomb 65535x65535", f.gif_bomb, "65535 × 65535"),
    ("jpeg header bomb", f.jpeg_header_bomb, "60000 × 60000"),
    ("gif frame bomb over pillow's hard limit", f.gif_frame_bomb, "too many pixels"),
    ("gif frame bomb in pillow's warning band", lambda: f.gif_frame_bomb(10_000, 10_000), "10000 × 10000"),
    ("png bomb in pillow's warning band", lambda: f.png_bomb(10_000, 10_000), "10000 × 10000"),
    ("tiff bomb", f.tiff_bomb, "60000 × 60000"),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in BAD_CORPUS], ids=[c[0] for c in BAD_CORPUS])
def test_bad_input_is_refused_with_a_clear_reason(make: Callable[[], bytes], expected: str) -> None:
    # GIVEN bytes that are not an acceptable image
    data = make()
    # WHEN intake inspects them THEN it refuses with a reason naming the problem,
    # and no Pillow warning leaks out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reason = refuse(data)
    assert expected in reason


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in BAD_CORPUS], ids=[c[0] for c in BAD_CORPUS])
def test_decoders_refuse_the_bad_corpus_too(make: Callable[[], bytes], expected: str) -> None:
    # The worker calls decode_rgb / make_thumbnail on fetched bytes directly.
    data = make()
    with pytest.raises(IntakeError, match=expected):
        decode_rgb(data, max_pixels=LIMITS["max_pixels"], min_side=260)
    with pytest.raises(IntakeError, match=expected):
        make_thumbnail(data, max_pixels=LIMITS["max_pixels"])


def test_bomb_message_names_dimensions_and_limit() -> None:
    reason = refuse(f.png_bomb(100_000, 100_000))
    assert reason == "Image has too many pixels: 100000 × 100000 (the limit is 50 megapixels)."


def test_bombs_are_refused_before_any_pixel_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a PNG declaring 100000 x 100000 pixels (10 GB if decoded) in under 1 kB
    bomb = f.png_bomb()
    assert len(bomb) < 1024

    def no_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("a bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    # WHEN inspected THEN it is refused from its header: nothing is allocated or decoded
    assert "too many pixels" in refuse(bomb)


def test_pixel_limit_is_the_callers_not_pillows() -> None:
    # 640 x 427 = 273 280 pixels: refused under a 0.2 MP limit, accepted over it,
    # whatever Pillow's own process-wide MAX_IMAGE_PIXELS says (it is left alone).
    before = Image.MAX_IMAGE_PIXELS
    data = f.jpeg(640, 427)
    assert "640 × 427 (the limit is 0.2 megapixels)" in refuse(data, max_pixels=200_000)
    assert inspect_image(data, max_bytes=MB, max_pixels=300_000).width == 640
    assert Image.MAX_IMAGE_PIXELS == before


def test_oversize_file_is_refused_before_parsing() -> None:
    # GIVEN 25.3 MB of junk (not even an image) WHEN the limit is 20 MB
    data = b"\xff\xd8\xff" + b"\x00" * int(25.3 * MB)
    # THEN size is reported, not type: the size check comes before any parsing
    assert refuse(data) == "File is too big: 26,528,975 bytes; the limit is 20,971,520 bytes (20 MiB)."


def test_a_file_one_byte_over_the_limit_says_so_in_exact_bytes() -> None:
    # (issue 24, item 9) GIVEN the default limit, 20 MiB, and a file one byte over it
    data = b"\xff\xd8\xff" + b"\x00" * (20 * MB - 2)
    assert len(data) == 20 * MB + 1
    # THEN both sizes are exact, so they differ where rounding to "20.0 MB" made them look equal
    assert refuse(data) == "File is too big: 20,971,521 bytes; the limit is 20,971,520 bytes (20 MiB)."
    # AND a limit that is not a whole number of MiB, or under one MiB, is named as it is
    assert refuse(data, max_bytes=5_000_000).endswith("the limit is 5,000,000 bytes (4.8 MiB).")
    assert refuse(data, max_bytes=512 * 1024).endswith("the limit is 524,288 bytes (512 KiB).")


def test_size_limit_is_inclusive() -> None:
    data = f.png(8, 8)
    assert inspect_image(data, max_bytes=len(data), max_pixels=100).size_bytes == len(data)
    assert "too big" in refuse(data, max_bytes=len(data) - 1)


def test_empty_file_message() -> None:
    assert refuse(b"") == "The file is empty."


def test_truncation_is_detected_with_default_pillow_settings() -> None:
    # The fast 1/8-scale JPEG check relies on Pillow refusing truncated data.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    big = f.big_jpeg()
    for fraction in (0.3, 0.9, 0.99):
        assert "truncated" in refuse(f.truncated(big, fraction))


def test_corrupt_png_crc_is_refused() -> None:
    data = bytearray(f.png(40, 30))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    assert "damaged" in refuse(bytes(data))


# --------------------------------------------------------------------------- broken PNGs that look whole
# (issue 15, item 11: accepted at upload, then failed or mislabelled in the worker)


def test_png_with_good_crcs_and_a_broken_deflate_stream_is_refused_at_intake() -> None:
    # GIVEN a PNG whose chunk CRCs are right but whose compressed pixels are corrupt
    data = bombs.corrupt_deflate_png()
    # WHEN intake inspects it THEN it is refused, as the worker's decode refuses it: an
    # EXIF probe no longer decodes first and swallows the error
    assert refuse(data) == "The image is damaged or truncated and cannot be read."
    with pytest.raises(IntakeError, match="damaged"):
        decode_rgb(data, max_pixels=LIMITS["max_pixels"], min_side=64)


def test_a_failed_decode_cannot_be_followed_by_a_successful_one() -> None:
    # Pillow empties its tile list when a load starts; after a failed load, load() again
    # "succeeds" with whatever was decoded. The verification decode refuses such an image.
    im = decode._open(bombs.corrupt_deflate_png(), "PNG", 10_000_000)
    with pytest.raises(OSError):
        im.load()
    im.load()  # Pillow: fine now
    with pytest.raises(IntakeError, match="damaged"):
        decode._load(im, "PNG", 10_000_000)


@pytest.mark.parametrize("call", ["inspect", "decode", "thumbnail"])
def test_png_missing_most_of_its_rows_is_refused_as_incomplete(call: str) -> None:
    # GIVEN a 200 x 1000 PNG whose zlib stream ends cleanly after 100 rows (Pillow loads
    # it, the rest black)
    data = bombs.partial_png(rows=100)
    reason = "The image is incomplete: its pixel data stops at 10 % of the picture, so it cannot be read."
    # WHEN intake, the labeller's decode or a thumbnail meets it THEN it is refused as incomplete
    with pytest.raises(IntakeError) as caught:
        if call == "inspect":
            inspect_image(data, **LIMITS)
        elif call == "decode":
            decode_rgb(data, max_pixels=LIMITS["max_pixels"], min_side=64)
        else:
            make_thumbnail(data, max_pixels=LIMITS["max_pixels"])
    assert caught.value.reason == reason


def test_row_counting_follows_adam7_interlacing() -> None:
    # GIVEN a complete interlaced PNG (every pass of its 7) and the same with its last
    # pass cut short, the zlib stream still ending cleanly
    # THEN the first is accepted and the second refused as incomplete
    assert inspect_image(bombs.interlaced_png(9, 9), **LIMITS).width == 9
    assert "incomplete" in refuse(bombs.interlaced_png(9, 9, missing=20))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: bombs.text_chunk_bomb(b"zTXt"), "embedded text is too large: a compressed text chunk"),
        (lambda: bombs.text_chunk_bomb(b"iTXt"), "embedded text is too large: a compressed text chunk"),
        (lambda: bombs.text_chunk_bomb(b"iCCP"), "colour profile is too large"),
        (bombs.many_text_chunks_png, "embedded text is too large: more than 64 MB in all"),
    ],
    ids=["zTXt 50 MB", "iTXt 50 MB", "iCCP 50 MB", "70 zTXt of 1 MB"],
)
def test_text_chunk_bombs_are_refused_as_too_large_not_damaged(
    make: Callable[[], bytes], expected: str
) -> None:
    # GIVEN a 50 kB PNG whose compressed text (or colour profile) inflates to 50 MB
    # WHEN inspected THEN the reason says what is wrong: too much text, not a damaged file
    reason = refuse(make())
    assert expected in reason and "damaged" not in reason


def test_png_with_too_many_chunks_is_refused() -> None:
    assert "too many chunks" in refuse(bombs.many_chunks_png(150_000))
    assert inspect_image(bombs.many_chunks_png(5_000), **LIMITS).width == 16


# --------------------------------------------------------------------------- the JPEG marker walk


def test_marker_walk_counts_the_scans_of_real_jpegs() -> None:
    assert walks._walk_jpeg(f.jpeg(64, 48)).scans == 1
    colour = walks._walk_jpeg(f.jpeg(64, 48, progressive=True))
    grey = walks._walk_jpeg(f.encode(f.photo(64, 48).convert("L"), "JPEG", progressive=True))
    assert (colour.scans, grey.scans) == (10, 6)  # libjpeg's default progressive scripts
    assert colour.progressive and colour.coefficient_bytes > 0
    assert walks._walk_jpeg(f.jpeg(64, 48)).coefficient_bytes == 0  # baseline streams rows


def test_marker_walk_limits() -> None:
    # The most scans and segments allowed pass; one more does not.
    allowed = bombs.progressive_scan_bomb(side=64, repeats=walks.MAX_JPEG_SCANS - 6)
    assert bombs.scans_in(allowed) == walks.MAX_JPEG_SCANS
    assert inspect_image(allowed, **LIMITS).width == 64
    assert "too many progressive scans" in refuse(bombs.progressive_scan_bomb(side=64, repeats=95))
    # Issue 25: under the scan cap but big (80 scans of 7000 x 7000 cost 8 s to decode): scans
    # times pixels is what a decode costs, and what is limited; a real 50 MP progressive photo
    # (10 scans) passes.
    big = bombs.progressive_scan_bomb(side=7000, repeats=80 - 6)
    assert bombs.scans_in(big) == 80
    reason = refuse(big)
    assert "scans over 7,000 × 7,000 pixels" in reason and "too long" in reason
    ten = walks._walk_jpeg(bombs.progressive_scan_bomb(side=7000, repeats=0))
    assert ten.scans * 7000 * 7000 <= walks.MAX_JPEG_SCAN_PIXELS  # libjpeg's own 6 scans (grey)
    segments = walks.MAX_JPEG_SEGMENTS - walks._walk_jpeg(bombs.app_segment_bomb(0)).segments
    assert inspect_image(bombs.app_segment_bomb(segments), **LIMITS).width == 8
    assert "too many segments" in refuse(bombs.app_segment_bomb(segments + 1))


def test_marker_walk_tolerates_stray_bytes_and_fill_like_libjpeg() -> None:
    good = f.jpeg(64, 48)
    # a few junk bytes between two segments, and 0xFF fill bytes before a marker
    second = good.index(b"\xff", 2 + 2 + int.from_bytes(good[4:6], "big"))
    assert inspect_image(good[:second] + b"junk" + good[second:], **LIMITS).width == 64
    assert inspect_image(good[:second] + b"\xff" * 100 + good[second:], **LIMITS).width == 64
    # but not a megabyte of junk (Pillow would walk it a byte at a time)
    assert "damaged" in refuse(good[:second] + b"\x00" * (1 << 20) + good[second:])


# --------------------------------------------------------------------------- shrink before converting


def _composite_then_reduce(im: Image.Image, factor: int) -> np.ndarray:
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB").reduce(factor), dtype=int)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P"])
def test_shrinking_by_strips_equals_converting_at_full_size(mode: str) -> None:
    # GIVEN an image with transparency (random alpha), 1,000 x 3,000 (several strips)
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 256, (3000, 1000, 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        im = rgba.convert("RGB").quantize(64)
        im.info["transparency"] = 5
    else:
        im = rgba.convert(mode) if mode != "PA" else rgba.convert("RGB").quantize(64).convert("PA")
    # WHEN shrunk by 7 a strip at a time THEN it matches compositing the whole image first
    fast = np.asarray(decode._shrink_to_rgb(im, 7), dtype=int)
    slow = _composite_then_reduce(im, 7)
    assert fast.shape == slow.shape == (429, 143, 3)
    assert np.abs(fast - slow).max() <= 1


def test_float_and_sixteen_bit_images_are_shrunk_in_their_own_mode() -> None:
    ramp = np.tile(np.linspace(-5.0, 5.0, 800, dtype=np.float32), (600, 1))
    ramp[0, 0] = np.nan  # non-finite values neither poison the range nor crash
    grey = np.asarray(decode._shrink_to_rgb(Image.fromarray(ramp, "F"), 4))[..., 0]
    assert grey.shape == (150, 200) and grey[1, 1] <= 2 and grey[1, -1] >= 253
    wide = np.tile(np.linspace(0, 65535, 800).astype(np.uint16), (600, 1))
    grey16 = np.asarray(decode._shrink_to_rgb(Image.fromarray(wide), 4))[..., 0]
    assert grey16.shape == (150, 200) and grey16[0, 0] == 0 and grey16[0, -1] >= 254


# --------------------------------------------------------------------------- accepted inputs

GOOD_CORPUS: list[tuple[str, Callable[[], bytes], str, tuple[int, int], int]] = [
    ("jpeg", lambda: f.jpeg(640, 427), "JPEG", (640, 427), 1),
    ("1x1 png", lambda: f.encode(Image.new("RGB", (1, 1), "red"), "PNG"), "PNG", (1, 1), 1),
    ("1x1 jpeg", lambda: f.encode(Image.new("RGB", (1, 1), "red"), "JPEG"), "JPEG", (1, 1), 1),
    ("100000x1 png", lambda: f.encode(Image.new("L", (100_000, 1), 9), "PNG"), "PNG", (100_000, 1), 1),
    ("1x5000 gif", lambda: f.encode(Image.new("P", (1, 5000), 1), "GIF"), "GIF", (1, 5000), 1),
    ("cmyk jpeg", f.cmyk_jpeg, "JPEG", (120, 80), 1),
    ("16-bit grey png", f.png16_grey, "PNG", (40, 30), 1),
    ("16-bit rgb png", f.png16_rgb_raw, "PNG", (8, 6), 1),
    ("palette png with transparency", f.palette_png_transparent, "PNG", (20, 10), 1),
    ("LA png", f.la_png, "PNG", (10, 10), 1),
    ("animated gif", f.animated_gif, "GIF", (24, 16), 3),
    ("animated webp", f.animated_webp, "WEBP", (24, 16), 3),
    ("webp", lambda: f.encode(f.photo(64, 48), "WEBP"), "WEBP", (64, 48), 1),
    ("bmp", lambda: f.encode(f.photo(64, 48), "BMP"), "BMP", (64, 48), 1),
    ("tiff", lambda: f.encode(f.photo(64, 48), "TIFF"), "TIFF", (64, 48), 1),
    (
        "compressed tiff",
        lambda: f.encode(f.photo(64, 48), "TIFF", compression="tiff_deflate"),
        "TIFF",
        (64, 48),
        1,
    ),
    ("multi-page tiff", f.multipage_tiff, "TIFF", (32, 24), 2),
    ("exif orientation 6", f.exif_rotated_jpeg, "JPEG", (40, 60), 1),
    ("exif orientation 3", lambda: f.exif_rotated_jpeg(3), "JPEG", (60, 40), 1),
    ("huge exif blob", f.huge_exif_jpeg, "JPEG", (40, 60), 1),
    ("garbage exif", f.broken_exif_jpeg, "JPEG", (60, 40), 1),
    ("png with 4 MB eXIf chunk", f.png_with_big_exif_chunk, "PNG", (16, 16), 1),
    ("progressive jpeg", lambda: f.jpeg(300, 200, progressive=True), "JPEG", (300, 200), 1),
    ("grey jpeg", lambda: f.encode(f.photo(50, 40).convert("L"), "JPEG"), "JPEG", (50, 40), 1),
]


@pytest.mark.parametrize(
    ("make", "fmt", "size", "frames"), [c[1:] for c in GOOD_CORPUS], ids=[c[0] for c in GOOD_CORPUS]
)
def test_valid_images_are_accepted_with_correct_info(
    make: Callable[[], bytes], fmt: str, size: tuple[int, int], frames: int
) -> None:
    data = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = inspect_image(data, **LIMITS)
    assert (info.format, (info.width, info.height), info.frames) == (fmt, size, frames)
    assert info.size_bytes == len(data)
    assert len(info.sha256) == 64
    assert info.content_type == "image/" + fmt.lower()
    assert info.extension == {"JPEG": ".jpg", "TIFF": ".tiff"}.get(fmt, "." + fmt.lower())
    # The decoders accept it too, and always give 8-bit RGB as displayed.
    rgb = decode_rgb(data, max_pixels=LIMITS["max_pixels"])
    assert rgb.mode == "RGB" and rgb.size == size
    thumb = Image.open(io.BytesIO(make_thumbnail(data, max_pixels=LIMITS["max_pixels"], size=32)))
    assert thumb.format == "JPEG" and max(thumb.size) == min(32, max(size))


def test_image_info_is_frozen_and_describes_itself() -> None:
    info = inspect_image(f.animated_gif(), **LIMITS)
    assert isinstance(info, ImageInfo) and info.animated
    with pytest.raises(AttributeError):
        info.width = 1  # type: ignore[misc]


def test_sha256_matches_hashlib() -> None:
    import hashlib

    data = f.png(8, 8)
    assert inspect_image(data, **LIMITS).sha256 == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- conversions


def test_exif_rotated_jpeg_is_decoded_upright() -> None:
    # GIVEN a 60x40 image, red block top-left, stored with orientation 6 (rotate 90° CW)
    data = f.exif_rotated_jpeg(6)
    # WHEN decoded
    rgb = np.asarray(decode_rgb(data, max_pixels=10_000))
    # THEN it is 40 wide, 60 tall, and the red block is now top-RIGHT
    assert rgb.shape == (60, 40, 3)
    top_right, top_left = rgb[3, 36], rgb[3, 3]
    assert top_right[0] > 200 and top_right[1] < 60
    assert top_left.min() > 200


def test_exif_rotation_applies_to_thumbnails() -> None:
    thumb = Image.open(io.BytesIO(make_thumbnail(f.exif_rotated_jpeg(6), size=30, max_pixels=10_000)))
    assert thumb.size == (20, 30)
    assert not thumb.getexif()  # no metadata copied (no GPS in thumbnails)


def test_palette_transparency_is_composited_on_white() -> None:
    rgb = np.asarray(decode_rgb(f.palette_png_transparent(), max_pixels=1000))
    assert tuple(rgb[5, 2]) == (255, 255, 255)  # transparent half
    assert tuple(rgb[5, 15]) == (0, 0, 255)  # opaque blue half


def test_rgba_alpha_is_composited_on_white() -> None:
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    im.putpixel((0, 0), (255, 0, 0, 255))
    rgb = decode_rgb(f.encode(im, "PNG"), max_pixels=100)
    assert rgb.getpixel((0, 0)) == (255, 0, 0) and rgb.getpixel((3, 3)) == (255, 255, 255)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    rgb = np.asarray(decode_rgb(f.png16_grey(), max_pixels=10_000))
    row = rgb[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert 100 < row[len(row) // 2] < 155  # mid-grey, not white


def test_cmyk_jpeg_colours_are_sensible() -> None:
    # china.jpg is mostly sky and buildings; a broken (inverted) CMYK conversion would
    # give a negative image. Compare with the RGB original.
    original = np.asarray(f.photo(120, 80, noise=0), dtype=np.float32)
    rgb = np.asarray(decode_rgb(f.cmyk_jpeg(), max_pixels=100_000), dtype=np.float32)
    assert np.abs(rgb - original).mean() < 20


def test_animated_gif_gives_its_first_frame() -> None:
    rgb = decode_rgb(f.animated_gif(), max_pixels=10_000)
    assert rgb.getpixel((5, 5)) == (255, 0, 0)


# --------------------------------------------------------------------------- speed paths


def test_decode_rgb_uses_jpeg_draft_for_min_side() -> None:
    # GIVEN a 4000x3000 JPEG WHEN decoded for a model needing 260 px
    rgb = decode_rgb(f.big_jpeg(), max_pixels=50_000_000, min_side=260)
    # THEN the shorter side suffices but the image came from a 1/8-scale DCT decode
    assert 260 <= min(rgb.size) < 3000 // 4
    assert rgb.size == (500, 375)


@pytest.mark.parametrize(
    ("min_side", "expected"), [(1500, (2000, 1500)), (3000, (4000, 3000)), (5000, (4000, 3000))]
)
def test_decode_rgb_min_side_never_goes_below_the_request(min_side: int, expected: tuple[int, int]) -> None:
    assert decode_rgb(f.big_jpeg(), max_pixels=50_000_000, min_side=min_side).size == expected


def test_decode_rgb_reduces_other_formats() -> None:
    data = f.png(1200, 800)
    rgb = decode_rgb(data, max_pixels=10_000_000, min_side=260)
    assert rgb.size == (400, 267) and min(rgb.size) >= 260


def test_decode_rgb_min_side_with_rotation() -> None:
    # Orientation swaps sides; the shorter displayed side still meets the request.
    rgb = decode_rgb(f.exif_rotated_jpeg(6, 1200, 800), max_pixels=10_000_000, min_side=100)
    assert rgb.size == (100, 150)


@pytest.mark.parametrize(("size", "expected"), [(320, (320, 240)), (100, (100, 75)), (4000, (4000, 3000))])
def test_make_thumbnail_sizes(size: int, expected: tuple[int, int]) -> None:
    thumb = Image.open(io.BytesIO(make_thumbnail(f.big_jpeg(), size=size, max_pixels=50_000_000)))
    assert thumb.format == "JPEG" and thumb.mode == "RGB" and thumb.size == expected


def test_thumbnail_of_a_long_strip() -> None:
    data = f.encode(Image.new("L", (100_000, 1), 9), "PNG")
    thumb = Image.open(io.BytesIO(make_thumbnail(data, max_pixels=LIMITS["max_pixels"])))
    assert thumb.size == (320, 1)


def _decoded_jpeg_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the size every JPEG is decoded at (after ``draft`` picked its scale)."""
    from PIL import JpegImagePlugin

    sizes: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.load

    def load(self: JpegImagePlugin.JpegImageFile) -> object:
        sizes.append(self.size)
        return original(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", load)
    return sizes


def test_inspect_big_jpeg_decodes_at_one_eighth_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    # What makes verifying a 12 MP JPEG cheap (~25 ms): libjpeg's 1/8-scale DCT decode, which
    # still reads every byte of the scan. Checked by what is decoded, not by a stopwatch.
    data = f.big_jpeg()
    sizes = _decoded_jpeg_sizes(monkeypatch)
    # In this process (the spy sees the decoder): isolation only moves the same work to a child.
    info = inspect_image(data, **LIMITS, limits=images.DecodeLimits(isolated=False))
    assert (info.width, info.height) == (4000, 3000)
    assert sizes and max(sizes) == (500, 375)


def test_decode_for_model_decodes_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    data = f.big_jpeg()
    sizes = _decoded_jpeg_sizes(monkeypatch)
    rgb = decode_rgb(data, max_pixels=50_000_000, min_side=260, limits=images.DecodeLimits(isolated=False))
    # 1/8 scale keeps the shorter side >= 260 (3000 / 8 = 375): nothing larger is decoded.
    assert sizes and set(sizes) == {(500, 375)}
    assert min(rgb.size) >= 260


# --------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0", "JPEG"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"GIF87a", "GIF"),
        (b"GIF89a", "GIF"),
        (b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00", "BMP"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"BMW is a car brand, not a bitmap", None),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"\xff\xd8", None),
        (b"", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_describe_unknown_names_common_types() -> None:
    assert describe_unknown(b"") == "The file is empty."
    assert "PDF" in describe_unknown(f.pdf())
    assert "Excel" in describe_unknown(f.zip_archive(("xl/workbook.xml",)))
    assert "video" in describe_unknown(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2")
    assert "Photoshop" in describe_unknown(b"8BPS\x00\x01")
    assert "XML" in describe_unknown(b'<?xml version="1.0"?><note/>')
    assert "accepts JPEG, PNG" in describe_unknown(f.random_bytes())
    # UTF-16 text with a BOM is still text
    assert "plain text" in describe_unknown("\ufeffhello world".encode("utf-16-le"))


def _decode_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode here, not in the sandbox's child, so a monkeypatched decoder is the one used."""
    monkeypatch.setenv("LABELKIT_DECODE_ISOLATION", "none")
    get_settings.cache_clear()


def test_unexpected_decoder_errors_are_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a decoder that fails in a way nobody anticipated
    _decode_in_this_process(monkeypatch)

    def boom(_fp: object) -> None:
        raise RuntimeError("decoder bug")

    monkeypatch.setitem(decode._OPENERS, "PNG", boom)
    # THEN people still get the plain sentence, not the internals
    assert refuse(f.png(4, 4)) == "The image is damaged or truncated and cannot be read."


def test_memory_error_is_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    _decode_in_this_process(monkeypatch)

    def oom(_fp: object) -> None:
        raise MemoryError

    monkeypatch.setitem(decode._OPENERS, "PNG", oom)
    assert refuse(f.png(4, 4)) == "The image is too large to decode."
