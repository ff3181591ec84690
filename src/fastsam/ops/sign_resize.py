"""Thresholded bilinear upsampling, computed only where the threshold is in doubt.

A bilinear sample is a convex combination of its four source taps, so its sign is known without computing it
whenever the four taps agree in sign. :func:`upsample_positive` therefore gathers the source's sign for every
output pixel (a byte copy), and evaluates the interpolation (``F.interpolate``'s arithmetic: pixel-centre source
coordinates clamped at 0, width first, then height, float32) only for the pixels whose taps disagree, i.e. near
the mask's boundary. The result equals ``F.interpolate(src, size, mode="bilinear") > 0`` on a window, up to float
rounding of values within an ulp of 0. NumPy, single-threaded: these are many small operations.
"""

from __future__ import annotations

import numpy as np

Taps = tuple[np.ndarray, np.ndarray, np.ndarray]


def linear_taps(start: int, stop: int, scale: float, n_in: int) -> Taps:
    """Source taps of destination indices ``start .. stop - 1`` for a resize with ``scale`` = input / output size.

    Returns:
        ``i0``, ``i1`` int64 source indices (``i1 = i0 + 1`` except at the last source index) and ``lam`` float32
        weight of ``i1``.
    """
    src = (np.arange(start, stop, dtype=np.float32) + np.float32(0.5)) * np.float32(scale) - np.float32(0.5)
    np.maximum(src, 0, out=src)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = src - i0.astype(np.float32)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, lam


def upsample_positive(src: np.ndarray, rows: Taps, cols: Taps) -> np.ndarray:
    """``bilinear(src)[rows, cols] > 0`` for a 2-D float32 ``src``, mostly by sign lookup.

    Args:
        src: ``(h, w)`` float32 source.
        rows, cols: taps from :func:`linear_taps` for the output rows and columns wanted (increasing).

    Returns:
        ``(len(rows), len(cols))`` bool.
    """
    r0, r1, ly = rows
    c0, c1, lx = cols
    ra, rb, ca, cb = int(r0[0]), int(r1[-1]) + 1, int(c0[0]), int(c1[-1]) + 1
    src = src[ra:rb, ca:cb]  # only the source region these taps reach
    r0, r1, c0, c1 = r0 - ra, r1 - ra, c0 - ca, c1 - ca
    positive = src > 0
    # source cell (i, j) is mixed if its taps (i, j), (i, j+1), (i+1, j), (i+1, j+1) disagree in sign
    mixed = np.zeros_like(positive)
    mixed[:, :-1] |= positive[:, :-1] != positive[:, 1:]
    mixed[:-1] |= positive[:-1] != positive[1:]
    mixed[:-1, :-1] |= positive[:-1, :-1] != positive[1:, 1:]
    mixed[:-1, :-1] |= positive[:-1, 1:] != positive[1:, :-1]
    out = positive[r0][:, c0]
    y, x = np.nonzero(mixed[r0][:, c0])
    if y.size:
        a0, a1, b0, b1, wx, wy = r0[y], r1[y], c0[x], c1[x], lx[x], ly[y]
        top = src[a0, b0] * (np.float32(1) - wx) + src[a0, b1] * wx
        bottom = src[a1, b0] * (np.float32(1) - wx) + src[a1, b1] * wx
        out[y, x] = (top * (np.float32(1) - wy) + bottom * wy) > 0
    return out
