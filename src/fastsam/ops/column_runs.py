"""A thresholded bilinear resize straight to column-major run boundaries, compiled (Numba).

The same answer as :func:`fastsam.ops.sign_resize.positive_transitions` followed by
:func:`fastsam.ops.rle.canonical_toggles`, bit for bit, in one compiled pass. Output rows whose first source row is
the same form a block, output columns whose source columns are the same a group. For each group, every source cell
(a block's two source rows by the group's two source columns) whose four taps are all above ``1e-30`` (all ``<= 0``)
is settled True (False) for all its output pixels: a weighted mean of same-signed values keeps the sign. For each
output column only the cells that are mixed or differ from the cell above are visited; a mixed cell's column is
interpolated horizontally (``src[i, c0] * (1 - wx) + src[i, c1] * wx``) and, unless those two values agree in sign
as above, its pixels evaluated (``top * (1 - wy) + bottom * wy > 0``), in float32: the arithmetic of
``F.interpolate(mode="bilinear")``. Work
follows source cells and the pixels near the boundary; nothing of the output's area is laid out.

Written here rather than in numpy because the numpy form spends ~30 passes over temporaries per boundary pixel
(about 0.75 us each, most of the post-processing time on noisy masks); compiled, the loop costs a few ns a step.
:data:`KERNEL` gives None where Numba is missing or cannot be loaded; callers then use the numpy form.
"""

from __future__ import annotations

import numpy as np

from ..jit import Kernel


def _column_toggles(
    src_t: np.ndarray,
    r0: np.ndarray,
    r1: np.ndarray,
    ly: np.ndarray,
    c0: np.ndarray,
    c1: np.ndarray,
    lx: np.ndarray,
    x0: int,
    y0: int,
    height: int,
) -> np.ndarray:
    """Canonical column-major run boundaries (``x * height + y``, sorted, int64) of ``bilinear(src)[rows, cols] > 0``
    placed with its top-left output pixel at ``(y0, x0)`` of an image ``height`` pixels high.

    Args:
        src_t: ``(w, h)`` float32 source, transposed (C-contiguous: a source column is contiguous).
        r0, r1, ly: row taps (int64, int64, float32) of the ``Ho`` output rows, non-decreasing, as from
            :func:`~fastsam.ops.sign_resize.linear_taps`; ``c0, c1, lx`` the same for the ``Wo`` output columns.
    """
    n_rows, n_cols = r0.shape[0], c0.shape[0]
    one = np.float32(1.0)
    tiny = np.float32(1e-30)
    # blocks: runs of output rows with the same first source row, [starts[b], starts[b + 1])
    starts = np.empty(n_rows + 1, dtype=np.int64)
    n_blocks = 0
    for y in range(n_rows):
        if y == 0 or r0[y] != r0[y - 1]:
            starts[n_blocks] = y
            n_blocks += 1
    starts[n_blocks] = n_rows
    top_rows = np.empty(n_blocks, dtype=np.int64)  # each block's two source rows
    bottom_rows = np.empty(n_blocks, dtype=np.int64)
    for b in range(n_blocks):
        top_rows[b] = r0[starts[b]]
        bottom_rows[b] = r1[starts[b]]
    # Weights in [0, 1) make a value between taps of one sign have that sign (away from underflow): a source cell
    # whose four taps are all > tiny (all <= 0) is True (False) over its whole output rectangle.
    sure = True
    for y in range(n_rows):
        sure = sure and ly[y] >= 0 and ly[y] < one
    for a in range(n_cols):
        sure = sure and lx[a] >= 0 and lx[a] < one
    code = np.empty(n_blocks, dtype=np.int8)  # per block of the current source column pair: 1 True, 0 False, 2 mixed
    events = np.empty(n_blocks, dtype=np.int64)  # blocks where the value may change: mixed, or unlike the one above
    n_events = 0
    changes = np.empty(n_rows + 1, dtype=np.int64)  # one output column's boundaries (output rows)
    out = np.empty(max(64, 4 * n_cols), dtype=np.int64)
    count = 0
    for a in range(n_cols):
        j0, j1, wx = c0[a], c1[a], lx[a]
        left, right = src_t[j0], src_t[j1]  # source columns, contiguous
        if a == 0 or j0 != c0[a - 1]:  # a new source column pair: classify its cells once for all its columns
            n_events = 0
            previous = 0
            for b in range(n_blocks):
                i0, i1 = top_rows[b], bottom_rows[b]
                p, q, u, v = left[i0], right[i0], left[i1], right[i1]
                if sure and p > tiny and q > tiny and u > tiny and v > tiny:
                    c = 1
                elif sure and p <= 0 and q <= 0 and u <= 0 and v <= 0:
                    c = 0
                else:
                    c = 2
                code[b] = c
                if c == 2 or c != previous:
                    events[n_events] = b
                    n_events += 1
                previous = c
        wx1 = one - wx
        n = 0
        state = False
        for e in range(n_events):
            b = events[e]
            c = code[b]
            ya = starts[b]
            if c != 2:
                if (c == 1) != state:
                    changes[n] = ya
                    n += 1
                    state = c == 1
                continue
            i0, i1 = top_rows[b], bottom_rows[b]
            top = left[i0] * wx1 + right[i0] * wx  # F.interpolate's arithmetic: width first, then height
            bottom = left[i1] * wx1 + right[i1] * wx
            if sure and ((top > tiny and bottom > tiny) or (top <= 0 and bottom <= 0)):
                # this column's two values agree: every pixel of the block has their sign, as for a settled cell
                if (top > 0) != state:
                    changes[n] = ya
                    n += 1
                    state = top > 0
                continue
            for y in range(ya, starts[b + 1]):
                wy = ly[y]
                value = top * (one - wy) + bottom * wy > 0
                if value != state:
                    changes[n] = y
                    n += 1
                    state = value
        if state:  # the run ends with the column
            changes[n] = n_rows
            n += 1
        if n == 0:
            continue
        if count + n > out.shape[0]:
            bigger = np.empty(max(2 * out.shape[0], count + n), dtype=np.int64)
            bigger[:count] = out[:count]
            out = bigger
        base = (x0 + a) * height + y0
        first = 0
        if count > 0 and out[count - 1] == base + changes[0]:
            count -= 1  # a run leaving the bottom of one column goes on at the top of the next: one run
            first = 1
        for k in range(first, n):
            out[count] = base + changes[k]
            count += 1
    return out[:count].copy()


