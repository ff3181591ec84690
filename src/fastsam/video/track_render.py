"""Drawing tracked masks: one colour per id, stable across frames, and the id written on each mask."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..visualize import overlay


def id_colors(ids: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint8 RGB colour of each id: hues spaced by the golden ratio, so nearby ids differ clearly and an
    id keeps its colour in every frame."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    out = np.zeros((len(ids), 3), dtype=np.uint8)
    for k, i in enumerate(ids.tolist()):
        hue = (i * 0.618033988749895) % 1.0
        out[k] = [round(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.75, 0.95)]
    return out


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    size = max(10, height // 40)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def render_tracks(
    image: np.ndarray,
    masks,
    ids: np.ndarray,
    alpha: float = 0.5,
    contours: bool = True,
    labels: bool = True,
    boxes: np.ndarray | None = None,
    lost: list[tuple[int, list[float] | None]] | None = None,
) -> np.ndarray:
    """The frame with each mask in its id's colour and the id written at its box centre.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool or :class:`~fastsam.masks.WindowedMasks`.
        ids: ``(N,)`` the id of each mask.
        boxes: ``(N, 4)`` xyxy boxes, where the ids are written (default: no labels).
        lost: ``(id, predicted xyxy box or None)`` of followed objects not found: written as "id?" in grey at the
            predicted place.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    out = overlay(image, masks, colors=id_colors(ids), alpha=alpha, contours=contours)
    if not labels or ((boxes is None or not len(ids)) and not lost):
        return out
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    font = _font(image.shape[0])
    colors = id_colors(ids)
    for k, i in enumerate(np.asarray(ids).tolist() if boxes is not None else []):
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        draw.text(((x1 + x2) / 2, (y1 + y2) / 2), str(i), fill=tuple(int(v) for v in colors[k]), font=font,
                  anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))  # fmt: skip
    for i, box in lost or []:
        if box is None:
            continue
        x1, y1, x2, y2 = box
        draw.text(((x1 + x2) / 2, (y1 + y2) / 2), f"{i}?", fill=(200, 200, 200), font=font, anchor="mm",
                  stroke_width=2, stroke_fill=(0, 0, 0))  # fmt: skip
    return np.asarray(canvas)
