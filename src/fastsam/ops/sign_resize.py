"""Thresholded bilinear upsampling, computed only where the threshold is in doubt.

A bilinear sample is a convex combination of its four source taps, so its sign is known without computing it
whenever the four taps agree in sign. :func:`upsample_positive` therefore repeats the source's sign over every
output pixel (a byte copy), and evaluates the interpolation (``F.interpolate``'s arithmetic: pixel-centre source
coordinates clamped at 0, width first, then height, float32) only for the pixels whose taps disagree, i.e. near
the mask's boundary. The result equals ``F.interpolate(src, size, mode="bilinear") > 0`` on a window, up to float
rounding of values within an ulp of 0. :func:`positive_transitions` gives the same mask as its column-major run
boundaries without making it, evaluating only the pixels next to each column's crossing: for big photos, where a
source cell spans tens of output pixels. NumPy, single-threaded: these are many small operations.
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


def mixed_cells(positive: np.ndarray) -> np.ndarray:
    """Source cell ``(i, j)`` is mixed if its taps ``(i, j), (i, j+1), (i+1, j), (i+1, j+1)`` (those inside the
    grid) disagree in sign; ``positive`` and the result are ``(h, w)`` bool."""
    mixed = np.zeros_like(positive)
    mixed[:, :-1] |= positive[:, :-1] != positive[:, 1:]
    mixed[:-1] |= positive[:-1] != positive[1:]
    mixed[:-1, :-1] |= positive[:-1, :-1] != positive[1:, 1:]
    mixed[:-1, :-1] |= positive[:-1, 1:] != positive[1:, :-1]
    return mixed


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
    mixed = mixed_cells(positive)
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


def positive_transitions(src: np.ndarray, rows: Taps, cols: Taps) -> tuple[np.ndarray, np.ndarray]:
    """Where ``upsample_positive(src, rows, cols)`` changes value down its columns, without making it.

    The upsampled mask is constant over the output rectangle of every source cell that is not mixed, and two
    vertically adjacent such rectangles differ only where a row of source cells maps to no output row. Inside a
    mixed cell, one output column is a linear interpolation between the column's values on the cell's top and
    bottom taps (``t`` and ``b``, computed exactly as :func:`upsample_positive` does): where they share a sign the
    whole column segment has it, and where they differ it changes once, at ``wy = t / (t - b)``. Only the pixels
    within ``1e-6`` of that crossing (and columns whose ``t`` or ``b`` is within ``1e-30`` of 0) are evaluated, with
    :func:`upsample_positive`'s float32 arithmetic; elsewhere the float32 result provably has the exact sign
    (rounding moves it by at most ``2.01 * 2**-24 * (|t| + |b|)``). So the work follows the number of source cells
    and of column segments crossing the boundary, not the output's area, and the answer is the same bit for bit.

    Args:
        src: ``(h, w)`` float32 source.
        rows, cols: taps from :func:`linear_taps` for the output rows and columns (increasing), ``Ho`` and ``Wo`` of
            them.

    Returns:
        ``x``, ``y`` int64 arrays (same length, in no particular order): output pixel ``(y, x)`` differs from
        ``(y - 1, x)``, counting rows ``-1`` and ``Ho`` as False, so ``0 <= y <= Ho``. Column-major sorted, they are
        the run boundaries of the output's column-major run-length encoding.
    """
    r0, r1, ly = rows
    c0, c1, lx = cols
    n_out = len(r0)
    ra, rb, ca, cb = int(r0[0]), int(r1[-1]) + 1, int(c0[0]), int(c1[-1]) + 1
    src = src[ra:rb, ca:cb]
    r0, r1, c0, c1 = r0 - ra, r1 - ra, c0 - ca, c1 - ca
    positive = src > 0
    mixed = mixed_cells(positive)
    # the grid of "blocks": source rows (columns) that are the first tap of at least one output row (column)
    row_runs = np.bincount(r0, minlength=src.shape[0])
    col_runs = np.bincount(c0, minlength=src.shape[1])
    block_rows, block_cols = np.flatnonzero(row_runs), np.flatnonzero(col_runs)
    heights, widths = row_runs[block_rows], col_runs[block_cols]
    top_row = np.cumsum(heights) - heights  # first output row (column) of each block row (column)
    left_col = np.cumsum(widths) - widths
    sign = positive[np.ix_(block_rows, block_cols)]
    doubt = mixed[np.ix_(block_rows, block_cols)]
    n_rows, n_cols = sign.shape

    # 1. between two blocks that are not mixed (or the False rows outside): one change per output column where the
    #    blocks' signs differ
    padded_sign = np.zeros((n_rows + 2, n_cols), dtype=bool)
    padded_sign[1:-1] = sign
    padded_doubt = np.zeros((n_rows + 2, n_cols), dtype=bool)
    padded_doubt[1:-1] = doubt
    flat = (padded_sign[:-1] != padded_sign[1:]) & ~padded_doubt[:-1] & ~padded_doubt[1:]
    edge_rows = np.append(top_row, n_out)  # boundary k lies above block row k (k = n_rows: the bottom edge)
    ks, bs = np.nonzero(flat)
    xs = [_expand_runs(left_col[bs], widths[bs])]
    ys = [np.repeat(edge_rows[ks], widths[bs])]
    cell_a, cell_b = np.nonzero(doubt)
    if cell_a.size == 0:
        return np.concatenate(xs), np.concatenate(ys)

    # 2. mixed cells, one column segment (output column x, the cell's output rows y0 .. y0 + h - 1) at a time
    cell_h, cell_w = heights[cell_a], widths[cell_b]
    cell_id = np.full(doubt.shape, -1, dtype=np.int64)
    cell_id[cell_a, cell_b] = np.arange(cell_a.size)
    # the block above and below each mixed cell: its cell id if mixed (else -1) and its sign (False outside)
    up, down = np.maximum(cell_a - 1, 0), np.minimum(cell_a + 1, n_rows - 1)
    has_up, has_down = cell_a > 0, cell_a < n_rows - 1
    up_id = np.where(has_up, cell_id[up, cell_b], -1)
    down_id = np.where(has_down, cell_id[down, cell_b], -1)
    up_sign = has_up & sign[up, cell_b]
    down_sign = has_down & sign[down, cell_b]

    seg_first = np.cumsum(cell_w) - cell_w  # the segments of cell c: seg_first[c] .. seg_first[c] + cell_w[c] - 1
    cell = np.repeat(np.arange(cell_a.size), cell_w)
    dx = np.arange(cell.size, dtype=np.int64) - seg_first[cell]
    x = left_col[cell_b][cell] + dx
    ci, cj = block_rows[cell_a], block_cols[cell_b]
    i1, j1 = r1[top_row[cell_a]], c1[left_col[cell_b]]
    wx = lx[x]
    one = np.float32(1)
    t = src[ci, cj][cell] * (one - wx) + src[ci, j1][cell] * wx  # upsample_positive's `top`, `bottom`
    b = src[i1, cj][cell] * (one - wx) + src[i1, j1][cell] * wx
    del wx
    # A segment is its rows y0 .. cut - 1 with the sign of `t` (`head`), then rows cut .. y0 + h - 1 with the sign
    # of `b` (`tail`), except the `unsure` ones, evaluated row by row.
    tiny = np.float32(1e-30)
    unsure = (np.abs(t) <= tiny) | (np.abs(b) <= tiny)
    if bool((ly >= 1).any()):  # weights are in [0, 1) by construction: otherwise evaluate everything
        unsure[:] = True
    head, tail = t > 0, b > 0
    cut = top_row[cell_a][cell]  # a fresh array: y0 for now
    cross = np.flatnonzero(~unsure & (head != tail))
    if cross.size:
        c = cell[cross]
        row, found = _crossing_rows(t[cross], b[cross], top_row[cell_a][c], (top_row + heights)[cell_a][c], ly)
        cut[cross] = row
        unsure[cross[~found]] = True
    y0 = top_row[cell_a][cell]
    stop = y0 + cell_h[cell]
    first_value = np.where(cut > y0, head, tail)
    last_value = np.where(cut < stop, tail, head)
    changed = np.flatnonzero((cut > y0) & (cut < stop) & (head != tail))
    odd = np.flatnonzero(unsure)
    if odd.size:  # evaluate their pixels; their changes replace the head/tail ones
        changed = changed[~unsure[changed]]
        counts = cell_h[cell[odd]]
        pixel_seg = np.repeat(odd, counts)
        py = _expand_runs(y0[odd], counts)
        wy = ly[py]
        value = (t[pixel_seg] * (one - wy) + b[pixel_seg] * wy) > 0
        ends = np.cumsum(counts)
        first_value[odd], last_value[odd] = value[ends - counts], value[ends - 1]
        inner = np.flatnonzero(py > y0[pixel_seg])
        inner = inner[value[inner] != value[inner - 1]]
        xs.append(x[pixel_seg[inner]])
        ys.append(py[inner])
    xs.append(x[changed])
    ys.append(cut[changed])
    # across the top of each segment: against the block above (its segment's last value if that block is mixed)
    above = up_sign[cell]
    mixed_above = np.flatnonzero(up_id[cell] >= 0)
    shift = seg_first[np.maximum(up_id, 0)] - seg_first  # the segment above, same column: same width, same dx
    above[mixed_above] = last_value[mixed_above + shift[cell[mixed_above]]]
    changed = np.flatnonzero(first_value != above)
    xs.append(x[changed])
    ys.append(y0[changed])
    # across the bottom, where the block below is not mixed (or is the outside)
    changed = np.flatnonzero((down_id[cell] < 0) & (last_value != down_sign[cell]))
    xs.append(x[changed])
    ys.append(stop[changed])
    return np.concatenate(xs), np.concatenate(ys)


_BAND = 1e-6  # a row weight this close to a column's crossing is evaluated (float32 rounding moves it < 2.1e-7)


def _crossing_rows(
    t: np.ndarray, b: np.ndarray, first: np.ndarray, stop: np.ndarray, ly: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For column segments (rows ``first .. stop - 1``, row weights ``ly`` increasing along them) whose top and bottom
    values ``t``, ``b`` differ in sign: the first row past the crossing ``t / (t - b)``, where the value turns from
    the sign of ``t`` to the sign of ``b``, found from a linear estimate and checked exactly.

    Returns:
        ``row`` int64 (``first .. stop``) and ``found`` bool: False where the row could not be confirmed with every
        row weight more than :data:`_BAND` from the crossing (such segments are evaluated row by row).
    """
    weights = ly.astype(np.float64)
    last = len(weights) - 1
    t64 = t.astype(np.float64)
    at = t64 / (t64 - b)
    start = weights[first]
    step = weights[np.minimum(first + 1, last)] - start
    step[(stop - first < 2) | (step <= 0)] = 1.0
    row = first + np.ceil((at - start) / step).astype(np.int64)
    np.clip(row, first, stop, out=row)
    # the estimate may be a row off where float32 weights are not evenly spaced; then confirm
    row += (row < stop) & (weights[np.minimum(row, last)] < at)
    row -= (row > first) & (weights[np.maximum(row - 1, 0)] >= at)
    found = (row == first) | (weights[np.maximum(row - 1, 0)] < at - _BAND)
    found &= (row == stop) | (weights[np.minimum(row, last)] > at + _BAND)
    return row, found


def _expand_runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorised (int64)."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lengths)