#: The compiled kernel: ``KERNEL()`` is it, or None where Numba is missing or unusable (callers then use the numpy
#: form). Compiled once per machine (Numba caches it on disk).
KERNEL = Kernel(_column_toggles, "masks are made by the slower numpy form")


def column_toggles(
    src: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    cols: tuple[np.ndarray, np.ndarray, np.ndarray],
    origin: tuple[int, int],
    height: int,
) -> np.ndarray:
    """The canonical run boundaries of ``bilinear(src)[rows, cols] > 0`` placed at ``origin = (x0, y0)`` of an image
    ``height`` pixels high (see :func:`~fastsam.ops.rle.canonical_toggles`); releases the GIL.

    Args:
        src: ``(h, w)`` float32 source.
        rows, cols: taps from :func:`~fastsam.ops.sign_resize.linear_taps` (at least one output row and column).

    Returns:
        ``(2R,)`` int64 run starts and ends of the mask in the image's column-major pixel order.
    """
    kernel = KERNEL()
    if kernel is None:
        raise RuntimeError("numba is not usable here: pip install numba (or use fastsam.ops.sign_resize)")
    r0, r1, ly = (np.ascontiguousarray(rows[0], dtype=np.int64), np.ascontiguousarray(rows[1], dtype=np.int64),
                  np.ascontiguousarray(rows[2], dtype=np.float32))  # fmt: skip
    c0, c1, lx = (np.ascontiguousarray(cols[0], dtype=np.int64), np.ascontiguousarray(cols[1], dtype=np.int64),
                  np.ascontiguousarray(cols[2], dtype=np.float32))  # fmt: skip
    return kernel(np.ascontiguousarray(np.asarray(src, dtype=np.float32).T), r0, r1, ly, c0, c1, lx,
                           int(origin[0]), int(origin[1]), int(height))  # fmt: skip
