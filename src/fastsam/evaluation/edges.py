"""Edge maps from segmentation masks: the zero-shot edge detection recipe of SAM / FastSAM.

For each mask (a probability map in [0, 1], or a 0/1 indicator), a Sobel filter gives the gradient; the edge
strength of a pixel is the largest gradient magnitude over all masks (optionally each mask's magnitude
times its confidence score), linearly normalised to [0, 1]. Edge non-maximum suppression then keeps only
pixels that are local maxima across the edge (the direction of the winning mask's Sobel gradient, with the
two neighbours interpolated bilinearly at one pixel distance), and a morphological thinning reduces the
remaining ridges to one pixel width (a step edge of an indicator mask gives a two-pixel ridge of equal
magnitudes that NMS keeps whole).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .thinning import thin

_CHUNK_PIXELS = 8_000_000  # float pixels per chunk of masks


def sobel_gradients(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel derivatives of a stack of maps, each map on its own (no mixing across the stack).

    Args:
        maps: ``(N, H, W)`` float maps.

    Returns:
        ``(gx, gy)``, each ``(N, H, W)`` float32: derivative along columns (x, to the right) and along rows
        (y, downwards), with the 3-tap smoothing [1, 2, 1] across; borders replicate the edge pixels.
    """
    maps = np.asarray(maps, dtype=np.float32)
    smooth = np.array([1.0, 2.0, 1.0], dtype=np.float32)
    diff = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    gx = ndimage.correlate1d(ndimage.correlate1d(maps, diff, axis=2, mode="nearest"), smooth, axis=1, mode="nearest")
    gy = ndimage.correlate1d(ndimage.correlate1d(maps, diff, axis=1, mode="nearest"), smooth, axis=2, mode="nearest")
    return gx, gy


def max_gradient(maps: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-wise maximum of the Sobel magnitude over a stack of maps.

    Args:
        maps: ``(N, H, W)`` probability maps in [0, 1] or bool masks.
        weights: optional ``(N,)`` factor per map (e.g. confidence scores) applied to its magnitude.

    Returns:
        ``(magnitude, gx, gy)``: ``(H, W)`` float32 maximum magnitude and the Sobel derivatives of the map
        that attains it (zeros where no map has any gradient).
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected (N, H, W) maps, got shape {maps.shape}")
    n, h, w = maps.shape
    best = np.zeros((h, w), np.float32)
    best_gx = np.zeros((h, w), np.float32)
    best_gy = np.zeros((h, w), np.float32)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32).reshape(-1)
        if weights.size != n:
            raise ValueError(f"{weights.size} weights for {n} maps")
    chunk = max(1, _CHUNK_PIXELS // max(1, h * w))
    for start in range(0, n, chunk):
        gx, gy = sobel_gradients(maps[start : start + chunk])
        mag = np.hypot(gx, gy)
        if weights is not None:
            mag *= weights[start : start + chunk, None, None]
        idx = mag.argmax(0)
        top = np.take_along_axis(mag, idx[None], 0)[0]
        better = top > best
        best[better] = top[better]
        best_gx[better] = np.take_along_axis(gx, idx[None], 0)[0][better]
        best_gy[better] = np.take_along_axis(gy, idx[None], 0)[0][better]
    return best, best_gx, best_gy


def edge_nms(magnitude: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Non-maximum suppression across edges.

    A pixel keeps its value when it is >= both neighbours at one pixel distance along its gradient
    direction ``(gx, gy)`` (bilinear interpolation; outside the image counts as 0); others become 0.

    Args:
        magnitude: ``(H, W)`` edge strength.
        gx, gy: ``(H, W)`` gradient components (x along columns, y along rows).

    Returns:
        ``(H, W)`` float32.
    """
    mag = np.asarray(magnitude, dtype=np.float32)
    h, w = mag.shape
    norm = np.hypot(gx, gy)
    safe = np.where(norm > 0, norm, 1.0)
    ux, uy = gx / safe, gy / safe
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    keep = mag > 0
    for sign in (1.0, -1.0):
        neighbour = ndimage.map_coordinates(
            mag, [rows + sign * uy, cols + sign * ux], order=1, mode="constant", cval=0.0, prefilter=False
        )
        keep &= mag >= neighbour - 1e-6
    return np.where(keep, mag, 0.0).astype(np.float32)


def masks_to_edges(
    maps: np.ndarray,
    weights: np.ndarray | None = None,
    nms: bool = True,
    thinning: bool = True,
    floor: float = 1e-3,
) -> np.ndarray:
    """Edge map of an image from its masks (see the module docstring).

    Args:
        maps: ``(N, H, W)`` mask probability maps in [0, 1] (or bool masks); ``N`` may be 0.
        weights: optional ``(N,)`` factor per mask (e.g. its confidence) on its gradient magnitude.
        nms: apply edge non-maximum suppression.
        thinning: thin the surviving ridges to one pixel.
        floor: normalised strengths below this become 0 first (numerical noise of flat probability maps;
            below any benchmark threshold, the lowest being 0.01 for 99 thresholds).

    Returns:
        ``(H, W)`` float32 edge strength in [0, 1] (all zeros when no mask has an edge).
    """
    magnitude, gx, gy = max_gradient(maps, weights)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if peak <= 0:
        return np.zeros(magnitude.shape, np.float32)
    edges = magnitude / peak
    edges[edges < floor] = 0.0
    if nms:
        edges = edge_nms(edges, gx, gy)
    if thinning:
        edges = np.where(thin(edges > 0), edges, 0.0).astype(np.float32)
    return np.clip(edges, 0.0, 1.0).astype(np.float32)
