"""Mask encodings and geometry: COCO run-length encoding, areas, boxes and polygons.

Pure numpy functions (plus pycocotools for RLE, contourpy for polygons, and two Numba kernels, :data:`STRING_KERNEL`
and :data:`BOUNDS_KERNEL`, for masks held as runs). Conventions:

* masks are ``(N, H, W)`` bool arrays;
* boxes are ``(N, 4)`` float32 in pixels, xyxy in the *pixel-edge* convention: pixel ``(row, col)``
  covers ``[col, col + 1) x [row, row + 1)``, so a mask whose last column is ``c`` has ``x2 = c + 1``;
* polygons use the same pixel-edge coordinates, as ``(K, 2)`` float32 arrays of ``(x, y)``;
* a mask's *toggles* (:func:`canonical_toggles`) are its run boundaries in COCO RLE's column-major order,
  ``start, end, start, end, ...`` as pixel indices ``x * H + y``: the compact form of big masks, which unions,
  intersections, crops and moves (:func:`runs_union`, :func:`runs_intersection_area`, :func:`runs_in_box`,
  :func:`move_runs`) work on directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from contourpy import LineType, contour_generator
from pycocotools import mask as mask_utils

from ..jit import Kernel
from .parallel import map_slices


def _as_mask_stack(masks: np.ndarray) -> np.ndarray:
    """Validate an ``(N, H, W)`` mask stack and return it as bool."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W); got shape {masks.shape}")
    return masks if masks.dtype == np.bool_ else masks.astype(bool)


def mask_to_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """Encode masks as compressed COCO RLE.

    Each mask is encoded from its tight bounding box only (runs are found with one vectorised pass over the box,
    then offset to the column-major order of the whole image), so the cost follows the masks' extents rather
    than ``N x H x W``; pycocotools compresses the run lengths.

    Args:
        masks: ``(N, H, W)`` bool (any dtype is accepted; nonzero means inside).

    Returns:
        ``N`` dicts ``{"size": [H, W], "counts": str}``; ``counts`` is the compressed COCO string,
        decoded to ASCII so the dicts are JSON-serialisable. ``[]`` when ``N == 0``.
    """
    masks = _as_mask_stack(masks)
    return map_slices(masks.shape[0], lambda part: _encode(masks[part]))


def windows_to_rle(
    windows: Sequence[np.ndarray], bounds: np.ndarray, image_size: tuple[int, int]
) -> list[dict[str, Any]]:
    """Encode masks given by windows as compressed COCO RLE (equal to :func:`mask_to_rle` of the full masks).

    Args:
        windows: ``N`` bool arrays; mask ``k`` is ``windows[k]`` at rows ``y1:y2``, columns ``x1:x2`` of the image
            and False elsewhere.
        bounds: ``(N, 4)`` int ``x1, y1, x2, y2`` of each window (half-open pixel ranges inside the image).
        image_size: ``(H, W)`` of the image.

    Returns:
        ``N`` dicts ``{"size": [H, W], "counts": str}``.
    """
    bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
    if len(windows) != len(bounds):
        raise ValueError(f"{len(windows)} windows but {len(bounds)} bounds")
    height, width = (int(v) for v in image_size)
    return map_slices(len(windows), lambda part: _encode_windows(windows[part], bounds[part], height, width))


def _encode(masks: np.ndarray) -> list[dict[str, Any]]:
    return _encode_windows(*tight_windows(masks), *masks.shape[1:])


