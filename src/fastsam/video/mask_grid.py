"""Masks sampled on a coarse grid, for mask IoU between hundreds of masks in about a millisecond.

Associating 300 tracks with 300 masks of a 720p frame needs up to 90,000 mask IoUs per frame. Exact IoUs of
full-resolution masks (pycocotools RLE IoU) take tens of milliseconds there, so the tracker compares masks sampled
at the centres of a grid of ``stride x stride`` pixel cells (160 cells on the long side by default: 8 pixels at
720p). A mask is held as the flat indices of its sampled cells; all intersections then come from one sparse matrix
product (only overlapping pairs cost anything), and translating a mask is an addition to its indices.

Large masks can be *thinned* (:meth:`GridMasks.thinned`): only the cells on a sub-lattice of every ``f``-th row
and column are kept, each standing for ``f * f`` cells. Intersections with a thinned mask are then estimates, exact
to within the cells along its boundary, for a fraction of the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def grid_stride(image_size: tuple[int, int], cells: int = 160) -> int:
    """Pixels per grid cell so that the long side of an ``(H, W)`` image has about ``cells`` cells (at least 1)."""
    return max(1, round(max(image_size) / max(1, cells)))


@dataclass
class GridMasks:
    """``N`` masks as sets of grid cells.

    Attributes:
        cells: ``(K,)`` int32 flat cell indices ``row * cols + col``, mask after mask.
        counts: ``(N,)`` int64 cells held per mask.
        areas: ``(N,)`` float64 each mask's area in cells (``counts * weights``, exactly ``counts`` unless thinned).
        weights: ``(N,)`` float32 cells each held cell stands for (1, or ``f * f`` when thinned).
        extent: ``(N, 4)`` int64 ``row0, col0, row1, col1`` (inclusive) bounding the held cells.
        grid: ``(rows, cols)`` of the grid.
        stride: pixels per cell side; cell ``(r, c)`` samples pixel ``(r * stride + stride // 2, c * stride +
            stride // 2)``.
    """

    cells: np.ndarray
    counts: np.ndarray
    areas: np.ndarray
    weights: np.ndarray
    extent: np.ndarray
    grid: tuple[int, int]
    stride: int

    def __len__(self) -> int:
        return len(self.counts)

    @staticmethod
    def grid_shape(image_size: tuple[int, int], stride: int) -> tuple[int, int]:
        return -(-int(image_size[0]) // stride), -(-int(image_size[1]) // stride)

    @classmethod
    def empty(cls, grid: tuple[int, int], stride: int) -> GridMasks:
        """No masks."""
        return cls.from_parts([], grid, stride)

    @classmethod
    def from_parts(cls, parts: Sequence[np.ndarray], grid: tuple[int, int], stride: int,
                   weights: np.ndarray | None = None, extent: np.ndarray | None = None) -> GridMasks:  # fmt: skip
        """Masks given by their flat cell indices (one array each)."""
        n = len(parts)
        counts = np.fromiter((len(p) for p in parts), dtype=np.int64, count=n)
        cells = np.concatenate(parts).astype(np.int32, copy=False) if n else np.zeros(0, np.int32)
        weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
        if extent is None:
            extent = _extent(cells, counts, grid[1])
        return cls(cells, counts, counts * weights.astype(np.float64), weights, extent, grid, stride)

    @classmethod
    def from_windows(
        cls, windows: Sequence[np.ndarray], bounds: np.ndarray, image_size: tuple[int, int], stride: int
    ) -> GridMasks:
        """Sample masks given as box windows (see :class:`fastsam.masks.WindowedMasks`).

        A non-empty mask too thin to cover any sample point gets the cell under its window's centre, so that it
        can still be matched.
        """
        bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
        grid = cls.grid_shape(image_size, stride)
        cols = grid[1]
        n = len(bounds)
        if n == 0:
            return cls.from_parts([], grid, stride)
        half = stride // 2
        x1, y1, x2, y2 = bounds.T
        r0, c0 = (half - y1) % stride, (half - x1) % stride  # first sampled row/column inside each window
        view_h = np.maximum(0, -(-(y2 - y1 - r0) // stride))
        view_w = np.maximum(0, -(-(x2 - x1 - c0) // stride))
        # One pass over all the sampled windows laid end to end: no per-window nonzero
        views = [w[a::stride, b::stride] for w, a, b in zip(windows, r0.tolist(), c0.tolist())]
        flat = np.concatenate(views, axis=None)  # each view flattened inside numpy
        sizes = view_h * view_w
        hits = np.flatnonzero(flat).astype(np.int32)
        owner = np.repeat(np.arange(n, dtype=np.int32), sizes)[hits]
        local = hits - np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)[owner]
        width = view_w.astype(np.int32)[owner]
        row = local // width
        base = (((y1 + r0) // stride) * cols + (x1 + c0) // stride).astype(np.int32)  # each window's first cell
        cells = base[owner] + row * np.int32(cols) + (local - row * width)
        counts = np.bincount(owner, minlength=n).astype(np.int64)
        extent = np.stack([y1 // stride, x1 // stride, np.maximum(y2 - 1, 0) // stride,
                           np.maximum(x2 - 1, 0) // stride], axis=1)  # fmt: skip
        missed = [k for k in np.flatnonzero(counts == 0).tolist() if windows[k].size and windows[k].any()]
        if missed:  # a mask too thin for any sample point: the cell under its window's centre
            k = np.array(missed)
            centre = ((y1[k] + y2[k]) // 2 // stride) * cols + (x1[k] + x2[k]) // 2 // stride
            at = np.concatenate([[0], np.cumsum(counts)])[k]  # where the mask's (no) cells are
            cells = np.insert(cells, at, centre)
            counts[k] = 1
        ones = np.ones(n, np.float32)
        return cls(cells.astype(np.int32), counts, counts.astype(np.float64), ones, extent, grid, stride)

    @classmethod
    def from_masks(cls, masks: Any, image_size: tuple[int, int], stride: int) -> GridMasks:
        """Sample an ``(N, H, W)`` bool array, a :class:`~fastsam.masks.WindowedMasks`, or a torch tensor (sampled on
        its device, so only the grid comes back from a GPU)."""
        from ..masks import DeviceMasks, WindowedMasks

        if isinstance(masks, WindowedMasks):
            return cls.from_windows(masks.windows, masks.bounds, image_size, stride)
        if isinstance(masks, DeviceMasks):
            masks = masks.tensor
        half = stride // 2
        full = None
        if not isinstance(masks, np.ndarray) and hasattr(masks, "cpu"):  # a torch tensor
            sampled = masks[:, half::stride, half::stride].bool().cpu().numpy()
        else:
            full = np.asarray(masks, dtype=bool)
            if full.ndim != 3:
                raise ValueError(f"masks must be (N, H, W); got shape {full.shape}")
            sampled = full[:, half::stride, half::stride]
        grid = cls.grid_shape(image_size, stride)
        owner, rr, cc = np.nonzero(sampled)
        counts = np.bincount(owner, minlength=len(sampled)).astype(np.int64)
        flat, starts = rr * grid[1] + cc, np.concatenate([[0], np.cumsum(counts)[:-1]])
        parts = [flat[a : a + c] for a, c in zip(starts.tolist(), counts.tolist())]
        if full is not None:  # thin masks that no sample point hits: the cell of their centre
            for k in np.flatnonzero(counts == 0).tolist():
                ys, xs = np.nonzero(full[k])
                if ys.size:
                    parts[k] = np.array([(int(ys.mean()) // stride) * grid[1] + int(xs.mean()) // stride])
        return cls.from_parts(parts, grid, stride)

    @property
    def starts(self) -> np.ndarray:
        """``(N,)`` int64 position of each mask's first cell in :attr:`cells`."""
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64) if len(self) else self.counts

    def parts(self) -> list[np.ndarray]:
        """Each mask's cell indices, as ``N`` arrays (views)."""
        return [self.cells[a : a + n] for a, n in zip(self.starts.tolist(), self.counts.tolist())]

    def take(self, index: np.ndarray) -> GridMasks:
        """The masks ``index`` (int array, repeats allowed), in that order."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        counts = self.counts[index]
        out_starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(index) else counts
        gather = np.repeat(self.starts[index] - out_starts, counts) + np.arange(int(counts.sum()))
        return GridMasks(self.cells[gather], counts, self.areas[index], self.weights[index], self.extent[index],
                         self.grid, self.stride)  # fmt: skip

    def concat(self, other: GridMasks) -> GridMasks:
        """These masks followed by ``other``'s (same grid)."""
        if other.grid != self.grid:
            raise ValueError(f"the masks are sampled on different grids: {self.grid} and {other.grid}")
        return GridMasks(
            np.concatenate([self.cells, other.cells]), np.concatenate([self.counts, other.counts]),
            np.concatenate([self.areas, other.areas]), np.concatenate([self.weights, other.weights]),
            np.concatenate([self.extent, other.extent]), self.grid, self.stride,
        )  # fmt: skip

    def thinned(self, max_cells: int = 256) -> GridMasks:
        """The masks with more than ``max_cells`` cells kept only on a sub-lattice of every ``f``-th row and
        column (``f`` chosen per mask so that about ``max_cells`` to ``4 * max_cells`` cells remain)."""
        factor = np.maximum(1, np.floor(np.sqrt(self.counts / max(1, max_cells)))).astype(np.int32)
        if (factor == 1).all():
            return self
        cols = np.int32(self.grid[1])
        per_cell = np.repeat(factor, self.counts)
        at = np.flatnonzero(per_cell > 1)  # only the cells of large masks are looked at
        cells, f = self.cells[at], per_cell[at]
        rows = cells // cols
        off = ((rows % f) != 0) | (((cells - rows * cols) % f) != 0)
        keep = np.ones(len(self.cells), bool)
        keep[at[off]] = False
        owner = np.repeat(np.arange(len(self)), self.counts)
        counts = np.bincount(owner[keep], minlength=len(self)).astype(np.int64)
        missed = (counts == 0) & (self.counts > 0)  # the sub-lattice missed the mask: keep it whole
        if missed.any():
            keep |= missed[owner]
            factor[missed] = 1
            counts = np.bincount(owner[keep], minlength=len(self)).astype(np.int64)
        weights = factor.astype(np.float32) ** 2
        return GridMasks(self.cells[keep], counts, self.areas.copy(), weights, self.extent.copy(), self.grid,
                         self.stride)  # fmt: skip

    def shifted(self, dx: np.ndarray, dy: np.ndarray) -> GridMasks:
        """The masks translated by ``(N,)`` whole cells ``dx`` (right) and ``dy`` (down); cells that leave the grid
        are dropped (the masks' areas stay as they were)."""
        rows, cols = self.grid
        dx, dy = np.asarray(dx, dtype=np.int64), np.asarray(dy, dtype=np.int64)
        extent = self.extent + np.stack([dy, dx, dy, dx], axis=1)
        inside = (extent[:, 0] >= 0) & (extent[:, 1] >= 0) & (extent[:, 2] < rows) & (extent[:, 3] < cols)
        cells = self.cells + np.repeat(dy * cols + dx, self.counts).astype(np.int32)
        counts = self.counts
        if not inside.all():  # only the cells of masks crossing the border need a look
            owner = np.repeat(np.arange(len(self)), self.counts)
            check = np.flatnonzero(~inside[owner])
            moved = self.cells[check]
            r = moved // cols + dy[owner[check]]
            c = moved % cols + dx[owner[check]]
            keep = np.ones(len(cells), bool)
            keep[check] = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
            cells = cells[keep]
            counts = np.bincount(owner[keep], minlength=len(self)).astype(np.int64)
            extent = np.clip(extent, 0, [rows - 1, cols - 1, rows - 1, cols - 1])
        return GridMasks(cells, counts, self.areas, self.weights, extent, self.grid, self.stride)

    def _matrix(self, weighted: bool):
        from scipy.sparse import csr_matrix

        rows, cols = self.grid
        data = np.repeat(self.weights, self.counts) if weighted else np.ones(len(self.cells), np.float32)
        indptr = np.concatenate([[0], np.cumsum(self.counts)])
        return csr_matrix((data, self.cells, indptr), shape=(len(self), rows * cols))


