"""Drawing masks over images, and saving arrays as PNG.

The overlay is built in one blend: each pixel takes the colour of the *smallest* mask covering it
(masks are painted largest first, so small masks stay visible on top of large ones), computed as
an integer label map with cheap per-mask boolean assignments restricted to each mask's bounding
box, then blended with the image once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from fastsam.masks import WindowedMasks
from fastsam.ops.rle import tight_windows

FIXED_COLOR: tuple[int, int, int] = (30, 144, 255)
"""RGB colour of every mask when ``random_colors=False`` and no ``colors`` are given."""


def mask_colors(n: int, seed: int = 0, random_colors: bool = True) -> np.ndarray:
    """Colours for ``n`` masks.

    Args:
        n: number of masks.
        seed: seed of the numpy ``Generator`` used for random colours (same seed, same colours).
        random_colors: random colours (each channel uniform in ``[32, 255]``, avoiding near-black)
            if True, otherwise :data:`FIXED_COLOR` for all.

    Returns:
        ``(n, 3)`` uint8 RGB.
    """
    if random_colors:
        return np.random.default_rng(seed).integers(32, 256, size=(n, 3)).astype(np.uint8)
    return np.tile(np.asarray(FIXED_COLOR, dtype=np.uint8), (n, 1))


def _resolve_colors(colors: np.ndarray | None, n: int, seed: int, random_colors: bool) -> np.ndarray:
    """Validate user colours (``(n, 3)`` or ``(3,)``, values 0-255) or generate them; returns ``(n, 3)`` uint8."""
    if colors is None:
        return mask_colors(n, seed=seed, random_colors=random_colors)
    arr = np.asarray(colors)
    if arr.shape == (3,):
        arr = np.broadcast_to(arr, (n, 3))
    if arr.shape != (n, 3):
        raise ValueError(f"colors must have shape ({n}, 3) or (3,); got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("colors must be RGB values in [0, 255]")
    return np.asarray(arr, dtype=np.uint8)


def label_map(masks: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """Index of the topmost mask at each pixel, painting larger masks first.

    Args:
        masks: ``(N, H, W)`` bool.
        boxes: optional ``(N, 4)`` tight xyxy boxes of ``masks`` (as from
            :func:`fastsam.ops.rle.mask_to_box`), to skip recomputing them.

    Returns:
        ``(H, W)`` int32: at each pixel the index (into ``masks``) of the smallest-area mask covering
        it (ties: the higher index wins), or -1 where no mask covers the pixel.
    """
    return _label_map(*_windows(masks, boxes), masks.shape[1:])


def _windows(masks: np.ndarray | WindowedMasks, boxes: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Each mask's window (outside it the mask is False) and the window's ``(N, 4)`` int xyxy bounds: the windows
    of :class:`~fastsam.masks.WindowedMasks` as they are, an array's masks cut to their tight boxes (views)."""
    if isinstance(masks, WindowedMasks):
        return masks.windows, masks.bounds
    return tight_windows(masks, boxes)


def _label_map(windows: list[np.ndarray], bounds: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    labels = np.full(size, -1, dtype=np.int32)
    areas = np.fromiter((np.count_nonzero(w) for w in windows), dtype=np.int64, count=len(windows))
    for i in np.argsort(-areas, kind="stable"):  # largest first
        x1, y1, x2, y2 = bounds[i]
        if areas[i]:
            labels[y1:y2, x1:x2][windows[i]] = i
    return labels


def _boundary(crop: np.ndarray) -> np.ndarray:
    """Pixels of ``crop`` (``(h, w)`` bool) with at least one 4-neighbour outside it (outside = False)."""
    padded = np.pad(crop, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1]
    interior &= padded[1:-1, :-2]
    interior &= padded[1:-1, 2:]
    return crop & ~interior


def overlay(
    image: np.ndarray,
    masks: np.ndarray | WindowedMasks,
    colors: np.ndarray | None = None,
    alpha: float = 0.5,
    contours: bool = False,
    contour_color: tuple[int, int, int] = (255, 255, 255),
    seed: int = 0,
    random_colors: bool = True,
) -> np.ndarray:
    """Draw coloured, semi-transparent masks over an image.

    Larger masks are painted first so smaller ones stay visible on top; each pixel is blended once
    with the colour of the topmost mask covering it:
    ``out = round(image * (1 - alpha) + color * alpha)``. Pixels outside every mask are unchanged.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool at the image's resolution, or the same as :class:`~fastsam.masks.WindowedMasks`.
        colors: ``(N, 3)`` (one per mask, in ``masks`` order) or ``(3,)`` RGB values in 0-255;
            default: see ``random_colors``.
        alpha: mask opacity in ``[0, 1]``; 0 leaves the image unchanged (except contours).
        contours: also paint each mask's boundary pixels (inside pixels with a 4-neighbour
            outside the mask or the image) in ``contour_color``, on top of everything.
        contour_color: RGB of the contours.
        seed: seed for random colours.
        random_colors: random colours per mask if True, else one fixed colour
            (:data:`FIXED_COLOR`). Ignored when ``colors`` is given.

    Returns:
        New ``(H, W, 3)`` uint8 RGB array.
    """
    image = np.asarray(image)
    if not isinstance(masks, WindowedMasks):
        masks = np.asarray(masks)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8; got shape {image.shape}, dtype {image.dtype}")
    if len(masks.shape) != 3 or tuple(masks.shape[1:]) != image.shape[:2]:
        raise ValueError(f"masks must have shape (N, {image.shape[0]}, {image.shape[1]}); got {masks.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    if isinstance(masks, np.ndarray):
        masks = masks.astype(bool, copy=False)
    n = masks.shape[0]
    palette = _resolve_colors(colors, n, seed, random_colors)
    if n == 0:
        return image.copy()

    windows, bounds = _windows(masks)
    if alpha == 0.0:
        out = image.copy()
    else:
        labels = _label_map(windows, bounds, image.shape[:2])
        # Row n of the scaled palette is zero, so label -1 picks it; those pixels are restored below.
        scaled = np.zeros((n + 1, 3), dtype=np.float32)
        scaled[:n] = palette.astype(np.float32) * alpha
        blended = image.astype(np.float32)
        blended *= 1.0 - alpha
        blended += scaled[labels]
        blended += 0.5  # round half up by truncation; values stay in [0, 255.5], so no wrap-around
        out = blended.astype(np.uint8)
        np.copyto(out, image, where=(labels < 0)[:, :, None])

    if contours:
        color = np.asarray(contour_color, dtype=np.uint8)
        for window, (x1, y1, x2, y2) in zip(windows, bounds.tolist()):
            if window.size:
                out[y1:y2, x1:x2][_boundary(window)] = color
    return out


def save_png(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Save an array as a PNG file, creating parent folders.

    Args:
        array: ``(H, W)`` uint8 (grey) or bool (saved as 0/255 grey), ``(H, W, 3)`` uint8 RGB or
            ``(H, W, 4)`` uint8 RGBA.
        path: destination file; its extension is not checked, the format is always PNG.
    """
    array = np.asarray(array)
    if array.dtype == np.bool_ and array.ndim == 2:
        array = array.astype(np.uint8) * np.uint8(255)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(
            f"save_png needs (H, W) uint8/bool, (H, W, 3) or (H, W, 4) uint8; got shape {array.shape}, "
            f"dtype {array.dtype}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # uint8 (H, W) / (H, W, 3) / (H, W, 4) map to Pillow modes L / RGB / RGBA.
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