def tight_windows(masks: np.ndarray, boxes: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Each mask cut to its tight bounding box.

    Args:
        masks: ``(N, H, W)`` bool.
        boxes: their tight boxes if already known (as from :func:`mask_to_box`).

    Returns:
        ``N`` windows (views into ``masks``) and their ``(N, 4)`` int64 ``x1, y1, x2, y2`` bounds; an empty mask
        gets an empty window.
    """
    bounds = (mask_to_box(masks) if boxes is None else np.asarray(boxes)).astype(np.int64).reshape(-1, 4)
    return [mask[y1:y2, x1:x2] for mask, (x1, y1, x2, y2) in zip(masks, bounds.tolist())], bounds


def _encode_windows(windows: Sequence[np.ndarray], bounds: np.ndarray, height: int, width: int) -> list[dict[str, Any]]:
    runs = [_column_major_runs(window, x1, y1, height, width) for window, (x1, y1, _, _) in zip(windows, bounds.tolist())]
    return compress_runs(runs, (height, width))


def compress_runs(runs: Sequence[list[int]], image_size: tuple[int, int]) -> list[dict[str, Any]]:
    """Compressed COCO RLE dicts ``{"size": [H, W], "counts": str}`` from uncompressed run lengths (column-major,
    zeros first), one list per mask; pycocotools does the compression."""
    height, width = (int(v) for v in image_size)
    if not runs:
        return []
    encoded = mask_utils.frPyObjects([{"size": [height, width], "counts": r} for r in runs], height, width)
    return [{"size": [height, width], "counts": rle["counts"].decode("ascii")} for rle in encoded]


def _column_major_runs(window: np.ndarray, x1: int, y1: int, height: int, width: int) -> list[int]:
    """Uncompressed COCO run lengths (alternating 0s and 1s, column-major) of a mask that is ``window`` at
    ``(y1, x1)`` of a ``height x width`` image and False elsewhere."""
    h, w = window.shape
    if h == 0 or w == 0:
        return [height * width]
    padded = np.zeros((w, h + 2), dtype=bool)  # one background row above and below each column
    padded[:, 1:-1] = window.T
    flat = padded.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if change.size == 0:  # an all-False window
        return [height * width]
    pos = (x1 + change // (h + 2)) * height + (y1 + change % (h + 2) - 1)  # whole-image column-major index
    starts, ends = pos[0::2], pos[1::2]
    joined = ends[:-1] == starts[1:]  # a run that ends at the bottom and goes on at the top of the next column
    starts = starts[np.concatenate(([True], ~joined))]
    ends = ends[np.concatenate((~joined, [True]))]
    edges = np.empty(2 * len(starts) + 2, dtype=np.int64)
    edges[0], edges[-1] = 0, height * width
    edges[1:-1:2], edges[2:-1:2] = starts, ends
    runs = np.diff(edges)
    return (runs[:-1] if runs[-1] == 0 else runs).tolist()  # no trailing empty run of 0s


def canonical_toggles(positions: np.ndarray) -> np.ndarray:
    """A mask's run boundaries in canonical form: sorted, and a boundary met twice (a run that ends at the bottom
    of one column and goes on at the top of the next) removed.

    Args:
        positions: int column-major pixel indices ``x * H + y`` (``0 .. H * W``), in any order, where the mask's
            value changes from the previous index (index ``-1`` and ``H * W`` count as False).

    Returns:
        ``(2R,)`` int64 ``start_0, end_0, start_1, ...`` of the mask's ``R`` runs of True (ends exclusive).
    """
    toggles = np.sort(np.asarray(positions, dtype=np.int64).reshape(-1))
    twice = np.flatnonzero(toggles[1:] == toggles[:-1])
    if twice.size:
        toggles = np.delete(toggles, np.concatenate((twice, twice + 1)))
    return toggles


def toggles_to_counts(toggles: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Uncompressed COCO run lengths (zeros first, no trailing empty run) of a mask given by its
    :func:`canonical_toggles`; ``(K,)`` uint32, ready for :func:`compress_runs`."""
    total = int(image_size[0]) * int(image_size[1])
    counts = np.diff(np.concatenate(([0], np.asarray(toggles, dtype=np.int64), [total])))
    if counts.size > 1 and counts[-1] == 0:
        counts = counts[:-1]
    return counts.astype(np.uint32)


