"""Image properties on Rekognition's scales: brightness, sharpness, contrast, dominant colours.

Why here and this way: the local labeller already holds a small decoded copy of every
image (the model input, a few hundred pixels a side), so these are a few cheap numpy
operations on it rather than another decode. All quality values are 0-100.

* brightness: mean luma (Rec. 601) of the image, 0 = black, 100 = white.
* contrast: RMS contrast, the standard deviation of luma relative to its maximum
  possible value (half the range); a flat grey image is 0, half black/half white is 100.
* sharpness: variance of the Laplacian of luma (the classic focus measure), mapped
  through ``log1p`` so that blurred photos land low and crisp ones high; saturating.
* dominant colours: fast-octree quantisation (Pillow; median cut was 15x slower) of a
  ~64-pixel subsample, each
  colour named by hue/saturation/value into a small vocabulary (red, orange, yellow,
  green, teal, blue, purple, pink, brown, black, grey, white).
"""

from __future__ import annotations

import colorsys
import logging

import numpy as np
from PIL import Image

from labelkit.domain import DominantColor, ImageProperties

logger = logging.getLogger(__name__)

#: Laplacian variance (on 0-255 luma) at which sharpness reaches 100. A crisp photo
#: resized to a few hundred pixels has a few hundred to a few thousand; a blurred one < 50.
_SHARP_SATURATION = 4000.0
_MAX_COLORS = 5
_MIN_PERCENT = 1.0


def _luma(rgb: np.ndarray) -> np.ndarray:
    arr = rgb.astype(np.float32)
    out: np.ndarray = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]
    return out


def brightness(luma: np.ndarray) -> float:
    return float(np.clip(luma.mean() / 255.0 * 100.0, 0.0, 100.0))


def contrast(luma: np.ndarray) -> float:
    return float(np.clip(luma.std() / 127.5 * 100.0, 0.0, 100.0))


def sharpness(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian, log-mapped to 0-100."""
    if min(luma.shape) < 3:
        return 0.0
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]
    var = float(lap.var())
    return float(np.clip(100.0 * np.log1p(var) / np.log1p(_SHARP_SATURATION), 0.0, 100.0))


def color_name(red: int, green: int, blue: int) -> str:
    """A simple colour word for an sRGB colour (hue/saturation/value buckets)."""
    h, s, v = colorsys.rgb_to_hsv(red / 255.0, green / 255.0, blue / 255.0)
    hue = h * 360.0
    if v < 0.18:
        return "black"
    if s < 0.15 or (s < 0.25 and v < 0.35):
        if v > 0.85:
            return "white"
        return "grey"
    if hue < 15 or hue >= 345:
        if v < 0.55:
            return "brown"
        return "pink" if s < 0.45 else "red"
    if hue < 45:
        return "brown" if v < 0.65 else "orange"
    if hue < 70:
        return "brown" if v < 0.45 else "yellow"
    if hue < 165:
        return "green"
    if hue < 195:
        return "teal"
    if hue < 260:
        return "blue"
    if hue < 290:
        return "purple"
    return "pink"


def dominant_colors(rgb: np.ndarray, *, max_colors: int = _MAX_COLORS) -> list[DominantColor]:
    """The most common colours of ``rgb`` (H, W, 3 uint8), largest share first."""
    # Every few pixels of the (already small) input is plenty for a colour histogram and
    # far cheaper than a resize.
    step = max(1, max(rgb.shape[:2]) // 64)
    img = Image.fromarray(np.ascontiguousarray(rgb[::step, ::step]), "RGB")
    quant = img.quantize(colors=8, method=Image.Quantize.FASTOCTREE)
    palette = quant.getpalette() or []
    counts = quant.getcolors() or []
    total = float(sum(n for n, _ in counts)) or 1.0
    out: list[DominantColor] = []
    for count, index in sorted(counts, key=lambda item: item[0], reverse=True):
        assert isinstance(index, int)
        percent = 100.0 * count / total
        if percent < _MIN_PERCENT or len(out) >= max_colors:
            break
        r, g, b = (int(c) for c in palette[3 * index : 3 * index + 3])
        out.append(
            DominantColor(
                red=r,
                green=g,
                blue=b,
                hex_code=f"#{r:02x}{g:02x}{b:02x}",
                simplified_color=color_name(r, g, b),
                pixel_percent=round(percent, 2),
            )
        )
    return out


def image_properties(rgb: np.ndarray) -> ImageProperties:
    """All properties of an (H, W, 3) uint8 RGB array (a small copy of the image)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("image_properties expects an (H, W, 3) uint8 array")
    luma = _luma(rgb)
    return ImageProperties(
        brightness=round(brightness(luma), 2),
        sharpness=round(sharpness(luma), 2),
        contrast=round(contrast(luma), 2),
        dominant_colors=dominant_colors(rgb),
    )
