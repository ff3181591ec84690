"""Morphological thinning of binary maps to one-pixel-wide strokes.

The algorithm is the two-subiteration parallel thinning described by Lam, Lee and Suen, "Thinning
methodologies - a comprehensive survey" (IEEE TPAMI 14(9), 1992, p. 879, after Guo and Hall 1989), which is
the thinning the BSDS boundary benchmark applies to thresholded edge maps. It preserves connectivity
(8-connected strokes) and the Euler number.

Neighbours of a pixel ``p`` are numbered counter-clockwise from the east, with rows growing downwards::

    x4 x3 x2
    x5 p  x1
    x6 x7 x8

A foreground pixel is deleted in the first subiteration when

* G1: the crossing number ``X_H = sum_i b_i`` is 1, where ``b_i = 1`` iff ``x_{2i-1} = 0`` and
  (``x_{2i} = 1`` or ``x_{2i+1} = 1``), ``i = 1..4``, ``x9 = x1``;
* G2: ``2 <= min(n1, n2) <= 3`` with ``n1 = sum_k (x_{2k-1} or x_{2k})`` and
  ``n2 = sum_k (x_{2k} or x_{2k+1})``;
* G3: ``(x2 or x3 or not x8) and x1`` is false;

and in the second subiteration under G1, G2 and G3': ``(x6 or x7 or not x4) and x5`` is false. Both
subiterations are evaluated in parallel over the whole image and repeated until nothing changes. Pixels
outside the image count as background.
"""

from __future__ import annotations

import numpy as np

# bit k-1 of the neighbourhood code holds x_k; (row offset, column offset) of x1..x8
_NEIGHBOUR_OFFSETS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(256,)`` bool deletion tables of the two subiterations, indexed by the neighbourhood code."""
    first = np.zeros(256, dtype=bool)
    second = np.zeros(256, dtype=bool)
    for code in range(256):
        x = [bool(code >> k & 1) for k in range(8)]  # x[0] is x1 ... x[7] is x8
        xs = x + x[:1]  # x9 = x1 (index 8)
        crossing = sum((not xs[2 * i]) and (xs[2 * i + 1] or xs[2 * i + 2]) for i in range(4))
        n1 = sum(xs[2 * k] or xs[2 * k + 1] for k in range(4))
        n2 = sum(xs[2 * k + 1] or xs[2 * k + 2] for k in range(4))
        if crossing != 1 or not 2 <= min(n1, n2) <= 3:
            continue
        x1, x2, x3, x4, x5, x6, x7, x8 = x
        first[code] = not ((x2 or x3 or not x8) and x1)
        second[code] = not ((x6 or x7 or not x4) and x5)
    return first, second


_FIRST, _SECOND = _lookup_tables()


def thin(mask: np.ndarray, max_iterations: int | None = None) -> np.ndarray:
    """Thin the foreground of a binary map to 8-connected one-pixel-wide strokes.

    Args:
        mask: ``(H, W)`` array; nonzero is foreground.
        max_iterations: stop after this many full iterations (both subiterations); ``None`` runs until
            the map stops changing.

    Returns:
        ``(H, W)`` bool, a subset of ``mask != 0``.
    """
    image = np.asarray(mask) != 0
    if image.ndim != 2:
        raise ValueError(f"thin expects a 2-D map, got shape {image.shape}")
    h, w = image.shape
    # a background frame of one pixel, so that every neighbour of a foreground pixel exists
    work = np.zeros((h + 2, w + 2), dtype=np.uint8)
    work[1:-1, 1:-1] = image
    flat = work.ravel()
    stride = w + 2
    shifts = np.array([dr * stride + dc for dr, dc in _NEIGHBOUR_OFFSETS], dtype=np.int64)
    weights = (1 << np.arange(8)).astype(np.int32)
    alive = np.flatnonzero(flat)  # foreground pixels (flat indices in the framed map)
    iteration = 0
    while alive.size and (max_iterations is None or iteration < max_iterations):
        changed = False
        for table in (_FIRST, _SECOND):
            neighbours = flat[alive[:, None] + shifts[None, :]]  # (n, 8) 0/1
            code = neighbours.astype(np.int32) @ weights
            delete = table[code]
            if delete.any():
                flat[alive[delete]] = 0
                alive = alive[~delete]
                changed = True
        iteration += 1
        if not changed:
            break
    return work[1:-1, 1:-1] != 0