def toggles_to_window(toggles: np.ndarray, bounds: Sequence[int], height: int) -> np.ndarray:
    """The ``(y2 - y1, x2 - x1)`` bool window at ``bounds`` (``x1, y1, x2, y2``, which must contain the mask) of a
    mask given by its :func:`canonical_toggles` in an image ``height`` pixels high."""
    x1, y1, x2, y2 = (int(v) for v in bounds)
    h, w = y2 - y1, x2 - x1
    if h <= 0 or w <= 0:
        return np.zeros((max(h, 0), max(w, 0)), dtype=bool)
    toggles = np.asarray(toggles, dtype=np.int64)
    # a run's end is read as one past its last pixel, in that pixel's column (an end at the bottom of a column is
    # not the top of the next one)
    ends = toggles[1::2] - 1
    local = np.empty_like(toggles)
    local[0::2] = (toggles[0::2] // height - x1) * h + toggles[0::2] % height - y1
    local[1::2] = (ends // height - x1) * h + ends % height - y1 + 1
    lengths = np.diff(np.concatenate(([0], local, [h * w])))
    values = np.zeros(lengths.size, dtype=bool)
    values[1::2] = True
    return np.ascontiguousarray(np.repeat(values, lengths).reshape(w, h).T)


def _toggles_to_string(toggles: np.ndarray, total: int) -> np.ndarray:
    """The compressed COCO RLE string (as ASCII codes, uint8) of a mask given by its :func:`canonical_toggles` in an
    image of ``total`` pixels; compiled by Numba (:data:`STRING_KERNEL`).

    COCO's format: the run lengths (zeros first, no trailing empty run), each from the fourth on taken as the
    difference to the one two before, written 5 bits a character (least significant first; bit 5 = more follow;
    the last character's bit 4 is the sign) plus 48.
    """
    n = toggles.shape[0]
    m = n + 1  # the runs: zeros before the first toggle, ..., after the last one
    if n > 0 and np.int64(toggles[n - 1]) == total:
        m = n  # the mask reaches the last pixel: no trailing run of zeros
    out = np.empty(7 * m, dtype=np.uint8)  # a 33-bit difference takes at most 7 characters
    pos = 0
    last = np.int64(0)
    before, previous = np.int64(0), np.int64(0)  # the run lengths two back and one back
    for i in range(m):
        edge = np.int64(toggles[i]) if i < n else np.int64(total)
        count = edge - last
        last = edge
        x = count - before if i > 2 else count
        before, previous = previous, count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out[pos] = c + 48
            pos += 1
    return out[:pos].copy()


#: :func:`_toggles_to_string` compiled (None without a usable Numba: pycocotools compresses, the same strings)
STRING_KERNEL = Kernel(_toggles_to_string, "RLE strings are made by pycocotools, holding the GIL")


def toggles_to_rle(runs: Sequence[np.ndarray], image_size: tuple[int, int]) -> list[dict[str, Any]]:
    """Compressed COCO RLE dicts ``{"size": [H, W], "counts": str}`` of masks given by their
    :func:`canonical_toggles`: pycocotools' strings, made by a compiled encoder that releases the GIL (threads run
    it side by side), or by pycocotools where Numba is unusable."""
    height, width = (int(v) for v in image_size)
    kernel = STRING_KERNEL()
    if kernel is None:
        return compress_runs([toggles_to_counts(r, image_size) for r in runs], image_size)
    total = height * width
    return [{"size": [height, width], "counts": kernel(np.asarray(r), total).tobytes().decode("ascii")} for r in runs]


def toggle_dtype(image_size: tuple[int, int]) -> type[np.signedinteger]:
    """The integer type run boundaries of an ``image_size`` image are stored in: int32 below 2**31 pixels."""
    return np.int32 if int(image_size[0]) * int(image_size[1]) < 2**31 else np.int64


def _bounds_and_area(toggles: np.ndarray, height: int) -> tuple[int, int, int, int, int]:
    """:func:`toggles_bounds_and_area` of a non-empty mask in one pass (compiled by Numba): ``x1, y1, x2, y2, area``."""
    n = toggles.shape[0]
    area = 0
    top, bottom = height, 0
    for r in range(0, n, 2):
        start, end = np.int64(toggles[r]), np.int64(toggles[r + 1])
        area += end - start
        if start // height != (end - 1) // height:  # a run over several columns covers rows 0 .. H - 1
            top, bottom = 0, height
        else:
            top = min(top, start % height)
            bottom = max(bottom, (end - 1) % height + 1)
    return np.int64(toggles[0]) // height, top, (np.int64(toggles[n - 1]) - 1) // height + 1, bottom, area


#: :func:`_bounds_and_area` compiled (None without a usable Numba: numpy computes the same)
BOUNDS_KERNEL = Kernel(_bounds_and_area, "mask boxes are measured by numpy")


def toggles_bounds_and_area(toggles: np.ndarray, height: int) -> tuple[tuple[int, int, int, int], int]:
    """Tight box ``(x1, y1, x2, y2)`` (half-open; zeros when empty) and pixel count of a mask given by its
    :func:`canonical_toggles` in an image ``height`` pixels high."""
    if toggles.size == 0:
        return (0, 0, 0, 0), 0
    kernel = BOUNDS_KERNEL()
    if kernel is not None:
        x1, y1, x2, y2, area = kernel(toggles, int(height))
        return (int(x1), int(y1), int(x2), int(y2)), int(area)
    starts, ends = toggles[0::2].astype(np.int64), toggles[1::2].astype(np.int64)
    x_first, y_first = np.divmod(starts, height)
    x_last, y_last = np.divmod(ends - 1, height)
    one_column = x_first == x_last  # a run over several columns covers rows 0 .. H - 1
    top = int(y_first[one_column].min()) if one_column.all() else 0
    bottom = int(y_last[one_column].max()) + 1 if one_column.all() else height
    box = (int(x_first[0]), top, int(x_last[-1]) + 1, bottom)
    return box, int((ends - starts).sum())


def window_toggles(window: np.ndarray, x1: int, y1: int, height: int) -> np.ndarray:
    """The :func:`canonical_toggles` (int64) of a mask that is ``window`` at ``(y1, x1)`` of an image ``height``
    pixels high and False elsewhere."""
    h, w = window.shape
    if h == 0 or w == 0:
        return np.zeros(0, dtype=np.int64)
    padded = np.zeros((w, h + 2), dtype=bool)  # one background row above and below each column
    padded[:, 1:-1] = window.T
    flat = padded.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    return canonical_toggles((x1 + change // (h + 2)) * height + (y1 + change % (h + 2) - 1))


def column_runs(toggles: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mask's runs cut at column ends: ``x``, ``top``, ``bottom`` int64, the pixels ``top .. bottom - 1`` of
    column ``x`` for each piece, in column-major order.

    Args:
        toggles: the mask's :func:`canonical_toggles` in an image ``height`` pixels high.
    """
    starts, ends = np.asarray(toggles[0::2], dtype=np.int64), np.asarray(toggles[1::2], dtype=np.int64)
    x_first, y_first = np.divmod(starts, height)
    x_last, y_last = np.divmod(ends - 1, height)
    pieces = x_last - x_first + 1
    run = np.repeat(np.arange(starts.size), pieces)
    x = concat_ranges(x_first, pieces)
    top = np.where(x == x_first[run], y_first[run], 0)
    bottom = np.where(x == x_last[run], y_last[run] + 1, height)
    return x, top, bottom


def columns_to_toggles(x: np.ndarray, top: np.ndarray, bottom: np.ndarray, height: int) -> np.ndarray:
    """The :func:`canonical_toggles` of the union of column pieces (as :func:`column_runs` gives them; empty pieces
    are ignored) in an image ``height`` pixels high."""
    keep = bottom > top
    x, top, bottom = (np.asarray(v, dtype=np.int64)[keep] for v in (x, top, bottom))
    return runs_union([np.stack((x * height + top, x * height + bottom), axis=1).reshape(-1)], sorted_runs=False)


def runs_in_box(toggles: np.ndarray, box: Sequence[int], height: int) -> np.ndarray:
    """The :func:`canonical_toggles` of a mask (given by its toggles) cut to ``box`` (``x1, y1, x2, y2``, half-open)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    x, top, bottom = column_runs(toggles, height)
    inside = (x >= x1) & (x < x2)
    return columns_to_toggles(x[inside], np.maximum(top[inside], y1), np.minimum(bottom[inside], y2), height)


def move_runs(toggles: np.ndarray, height: int, offset: tuple[int, int], new_height: int) -> np.ndarray:
    """A mask of an image ``height`` pixels high placed at ``offset`` (``x, y``) in an image ``new_height`` pixels
    high (which must hold it), as :func:`canonical_toggles` there."""
    x, top, bottom = column_runs(toggles, height)
    dx, dy = int(offset[0]), int(offset[1])
    return columns_to_toggles(x + dx, top + dy, bottom + dy, new_height)


def runs_union(masks: Sequence[np.ndarray], sorted_runs: bool = True) -> np.ndarray:
    """The :func:`canonical_toggles` of the union of masks given by their toggles (or, with ``sorted_runs=False``,
    by ``start, end`` pairs of runs in any order that may overlap or touch)."""
    starts = np.concatenate([np.asarray(m, dtype=np.int64)[0::2] for m in masks] or [np.zeros(0, np.int64)])
    ends = np.concatenate([np.asarray(m, dtype=np.int64)[1::2] for m in masks] or [np.zeros(0, np.int64)])
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    positions, inverse = np.unique(np.concatenate((starts, ends)), return_inverse=True)
    change = np.bincount(inverse, weights=np.repeat([1.0, -1.0], starts.size), minlength=positions.size)
    covered = np.cumsum(change) > 0.5
    flips = np.flatnonzero(covered != np.concatenate(([False], covered[:-1])))
    return positions[flips]


def runs_intersection_area(a: np.ndarray, b: np.ndarray, filled_b: np.ndarray | None = None) -> int:
    """Pixels in both of two masks given by their :func:`canonical_toggles`: a binary search per run of ``a`` into
    ``b`` (pass the mask with fewer runs as ``a``), ``filled_b`` being :func:`filled_before` of ``b`` if known."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.size == 0 or b.size == 0:
        return 0
    filled = filled_before(b) if filled_b is None else filled_b
    return int((_covered_before(b, filled, a[1::2]) - _covered_before(b, filled, a[0::2])).sum())


def filled_before(toggles: np.ndarray) -> np.ndarray:
    """``(R + 1,)`` int64: pixels of a mask (its toggles) in its runs before run ``r``."""
    toggles = np.asarray(toggles, dtype=np.int64)
    return np.concatenate(([0], np.cumsum(toggles[1::2] - toggles[0::2])))


def _covered_before(toggles: np.ndarray, filled: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Pixels of a mask (its toggles and :func:`filled_before`) at indices below each of ``positions``."""
    k = np.searchsorted(toggles, positions, side="right")
    inside = k % 2 == 1  # within the run that starts at toggles[k - 1]
    return filled[k // 2] + np.where(inside, positions - toggles[np.maximum(k - 1, 0)], 0)


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` (int64)."""
    offsets = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - offsets, lengths)


def _to_compressed(rle: dict[str, Any]) -> dict[str, Any]:
    """Return a pycocotools-ready compressed RLE (``counts`` as bytes) from any COCO RLE form."""
    try:
        size = rle["size"]
        counts = rle["counts"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a COCO RLE dict (needs 'size' and 'counts'): {rle!r:.200}") from exc
    height, width = (int(v) for v in size)
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts.encode("ascii")}
    if isinstance(counts, bytes):
        return {"size": [height, width], "counts": counts}
    # Uncompressed RLE: counts is a list of run lengths starting with a run of zeros.
    counts_list = [int(c) for c in counts]
    return mask_utils.frPyObjects({"size": [height, width], "counts": counts_list}, height, width)


def rle_to_mask(rles: Sequence[dict[str, Any]], image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode COCO RLEs to a mask stack.

    Args:
        rles: dicts with ``"size": [H, W]`` and ``"counts"`` either a compressed string (``str`` or
            ``bytes``) or an uncompressed list of run lengths. All must have the same size.
        image_size: ``(H, W)`` used only to shape the result when ``rles`` is empty.

    Returns:
        ``(N, H, W)`` bool, C-contiguous. ``(0, H, W)`` (or ``(0, 0, 0)`` without ``image_size``)
        when ``rles`` is empty.
    """
    if len(rles) == 0:
        height, width = image_size if image_size is not None else (0, 0)
        return np.zeros((0, int(height), int(width)), dtype=bool)
    compressed = [_to_compressed(r) for r in rles]
    sizes = {tuple(r["size"]) for r in compressed}
    if len(sizes) != 1:
        raise ValueError(f"all RLEs must have the same size to stack them; got sizes {sorted(sizes)}")
    with warnings.catch_warnings():
        # pycocotools' Cython RLE objects predate numpy 2's __array__(copy=...) protocol.
        warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept a copy keyword")
        decoded = mask_utils.decode(compressed)  # (H, W, N) uint8, Fortran order
    return np.ascontiguousarray(decoded.transpose(2, 0, 1)).astype(bool)


def mask_area(masks: np.ndarray) -> np.ndarray:
    """Pixel count of each mask.

    Args:
        masks: ``(N, H, W)`` bool.

    Returns:
        ``(N,)`` int64 number of True pixels per mask.
    """
    masks = _as_mask_stack(masks)
    # A per-mask full count is ~10x faster than count_nonzero(..., axis=1), which is not SIMD-ed.
    return np.fromiter((np.count_nonzero(m) for m in masks), dtype=np.int64, count=masks.shape[0])


def mask_to_box(masks: np.ndarray) -> np.ndarray:
    """Tight bounding box of each mask, vectorised over the stack.

    Args:
        masks: ``(N, H, W)`` bool.

    Returns:
        ``(N, 4)`` float32 xyxy in pixel-edge convention: ``x1``/``y1`` are the first column/row
        containing the mask, ``x2``/``y2`` the last column/row **plus one**. Empty masks get
        ``[0, 0, 0, 0]``.
    """
    masks = _as_mask_stack(masks)
    n, height, width = masks.shape
    if n == 0:
        return np.zeros((0, 4), dtype=np.float32)
    rows = masks.any(axis=2)  # (N, H)
    cols = masks.any(axis=1)  # (N, W)
    y1 = rows.argmax(axis=1)
    y2 = height - rows[:, ::-1].argmax(axis=1)
    x1 = cols.argmax(axis=1)
    x2 = width - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    boxes[~rows.any(axis=1)] = 0.0
    return boxes


def box_xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Convert ``(N, 4)`` xyxy boxes to xywh (top-left corner, width, height).

    Args:
        boxes: ``(N, 4)`` xyxy, any real dtype, in pixels.

    Returns:
        ``(N, 4)`` xywh, a new array: the input's dtype if floating point, else float32.
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4); got shape {boxes.shape}")
    dtype = boxes.dtype if np.issubdtype(boxes.dtype, np.floating) else np.float32
    out = boxes.astype(dtype, copy=True)
    out[:, 2:] -= out[:, :2]
    return out


def _shoelace(ring: np.ndarray) -> float:
    """Signed area of a closed ring of ``(K, 2)`` points (positive = clockwise on screen, y down)."""
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_area(ring: np.ndarray, signed: bool = False) -> float:
    """Area in square pixels of a polygon given as ``(K, 2)`` ``(x, y)`` points (shoelace formula).

    With ``signed=True`` the sign gives the orientation in image coordinates (``y`` down): positive
    for rings running clockwise on screen (outer boundaries from :func:`mask_to_polygons`),
    negative for counter-clockwise ones (holes).
    """
    area = _shoelace(np.asarray(ring))
    return area if signed else abs(area)


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """Remove vertices lying on the straight segment between their neighbours (ring, unclosed)."""
    if len(ring) <= 3:
        return ring
    prev = np.roll(ring, 1, axis=0)
    nxt = np.roll(ring, -1, axis=0)
    cross = (ring[:, 0] - prev[:, 0]) * (nxt[:, 1] - ring[:, 1]) - (ring[:, 1] - prev[:, 1]) * (nxt[:, 0] - ring[:, 0])
    keep = np.abs(cross) > 1e-9
    return ring[keep] if keep.sum() >= 3 else ring


def mask_to_polygons(mask: np.ndarray, min_area: float = 0) -> list[np.ndarray]:
    """Trace the boundaries of a binary mask as polygons.

    The mask is cropped to its bounding box, padded with one row/column of zeros on every side (so
    regions touching the image border close) and contoured at level 0.5 with contourpy; the
    contour therefore runs half-way between inside and outside pixel centres (corners are cut
    diagonally, so a ``w x h`` rectangle yields an area of ``w*h - 0.5``).

    Every boundary is returned as its own ring: outer boundaries **and** hole boundaries. They can
    be told apart by orientation: ``polygon_area(ring, signed=True)`` is positive for outer
    rings (clockwise on screen, ``y`` down) and negative for holes.

    Args:
        mask: ``(H, W)`` bool.
        min_area: rings whose enclosed area (square pixels) is below this are dropped.

    Returns:
        List of ``(K, 2)`` float32 arrays of ``(x, y)`` in pixel-edge coordinates of the original
        image (pixel ``(row, col)`` spans ``[col, col+1] x [row, row+1]``), the convention of COCO
        polygons: ``pycocotools.mask.frPyObjects`` rasterises them back to the mask. Rings are not closed
        explicitly (the first point is not repeated) and collinear vertices are removed.
        ``[]`` for an empty mask.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W); got shape {mask.shape}")
    mask = mask.astype(bool, copy=False)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    padded = np.zeros((r1 - r0 + 2, c1 - c0 + 2), dtype=np.float64)
    padded[1:-1, 1:-1] = mask[r0:r1, c0:c1]
    gen = contour_generator(z=padded, name="serial", line_type=LineType.Separate)
    # Padded index j is pixel (j - 1 + offset) whose centre sits at (j - 1 + offset) + 0.5.
    offset = np.array([c0 - 0.5, r0 - 0.5])
    polygons: list[np.ndarray] = []
    for line in gen.lines(0.5):
        ring = np.asarray(line, dtype=np.float64)
        if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
            ring = ring[:-1]
        if len(ring) < 3:
            continue
        ring = _drop_collinear(ring + offset)
        area = abs(_shoelace(ring))
        if area == 0.0 or area < min_area:
            continue
        polygons.append(ring.astype(np.float32))
    return polygons