def grid_overlaps(a: GridMasks, b: GridMasks) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of masks that overlap, with their IoU and intersection.

    ``a`` may be thinned (its intersections are then estimates); ``b`` should not be.

    Returns:
        ``(rows, cols, iou, overlap)``: indices into ``a`` and ``b`` of every overlapping pair, its float64 IoU and
        its intersection in cells.
    """
    if a.grid != b.grid:
        raise ValueError(f"the masks are sampled on different grids: {a.grid} and {b.grid}")
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    # b @ a.T rather than a @ b.T: the transposed operand is converted to CSR, and a (thinned) is the smaller
    inter = (b._matrix(weighted=False) @ a._matrix(weighted=True).T).tocoo()
    rows, cols = inter.col.astype(np.int64), inter.row.astype(np.int64)
    overlap = inter.data.astype(np.float64)
    union = a.areas[rows] + b.areas[cols] - overlap
    iou = np.clip(np.where(union > 0, overlap / np.maximum(union, 1e-9), 0.0), 0.0, 1.0)
    return rows, cols, iou, overlap


def grid_iou(a: GridMasks, b: GridMasks) -> np.ndarray:
    """``(len(a), len(b))`` float64 IoU of the sampled masks (0 where they do not overlap)."""
    out = np.zeros((len(a), len(b)))
    rows, cols, iou, _ = grid_overlaps(a, b)
    out[rows, cols] = iou
    return out


def _extent(cells: np.ndarray, counts: np.ndarray, cols: int) -> np.ndarray:
    """``(N, 4)`` row0, col0, row1, col1 of each mask's cells (zeros for a mask without cells)."""
    out = np.zeros((len(counts), 4), np.int64)
    has = counts > 0
    if not has.any():
        return out
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[has]
    r, c = cells // cols, cells % cols
    out[has, 0] = np.minimum.reduceat(r, starts)
    out[has, 1] = np.minimum.reduceat(c, starts)
    out[has, 2] = np.maximum.reduceat(r, starts)
    out[has, 3] = np.maximum.reduceat(c, starts)
    return out
