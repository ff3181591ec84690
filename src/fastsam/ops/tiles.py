"""Tile grids over big images: overlapping crops that the network sees at (up to) full detail.

A side of ``L`` pixels cut into ``n`` tiles of ``s`` pixels that overlap by a fraction ``o`` of a tile needs
``L = s + (n - 1) * s * (1 - o)``. Tiles are as square as the image allows: ``n`` is given for the longer side and
the shorter side gets as many tiles as keep its tiles no longer than those.
"""

from __future__ import annotations

import math

import numpy as np

MAX_OVERLAP = 0.9  # tile overlap must be below this (0.9: each tile advances a tenth of its size)


def check_tiling(tiles: int | str | None, overlap: float) -> None:
    """Raise ``ValueError`` (one line) for a ``tiles`` value other than None, ``"auto"`` or an integer >= 1, or an
    overlap outside ``[0, MAX_OVERLAP)``."""
    whole = isinstance(tiles, (int, np.integer)) and not isinstance(tiles, bool)
    if tiles is not None and tiles != "auto" and (not whole or tiles < 1):
        raise ValueError(f"tiles must be 'auto' or a whole number of tiles along the longer side (>= 1), got {tiles!r}")
    if not 0.0 <= float(overlap) < MAX_OVERLAP:
        raise ValueError(f"tile overlap is a fraction of a tile in [0, {MAX_OVERLAP}), got {overlap}")


def tiles_for_detail(length: int, imgsz: int, overlap: float) -> int:
    """The fewest tiles along a side of ``length`` pixels whose tiles are at most ``imgsz`` pixels long (the network
    then sees them without shrinking them): 1 when the side fits."""
    if length <= imgsz:
        return 1
    return math.ceil((length / imgsz - 1) / (1 - overlap) - 1e-9) + 1


def tile_size(length: int, tiles: int, overlap: float) -> int:
    """Pixels per tile when ``tiles`` tiles overlapping by ``overlap`` cover ``length`` pixels."""
    return min(length, math.ceil(length / (1 + (tiles - 1) * (1 - overlap)) - 1e-9))


def _starts(length: int, tiles: int, size: int) -> np.ndarray:
    if tiles == 1:
        return np.zeros(1, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, length - size, tiles)).astype(np.int64))  # tiny sides: fewer tiles


def tile_grid(image_hw: tuple[int, int], tiles: int, overlap: float) -> np.ndarray:
    """The tiles of an image, row by row.

    Args:
        image_hw: ``(H, W)`` in pixels.
        tiles: tiles along the longer side (>= 1).
        overlap: fraction of a tile shared with its neighbour, in ``[0, MAX_OVERLAP)``.

    Returns:
        ``(T, 4)`` int64 ``x1, y1, x2, y2`` (half-open) covering the image, all of one size; one tile (the whole
        image) when ``tiles == 1``, and fewer than asked where a side is too short to hold them apart.
    """
    check_tiling(tiles, overlap)
    h, w = (int(v) for v in image_hw)
    long_side, short_side = max(h, w), min(h, w)
    size = tile_size(long_side, tiles, overlap)
    across = tiles_for_detail(short_side, size, overlap)  # the shorter side: tiles no longer than `size`
    short_size = tile_size(short_side, across, overlap)
    n_rows, n_cols = (tiles, across) if h >= w else (across, tiles)
    tile_h, tile_w = (size, short_size) if h >= w else (short_size, size)
    ys, xs = _starts(h, n_rows, tile_h), _starts(w, n_cols, tile_w)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack((x.ravel(), y.ravel(), x.ravel() + tile_w, y.ravel() + tile_h), axis=1)
