"""A deterministic labeller for tests and demos (no model, no network).

It decodes the image with the real intake (so bad bytes fail exactly as with
the real model) and labels it by its dominant colour channel, with a parent,
a category and one box, so every part of the pipeline gets exercised.
"""

from __future__ import annotations

import numpy as np

from labelkit.domain import BoundingBox, Instance, Label, LabelResult
from labelkit.images import decode_rgb
from labelkit.labelers.base import ImageInput as _ImageInput
from labelkit.labelers.base import LabelOptions

_NAMES = ("Red Thing", "Green Thing", "Blue Thing")


class FakeLabeler:
    def __init__(self, *, max_pixels: int = 50_000_000, model_version: str = "fake-1") -> None:
        self._max_pixels = max_pixels
        self._version = model_version

    @property
    def model_version(self) -> str:
        return self._version

    def label(self, image: _ImageInput, options: LabelOptions) -> LabelResult:
        rgb = np.asarray(decode_rgb(image.data, max_pixels=self._max_pixels, min_side=32), dtype=np.float32)
        means = rgb.reshape(-1, 3).mean(axis=0)
        name = _NAMES[int(np.argmax(means))]
        conf = float(50 + 50 * (means.max() - means.min()) / 255)
        labels = [
            Label(
                name=name,
                confidence=conf,
                parents=["Thing"],
                categories=["Test Category"],
                instances=[
                    Instance(box=BoundingBox(left=0.1, top=0.1, width=0.8, height=0.8), confidence=conf)
                ],
            ),
            Label(name="Thing", confidence=min(100.0, conf + 1), categories=["Test Category"]),
        ]
        return LabelResult(labels=options.apply(labels), model_version=self._version)
