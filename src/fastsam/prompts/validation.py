"""Checking prompts before they reach the selection functions. Errors name the offending prompt."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def validate_points(
    coords: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[int] | np.ndarray | None, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Check point prompts and convert them to pixel indices.

    Args:
        coords: ``(P, 2)`` x, y in pixels of the original image; ``0 <= x <= W``, ``0 <= y <= H``.
        labels: ``(P,)`` 1 = foreground, 0 = background (default: all foreground).
        image_hw: ``(H, W)``.

    Returns:
        ``(P, 2)`` int64 pixel indices (truncated, the right/bottom edge mapped onto the last pixel) and
        ``(P,)`` int64 labels.

    Raises:
        ValueError: wrong shapes, NaN/inf, a point outside the image, labels other than 0/1, length mismatch.
    """
    points = np.asarray(coords, dtype=np.float64)
    if points.size == 0:
        points = points.reshape(0, 2)
    if points.ndim == 1 and points.shape[0] == 2:
        points = points[None]
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be (P, 2) x, y pairs, got shape {points.shape}")
    if labels is None:
        label_arr = np.ones(len(points), dtype=np.int64)
    else:
        raw = np.asarray(labels).reshape(-1)
        if raw.shape[0] != points.shape[0]:
            raise ValueError(f"{points.shape[0]} point(s) but {raw.shape[0]} label(s): give one label per point")
        bad = [i for i, v in enumerate(raw.tolist()) if v not in (0, 1, True, False)]
        if bad:
            raise ValueError(f"point {bad[0]} has label {raw[bad[0]]!r}; labels are 1 (foreground) or 0 (background)")
        label_arr = raw.astype(np.int64)
    h, w = image_hw
    for i, (x, y) in enumerate(points.tolist()):
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"point {i} ({x}, {y}) is not a finite number")
        if not (0 <= x <= w and 0 <= y <= h):
            raise ValueError(f"point {i} ({x:g}, {y:g}) is outside the {w}x{h} image")
    pixels = np.empty(points.shape, dtype=np.int64)
    pixels[:, 0] = np.minimum(points[:, 0].astype(np.int64), w - 1)
    pixels[:, 1] = np.minimum(points[:, 1].astype(np.int64), h - 1)
    return pixels, label_arr


def validate_boxes(boxes: Sequence[Sequence[float]] | np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Check xyxy box prompts (pixels of the original image).

    A box may extend past the image (it is clipped later) but must overlap it.

    Returns:
        ``(B, 4)`` float64.

    Raises:
        ValueError: wrong shape, NaN/inf, inverted or empty box, or a box entirely outside the image.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be (B, 4) x1, y1, x2, y2, got shape {arr.shape}")
    h, w = image_hw
    for i, (x1, y1, x2, y2) in enumerate(arr.tolist()):
        if not all(np.isfinite(v) for v in (x1, y1, x2, y2)):
            raise ValueError(f"box {i} {[x1, y1, x2, y2]} has a value that is not a finite number")
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"box {i} {[x1, y1, x2, y2]} is inverted or empty: boxes are x1, y1, x2, y2 with x2 > x1, y2 > y1")
        if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
            raise ValueError(f"box {i} {[x1, y1, x2, y2]} is outside the {w}x{h} image")
    return arr


def box_pixels(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """``(B, 4)`` float xyxy -> int64 pixel bounds (truncated, clipped to the image; x2, y2 exclusive)."""
    h, w = image_hw
    out = boxes.astype(np.int64)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out
