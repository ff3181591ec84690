"""Thresholded bilinear upsampling, computed only where the threshold is in doubt.

A bilinear sample is a convex combination of its four source taps, so its sign is known without computing it
whenever the four taps agree in sign. :func:`upsample_positive` therefore repeats the source's sign over every
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
    # The taps are non-decreasing, so the output rows (columns) whose first tap is source row i form one run:
    # the sign lookup is a run-length repeat, and a mixed cell maps to one rectangle of output pixels.
    row_runs = np.bincount(r0, minlength=src.shape[0])
    col_runs = np.bincount(c0, minlength=src.shape[1])
    out = np.repeat(np.repeat(positive, row_runs, axis=0), col_runs, axis=1)
    cells_i, cells_j = np.nonzero(mixed & (row_runs[:, None] > 0) & (col_runs[None, :] > 0))
    if cells_i.size:
        row_first = np.cumsum(row_runs) - row_runs  # first output row (column) of each source row (column)
        col_first = np.cumsum(col_runs) - col_runs
        y, x, cell = _cell_pixels(cells_i, cells_j, row_runs, col_runs, row_first, col_first)
        # the four taps are the same for every pixel of a cell: gather them per cell, then repeat
        i1, j1 = r1[row_first[cells_i]], c1[col_first[cells_j]]
        wx, wy = lx[x], ly[y]
        one = np.float32(1)
        top = src[cells_i, cells_j][cell] * (one - wx) + src[cells_i, j1][cell] * wx
        bottom = src[i1, cells_j][cell] * (one - wx) + src[i1, j1][cell] * wx
        out[y, x] = (top * (one - wy) + bottom * wy) > 0
    return out


def _cell_pixels(
    cells_i: np.ndarray,
    cells_j: np.ndarray,
    row_runs: np.ndarray,
    col_runs: np.ndarray,
    row_first: np.ndarray,
    col_first: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The output pixels of source cells ``(cells_i[k], cells_j[k])``: ``(y, x, k)`` int64, one entry per pixel.

    Source row ``i`` is the first tap of output rows ``row_first[i] .. row_first[i] + row_runs[i] - 1`` (columns
    likewise: ``col_first``, ``col_runs``), so a cell expands to a ``row_runs[i] x col_runs[j]`` rectangle; built without scanning the output.
    """
    heights, widths = row_runs[cells_i], col_runs[cells_j]
    sizes = heights * widths
    cell = np.repeat(np.arange(cells_i.size), sizes)
    offset = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    dy, dx = np.divmod(offset, widths[cell])
    y = row_first[cells_i][cell] + dy
    x = col_first[cells_j][cell] + dx
    return y, x, cell
