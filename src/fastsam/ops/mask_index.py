"""A compact index over a set of masks for fast point and box queries.

Masks are bit-packed along x into 64-bit words and a per-mask integral image over (row, word) is kept, so that
"which masks contain this point" is one bit test per mask and "how many pixels of each mask fall inside this
box" costs O(1) per mask plus two partial words per row of the box: a few milliseconds for 300 masks of a
1024x1024 image, with no Python loop over masks. Its size is ``N x H x W / 8`` bytes (300 masks of a 36 MP photo:
1.35 GB), so masks of big images are better queried through :class:`RunIndex`, which answers the same questions
from the masks' column-major runs (COCO RLE's order) in memory that follows the masks' boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .rle import mask_to_box, toggles_bounds_and_area, toggles_to_window

_WORD = 64


def _popcount64(words: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).astype(np.int64)
    as_bytes = words.view(np.uint8).reshape(*words.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(-1, dtype=np.int64)


class MaskIndex:
    """Point and box queries over ``(N, H, W)`` bool masks.

    Attributes:
        shape: ``(N, H, W)``.
        areas: ``(N,)`` int64 pixel counts.
        bboxes: ``(N, 4)`` int64 tight boxes xyxy, exclusive right/bottom (zeros for empty masks).
    """

    def __init__(self, masks: np.ndarray) -> None:
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 3:
            raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
        n, h, w = masks.shape
        n_words = (w + _WORD - 1) // _WORD
        packed = np.packbits(masks, axis=2, bitorder="little")  # (N, H, ceil(W / 8)) uint8
        padded = np.zeros((n, h, n_words * 8), dtype=np.uint8)
        padded[:, :, : packed.shape[2]] = packed
        self._finish(padded.view("<u8"), (n, h, w), mask_to_box(masks).astype(np.int64))

    @classmethod
    def from_windows(cls, windows: Sequence[np.ndarray], bounds: np.ndarray, image_size: tuple[int, int]) -> MaskIndex:
        """The index of masks given as windows, packing only the words each window covers (no ``(N, H, W)`` array).

        Args:
            windows: ``N`` bool arrays; mask ``k`` is ``windows[k]`` at rows ``y1:y2``, columns ``x1:x2`` and False
                elsewhere.
            bounds: ``(N, 4)`` int ``x1, y1, x2, y2`` of each window (half-open, inside the image).
            image_size: ``(H, W)``.
        """
        bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
        n, (h, w) = len(windows), (int(image_size[0]), int(image_size[1]))
        n_words = (w + _WORD - 1) // _WORD
        words = np.zeros((n, h, n_words), dtype="<u8")
        boxes = np.zeros((n, 4), dtype=np.int64)
        for k, (window, (x1, y1, x2, y2)) in enumerate(zip(windows, bounds.tolist())):
            rows, cols = np.flatnonzero(window.any(1)), np.flatnonzero(window.any(0))
            if rows.size == 0:
                continue
            boxes[k] = (x1 + cols[0], y1 + rows[0], x1 + cols[-1] + 1, y1 + rows[-1] + 1)
            k1, k2 = x1 // _WORD, (x2 - 1) // _WORD + 1  # the word columns the window touches
            strip = np.zeros((y2 - y1, (k2 - k1) * _WORD), dtype=bool)
            strip[:, x1 - k1 * _WORD : x2 - k1 * _WORD] = window
            words[k, y1:y2, k1:k2] = np.packbits(strip, axis=1, bitorder="little").view("<u8")
        index = cls.__new__(cls)
        index._finish(words, (n, h, w), boxes)
        return index

    def _finish(self, words: np.ndarray, shape: tuple[int, int, int], bboxes: np.ndarray) -> None:
        n, h, _ = shape
        self.shape = shape
        self.words = words  # (N, H, n_words) uint64, bit i of word k = column 64 k + i
        counts = _popcount64(words)  # (N, H, n_words)
        integral = np.zeros((n, h + 1, words.shape[2] + 1), dtype=np.int64)
        np.cumsum(np.cumsum(counts, axis=1), axis=2, out=integral[:, 1:, 1:])
        self.integral = integral
        self.areas = integral[:, -1, -1].copy()
        self.bboxes = bboxes

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Memory held by the index (packed bits, integral image, areas, boxes)."""
        return int(self.words.nbytes + self.integral.nbytes + self.areas.nbytes + self.bboxes.nbytes)

    def unpack(self, indices: np.ndarray) -> np.ndarray:
        """The masks ``indices`` as ``(K, H, W)`` bool (the index can stand in for the masks themselves)."""
        w = self.shape[2]
        words = self.words[np.asarray(indices, dtype=np.int64).reshape(-1)]  # (K, H, n_words)
        bits = np.unpackbits(words.view(np.uint8), axis=2, bitorder="little")
        return bits[:, :, :w].astype(bool)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which masks contain each point.

        Args:
            points: ``(P, 2)`` integer x, y pixel indices inside the image.

        Returns:
            ``(P, N)`` bool.
        """
        points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
        x, y = points[:, 0], points[:, 1]
        words = self.words[:, y, x // _WORD]  # (N, P)
        bits = (words >> (x % _WORD).astype(np.uint64)) & np.uint64(1)
        return bits.T.astype(bool)

    def box_counts(self, boxes: np.ndarray) -> np.ndarray:
        """Pixels of each mask inside each box.

        Args:
            boxes: ``(B, 4)`` integer x1, y1, x2, y2 with exclusive x2, y2, clipped to the image.

        Returns:
            ``(B, N)`` int64.
        """
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        out = np.zeros((boxes.shape[0], self.shape[0]), dtype=np.int64)
        for b, (x1, y1, x2, y2) in enumerate(boxes):
            if x2 <= x1 or y2 <= y1:
                continue
            out[b] = self._count(int(x1), int(y1), int(x2), int(y2))
        return out

    def _count(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        k1, k2 = x1 // _WORD, (x2 - 1) // _WORD  # first and last word touched
        if k1 == k2:
            return self._partial(k1, y1, y2, x1 % _WORD, (x2 - 1) % _WORD + 1)
        total = self._partial(k1, y1, y2, x1 % _WORD, _WORD) + self._partial(k2, y1, y2, 0, (x2 - 1) % _WORD + 1)
        if k2 > k1 + 1:  # whole words in between, from the integral image
            ii = self.integral
            total += ii[:, y2, k2] - ii[:, y1, k2] - ii[:, y2, k1 + 1] + ii[:, y1, k1 + 1]
        return total

    def _partial(self, k: int, y1: int, y2: int, lo: int, hi: int) -> np.ndarray:
        """Set bits lo <= bit < hi of word column ``k`` over rows y1 <= y < y2, per mask."""
        width = hi - lo
        bitmask = np.uint64(((1 << width) - 1) << lo) if width < _WORD else np.uint64(0xFFFFFFFFFFFFFFFF)
        return _popcount64(self.words[:, y1:y2, k] & bitmask).sum(1)



class RunIndex:
    """The queries of :class:`MaskIndex` (same answers), from each mask's runs of True in column-major order.

    Nothing is built: the index reads the run boundaries it is given (shared, not copied), so its memory is the
    masks' compressed size. A point query is one binary search per mask whose box holds the point; a box query
    reads the runs of each overlapping mask that cross the box's columns.

    Args:
        runs: ``N`` sorted integer arrays of run boundaries ``start, end, ...`` (column-major pixel indices
            ``x * H + y``, ends exclusive), as :class:`fastsam.masks.RunMasks` holds them.
        image_size: ``(H, W)``.
        bboxes, areas: the masks' tight boxes ``(N, 4)`` and pixel counts ``(N,)`` if already known.
    """

    def __init__(
        self,
        runs: Sequence[np.ndarray],
        image_size: tuple[int, int],
        bboxes: np.ndarray | None = None,
        areas: np.ndarray | None = None,
    ) -> None:
        self.runs = list(runs)
        h, w = int(image_size[0]), int(image_size[1])
        self.shape = (len(self.runs), h, w)
        if bboxes is None or areas is None:
            known = [toggles_bounds_and_area(np.asarray(r), h) for r in self.runs]
            bboxes = np.array([box for box, _ in known], dtype=np.int64)
            areas = np.array([area for _, area in known], dtype=np.int64)
        self.bboxes = np.asarray(bboxes, dtype=np.int64).reshape(-1, 4)
        self.areas = np.asarray(areas, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Memory held by the index (run boundaries, areas, boxes)."""
        return int(sum(r.nbytes for r in self.runs) + self.areas.nbytes + self.bboxes.nbytes)

    def unpack(self, indices: np.ndarray) -> np.ndarray:
        """The masks ``indices`` as ``(K, H, W)`` bool."""
        _, h, w = self.shape
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.zeros((indices.size, h, w), dtype=bool)
        for row, k in enumerate(indices.tolist()):
            x1, y1, x2, y2 = self.bboxes[k].tolist()
            if x2 > x1:
                out[row, y1:y2, x1:x2] = toggles_to_window(self.runs[k], (x1, y1, x2, y2), h)
        return out

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which masks contain each point: ``(P, 2)`` integer x, y inside the image -> ``(P, N)`` bool."""
        points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
        n, h, _ = self.shape
        x, y = points[:, 0], points[:, 1]
        b = self.bboxes
        boxed = (x[:, None] >= b[None, :, 0]) & (x[:, None] < b[None, :, 2])
        boxed &= (y[:, None] >= b[None, :, 1]) & (y[:, None] < b[None, :, 3])  # (P, N)
        out = np.zeros((points.shape[0], n), dtype=bool)
        position = x * h + y  # column-major
        for k in np.flatnonzero(boxed.any(0)).tolist():
            # inside when an odd number of the mask's run boundaries are at or before the pixel
            out[:, k] = np.searchsorted(self.runs[k], position, side="right") % 2 == 1
        return out

    def box_counts(self, boxes: np.ndarray) -> np.ndarray:
        """Pixels of each mask inside each box: ``(B, 4)`` integer x1, y1, x2, y2 (exclusive x2, y2, clipped to the
        image) -> ``(B, N)`` int64."""
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        out = np.zeros((boxes.shape[0], self.shape[0]), dtype=np.int64)
        b = self.bboxes
        for row, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            if x2 <= x1 or y2 <= y1:
                continue
            overlapping = (b[:, 0] < x2) & (b[:, 2] > x1) & (b[:, 1] < y2) & (b[:, 3] > y1)
            for k in np.flatnonzero(overlapping).tolist():
                out[row, k] = self._count(self.runs[k], x1, y1, x2, y2)
        return out

    def _count(self, toggles: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> int:
        """Pixels of one mask (its run boundaries) inside a box."""
        h = self.shape[1]
        # the runs that may cross columns x1 .. x2 - 1: from the one holding (or following) position x1 * H to the
        # last one starting before x2 * H
        lo = int(np.searchsorted(toggles, x1 * h, side="right")) // 2
        hi = (int(np.searchsorted(toggles, x2 * h, side="left")) + 1) // 2
        if hi <= lo:
            return 0
        start, end = toggles[2 * lo : 2 * hi : 2].astype(np.int64), toggles[2 * lo + 1 : 2 * hi : 2].astype(np.int64)
        x_start, y_start = np.divmod(start, h)
        x_end, y_end = np.divmod(end - 1, h)
        y_end += 1  # exclusive, in the run's last column
        # one-column runs; runs over several columns: a partial first and last column and full columns between
        same = x_start == x_end
        first_rows = np.where(same, np.minimum(y_end, y2), y2) - np.maximum(y_start, y1)
        first = ((x_start >= x1) & (x_start < x2)) * np.maximum(0, first_rows)
        last = np.where(same, 0, ((x_end >= x1) & (x_end < x2)) * np.maximum(0, np.minimum(y_end, y2) - y1))
        middle = np.where(same, 0, np.maximum(0, np.minimum(x_end, x2) - np.maximum(x_start + 1, x1)) * (y2 - y1))
        return int(first.sum() + last.sum() + middle.sum())
