"""Augmentation of training samples: settings, the random affine (zoom, shift, horizontal flip), HSV jitter, and
the rendering of images and instance masks through one affine map per source image.

Coordinates are continuous pixel coordinates: pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``, its
centre is ``(j + 0.5, i + 0.5)``. A :class:`Tile` says where one source image goes in the output: its matrix maps
source to output coordinates (composed once, so every pixel is resampled once), and only output pixels whose
centre lies in its rectangle show it. A letterboxed image is one tile; a mosaic (:mod:`.mosaic`) is four.

Each instance's mask is warped with its image and cut to the tile's rectangle; its box is then the box of the
visible mask (exact to the source's sub-pixel box where the mask is not cut, to half an output pixel where it is).
Instances cut away entirely, or with less than ``min_visible`` of their area left, are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from pycocotools import mask as mask_utils

PAD_VALUE = 114
PRESCALE_BELOW = 0.75  # downscale with pixel-area averaging first when the map shrinks more than this


@dataclass
class Augment:
    """Augmentation settings (the published YOLOv8 defaults).

    ``mosaic``: probability that a sample is a 4-image mosaic; ``scale``: random zoom in ``[1 - scale, 1 + scale]``;
    ``translate``: random shift, fraction of imgsz; ``fliplr``: probability of a horizontal flip; ``hsv_*``: maximum
    relative change of hue, saturation and value.
    """

    mosaic: float = 1.0
    scale: float = 0.5
    translate: float = 0.1
    fliplr: float = 0.5
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4

    @classmethod
    def off(cls) -> "Augment":
        """No augmentation at all (letterbox only)."""
        return cls(mosaic=0.0, scale=0.0, translate=0.0, fliplr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)


@dataclass(frozen=True)
class Tile:
    """One source image in the output: ``matrix`` ``(2, 3)`` maps its pixel coordinates to output (or canvas)
    coordinates; ``rect`` ``(x1, y1, x2, y2)`` is the region it covers there."""

    matrix: np.ndarray
    rect: tuple[float, float, float, float]


def letterbox_tile(hw: tuple[int, int], size: int) -> Tile:
    """An ``(H, W)`` image scaled to fit ``size`` x ``size`` (longest side ``size``), centred."""
    h, w = hw
    r = size / max(h, w)
    x0, y0 = (size - w * r) / 2, (size - h * r) / 2
    return Tile(np.array([[r, 0, x0], [0, r, y0]], np.float64), (x0, y0, x0 + w * r, y0 + h * r))


def random_affine(canvas: int, size: int, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """The ``(2, 3)`` map from a ``canvas`` x ``canvas`` square to the ``size`` x ``size`` output: zoom by a factor
    in ``[1 - scale, 1 + scale]`` about the canvas centre, put that centre at the output centre shifted by up to
    ``translate * size``, then flip horizontally with probability ``fliplr``."""
    zoom = rng.uniform(1 - aug.scale, 1 + aug.scale) if aug.scale else 1.0
    flip = aug.fliplr > 0 and rng.random() < aug.fliplr
    tx = size / 2 + (rng.uniform(-aug.translate, aug.translate) * size if aug.translate else 0.0)
    ty = size / 2 + (rng.uniform(-aug.translate, aug.translate) * size if aug.translate else 0.0)
    c = canvas / 2
    matrix = np.array([[zoom, 0, tx - zoom * c], [0, zoom, ty - zoom * c]], np.float64)
    if flip:
        matrix[0] = -matrix[0]
        matrix[0, 2] += size
    return matrix


def compose(tile: Tile, matrix: np.ndarray, size: int) -> Tile | None:
    """``tile`` (on a canvas) followed by the canvas-to-output ``matrix``, its rectangle cut to the
    ``size`` x ``size`` output; ``None`` if nothing of it is left."""
    m3 = np.vstack([matrix, (0, 0, 1)])
    x1, y1, x2, y2 = tile.rect
    corners = np.array([[x1, y1, 1], [x2, y2, 1]], np.float64) @ matrix.T
    (ax, bx), (ay, by) = sorted(corners[:, 0]), sorted(corners[:, 1])
    rect = (max(ax, 0.0), max(ay, 0.0), min(bx, float(size)), min(by, float(size)))
    if rect[2] - rect[0] <= 0 or rect[3] - rect[1] <= 0:
        return None
    return Tile((m3 @ np.vstack([tile.matrix, (0, 0, 1)]))[:2], rect)


def _pixel_span(lo: float, hi: float, limit: int) -> tuple[int, int]:
    """Pixels ``[a, b)`` whose centres lie in ``[lo, hi)``, within ``[0, limit)``."""
    return max(math.ceil(lo - 0.5), 0), min(math.ceil(hi - 0.5), limit)


def warp_window(src: np.ndarray, matrix: np.ndarray, origin: tuple[int, int], shape: tuple[int, int], interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp ``src`` (``(H, W)`` or ``(H, W, C)`` uint8) by ``matrix`` (continuous source -> output coordinates) into
    the output window of ``shape`` ``(h, w)`` whose top-left pixel is ``origin`` ``(x, y)``; zero outside ``src``.

    A map that shrinks by more than :data:`PRESCALE_BELOW` first downsamples ``src`` with pixel-area averaging, so
    that small outputs of large images do not alias.
    """
    matrix = matrix.astype(np.float64).copy()
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    h, w = src.shape[:2]
    if scale < PRESCALE_BELOW and min(h, w) > 1:
        nw, nh = max(round(w * scale), 1), max(round(h * scale), 1)
        src = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA)
        matrix[:, 0] *= w / nw
        matrix[:, 1] *= h / nh
    # OpenCV maps pixel indices (centres); shift to the window's origin.
    index = matrix.copy()
    index[:, 2] = matrix[:, 2] + matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5 - np.asarray(origin, np.float64)
    return cv2.warpAffine(src, index, (shape[1], shape[0]), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def render_image(out: np.ndarray, image: np.ndarray, tile: Tile) -> None:
    """Draw RGB uint8 ``image`` into ``out`` (``(S, S, 3)`` uint8) over the pixels of ``tile.rect``."""
    size_y, size_x = out.shape[:2]
    x1, y1, x2, y2 = tile.rect
    (a, b), (c, d) = _pixel_span(x1, x2, size_x), _pixel_span(y1, y2, size_y)
    if a < b and c < d:
        out[c:d, a:b] = warp_window(image, tile.matrix, (a, c), (d - c, b - a))


def render_instance(
    rle: dict, tile: Tile, size: int, ratio: int = 4, min_visible: float = 0.1, min_side: float = 2.0
) -> tuple[np.ndarray, np.ndarray] | None:
    """One instance (compressed COCO RLE at its source image's resolution) through ``tile``.

    Returns ``(box, mask)``: ``box`` ``(4,)`` float32 xyxy output pixels, ``mask`` ``(size / ratio, size / ratio)``
    bool (from the ``ratio`` x ``ratio`` output pixels of each cell, see :func:`mask_cells`); ``None`` when the
    instance is cut away, keeps less than ``min_visible`` of its area or a box side under ``min_side`` pixels.
    """
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    if w <= 0 or h <= 0:
        return None
    m = tile.matrix
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64) @ m.T
    full = (corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max())
    rx1, ry1, rx2, ry2 = tile.rect
    vis = (max(full[0], rx1), max(full[1], ry1), min(full[2], rx2), min(full[3], ry2))
    if vis[2] - vis[0] < min_side or vis[3] - vis[1] < min_side:
        return None
    # output window around the visible part, aligned to the mask grid
    ox0, oy0 = int(vis[0] // ratio) * ratio, int(vis[1] // ratio) * ratio
    ox1, oy1 = min(math.ceil(vis[2] / ratio) * ratio, size), min(math.ceil(vis[3] / ratio) * ratio, size)
    # source crop around the instance (1 px of margin: the warp sees the zeros around it)
    sh, sw = (int(v) for v in rle["size"])
    sx0, sy0 = max(int(x) - 1, 0), max(int(y) - 1, 0)
    sx1, sy1 = min(math.ceil(x + w) + 1, sw), min(math.ceil(y + h) + 1, sh)
    crop = mask_utils.decode(rle)[sy0:sy1, sx0:sx1] * np.uint8(255)
    shifted = m.copy()
    shifted[:, 2] = m[:, 2] + m[:, :2] @ np.array([sx0, sy0], np.float64)
    visible = warp_window(crop, shifted, (ox0, oy0), (oy1 - oy0, ox1 - ox0)) > 127
    cols = np.arange(ox0, ox1) + 0.5
    rows = np.arange(oy0, oy1) + 0.5
    visible &= ((rows >= ry1) & (rows < ry2))[:, None] & ((cols >= rx1) & (cols < rx2))[None, :]
    area = int(visible.sum())
    if area == 0 or area < min_visible * float(mask_utils.area(rle)) * abs(np.linalg.det(m[:, :2])):
        return None
    ys, xs = np.nonzero(visible)
    ex1, ex2, ey1, ey2 = ox0 + xs.min(), ox0 + xs.max() + 1, oy0 + ys.min(), oy0 + ys.max() + 1
    # the visible mask's extent, refined by the exact (sub-pixel) box where the two agree to half a pixel
    box = np.array([
        min(max(vis[0], ex1 - 0.5), ex1 + 0.5), min(max(vis[1], ey1 - 0.5), ey1 + 0.5),
        max(min(vis[2], ex2 + 0.5), ex2 - 0.5), max(min(vis[3], ey2 + 0.5), ey2 - 0.5),
    ])
    box = np.clip(box, 0, size).astype(np.float32)
    if box[2] - box[0] < min_side or box[3] - box[1] < min_side:
        return None
    hh, ww = visible.shape
    cells = mask_cells(visible.reshape(hh // ratio, ratio, ww // ratio, ratio).mean((1, 3)))
    mask = np.zeros((size // ratio, size // ratio), bool)
    mask[oy0 // ratio : oy1 // ratio, ox0 // ratio : ox1 // ratio] = cells
    return box, mask


def mask_cells(coverage: np.ndarray) -> np.ndarray:
    """A mask at prototype resolution from the ``(h, w)`` fraction of each cell the instance covers: the cells at
    least half covered, plus the covered cells that are not next to one of those (so that thin parts, which cover
    no cell by half, are kept and the mask spans the instance's box to within a cell)."""
    majority = coverage >= 0.5
    near = cv2.dilate(majority.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return majority | ((coverage > 0) & ~near)


def hsv_jitter(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Multiply hue, saturation and value of an RGB uint8 ``(H, W, 3)`` image by ``1 + gains`` (a new array)."""
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * (1 + gains[0])) % 180).astype(np.uint8)
    lut_s = np.clip(x * (1 + gains[1]), 0, 255).astype(np.uint8)
    lut_v = np.clip(x * (1 + gains[2]), 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
