"""Mosaic augmentation (YOLOv8 recipe): four images around a random centre of a ``2 imgsz`` square canvas.

Each image is scaled to a longest side of ``imgsz`` and placed with one corner at the centre ``(xc, yc)``, drawn
uniformly from ``[imgsz / 2, 3 imgsz / 2]`` on both axes: the first image above-left of it, the second
above-right, the third below-left, the fourth below-right; what falls outside the canvas is cut. The random affine
of :func:`.augment.random_affine` (zoom about the canvas centre, shift, flip) then maps the canvas to the
``imgsz`` output, cropping it back to ``imgsz``.

The canvas is never drawn: its tiles are composed with that affine (:func:`.augment.compose`) so that each image
and mask is resampled once, straight into the output.
"""

from __future__ import annotations

import numpy as np

from .augment import Tile

MOSAIC_IMAGES = 4


def mosaic_tiles(sizes: list[tuple[int, int]], size: int, rng: np.random.Generator) -> list[Tile]:
    """The four tiles on the ``2 size`` x ``2 size`` canvas of images of ``(H, W)`` ``sizes``, in order
    top-left, top-right, bottom-left, bottom-right of the random centre."""
    if len(sizes) != MOSAIC_IMAGES:
        raise ValueError(f"a mosaic needs {MOSAIC_IMAGES} images, got {len(sizes)}")
    canvas = 2 * size
    xc, yc = rng.uniform(size / 2, 3 * size / 2, 2)
    tiles = []
    for k, (h, w) in enumerate(sizes):
        r = size / max(h, w)
        tw, th = w * r, h * r
        x0 = xc - tw if k in (0, 2) else xc
        y0 = yc - th if k in (0, 1) else yc
        rect = (max(x0, 0.0), max(y0, 0.0), min(x0 + tw, canvas), min(y0 + th, canvas))
        tiles.append(Tile(np.array([[r, 0, x0], [0, r, y0]], np.float64), rect))
    return tiles
