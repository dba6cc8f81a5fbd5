"""Drawing for people (labelkit.render): boxes with their captions, gallery crops, data URLs and
colour swatches, on plain PIL images, without Streamlit."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from labelkit.render import (
    BOX_COLOURS,
    Box,
    colour_swatches_html,
    data_url,
    draw_boxes,
    square_crop,
    with_boxes,
)

GREY = (128, 128, 128)


def _rgb(hex_code: str) -> tuple[int, int, int]:
    return int(hex_code[1:3], 16), int(hex_code[3:5], 16), int(hex_code[5:7], 16)


def _grey(size: tuple[int, int] = (600, 400)) -> Image.Image:
    return Image.new("RGB", size, GREY)


def _changed(before: Image.Image, after: Image.Image) -> np.ndarray:
    """A mask of the pixels the drawing changed, as rows x columns."""
    return np.any(np.asarray(before) != np.asarray(after), axis=2)


def test_a_box_is_outlined_at_its_place_in_its_colour() -> None:
    # GIVEN a 600 x 400 grey photo and a box from 25% to 75% across and down, no caption
    photo = _grey()
    # WHEN the box is drawn
    out = draw_boxes(photo, [Box(left=0.25, top=0.25, width=0.5, height=0.5, caption="")])
    # THEN its outline runs along x 150..450, y 100..300 in the first colour
    px = np.asarray(out)
    colour = _rgb(BOX_COLOURS[0])
    assert tuple(px[200, 150]) == colour and tuple(px[200, 450]) == colour  # left and right sides
    assert tuple(px[300, 300]) == colour  # the bottom side
    # AND inside and outside the box the photo is untouched
    assert tuple(px[200, 300]) == GREY and tuple(px[350, 300]) == GREY and tuple(px[200, 100]) == GREY
    # AND the photo given is left as it was (a copy is drawn on)
    assert not _changed(_grey(), photo).any()


def test_each_box_has_its_own_colour() -> None:
    boxes = [Box(left=0.1 * i, top=0.1, width=0.05, height=0.5, caption="") for i in range(1, 4)]
    px = np.asarray(draw_boxes(_grey(), boxes))
    # the left side of box i is at x = 60 * i
    assert [tuple(px[200, 60 * i]) for i in range(1, 4)] == [_rgb(c) for c in BOX_COLOURS[:3]]


def test_a_box_past_the_edges_is_clamped_into_the_photo() -> None:
    # GIVEN a box that starts left of and above the photo and ends past its right and bottom
    photo = _grey()
    out = draw_boxes(photo, [Box(left=-0.2, top=-0.1, width=1.5, height=1.4, caption="")])
    # THEN its outline is drawn along the photo's four edges
    px = np.asarray(out)
    colour = _rgb(BOX_COLOURS[0])
    w, h = photo.size
    assert tuple(px[h // 2, 0]) == colour and tuple(px[h // 2, w - 1]) == colour
    assert tuple(px[0, w // 2]) == colour and tuple(px[h - 1, w // 2]) == colour
    # AND the middle is untouched
    assert tuple(px[h // 2, w // 2]) == GREY


def test_the_caption_sits_on_a_tag_at_the_box_corner() -> None:
    # GIVEN a box in the middle of the photo, captioned
    photo = _grey()
    out = draw_boxes(photo, [Box(left=0.25, top=0.25, width=0.5, height=0.5, caption="Cat 97%")])
    px = np.asarray(out)
    colour = _rgb(BOX_COLOURS[0])
    # THEN a filled tag starts at the box's top-left corner (150, 100), inside the box
    assert tuple(px[103, 153]) == colour
    # AND the caption is written on it in white
    tag = px[100:130, 150:300]
    assert (np.all(tag > 200, axis=2)).sum() > 20
    # AND nothing is drawn above or left of the box
    changed = _changed(photo, out)
    assert not changed[:95, :].any() and not changed[:, :145].any()


def test_a_caption_at_the_right_and_bottom_edges_stays_inside_the_photo() -> None:
    # GIVEN a thin box at the bottom-right corner with a long caption
    photo = _grey()
    caption = "A rather long caption 99%"
    out = draw_boxes(photo, [Box(left=0.97, top=0.97, width=0.03, height=0.03, caption=caption)])
    # THEN the tag was moved in: it reaches the right and bottom edges and starts well left of
    # the box, so the whole caption is on the photo
    changed = _changed(photo, out)
    rows, cols = np.nonzero(changed)
    assert cols.max() == photo.width - 1 and rows.max() == photo.height - 1
    assert cols.min() < 0.97 * photo.width - 100
    # AND the caption's white text is there in full (as many white pixels as on a free corner)
    free = draw_boxes(_grey(), [Box(left=0.0, top=0.0, width=0.03, height=0.03, caption=caption)])
    white = np.all(np.asarray(out) > 200, axis=2).sum()
    assert white == np.all(np.asarray(free) > 200, axis=2).sum() > 50


def test_with_boxes_draws_on_jpeg_bytes_and_returns_the_bytes_given_when_there_are_none() -> None:
    buf = io.BytesIO()
    _grey((200, 100)).save(buf, format="JPEG", quality=95)
    jpeg = buf.getvalue()
    assert with_boxes(jpeg, []) is jpeg
    out = with_boxes(jpeg, [Box(left=0.1, top=0.1, width=0.8, height=0.8, caption="x")])
    assert out.startswith(b"\xff\xd8")
    drawn = Image.open(io.BytesIO(out))
    assert drawn.size == (200, 100)
    r, g, b = drawn.convert("RGB").getpixel((20, 50))  # the left side, in orange
    assert r > 200 and b < 80


def test_square_crop_keeps_the_centre() -> None:
    # GIVEN a 300 x 100 photo: red | green | blue thirds
    arr = np.zeros((100, 300, 3), dtype=np.uint8)
    arr[:, :100] = (255, 0, 0)
    arr[:, 100:200] = (0, 255, 0)
    arr[:, 200:] = (0, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    # WHEN cropped square THEN it is the green middle, 100 x 100
    sq = Image.open(io.BytesIO(square_crop(buf.getvalue()))).convert("RGB")
    assert sq.size == (100, 100)
    r, g, b = sq.getpixel((50, 50))
    assert g > 200 and r < 60 and b < 60


def test_data_url_carries_the_jpeg() -> None:
    url = data_url(b"\xff\xd8jpeg")
    assert url is not None and url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == b"\xff\xd8jpeg"
    assert data_url(None) is None


def test_colour_swatches_only_draw_valid_hex_codes_and_escape_text() -> None:
    html = colour_swatches_html(
        [
            {"hex_code": "#1a2B3c", "simplified_color": "blue", "pixel_percent": 41.6},
            {"hex_code": "red;background:url(x)", "simplified_color": "red", "pixel_percent": 10},
            {"hex_code": "#ffffff", "simplified_color": "<b>white</b>", "pixel_percent": 5},
        ]
    )
    assert "background:#1a2B3c" in html and "blue 42%" in html
    assert "url(x)" not in html and "red 10%" not in html
    assert "<b>" not in html and "&lt;b&gt;white&lt;/b&gt; 5%" in html
    assert colour_swatches_html([{"hex_code": "nope"}]) == ""
