"""Stable identities for masks across video frames: ByteTrack-style association at the mask level.

Each frame, :meth:`MaskTracker.update` takes that frame's masks (boxes, scores and the masks themselves) and says
which track each mask continues. Association:

1. every track's box moves by a constant-velocity Kalman filter (:mod:`fastsam.video.kalman`), and its last mask
   is translated with it, so that fast moves still overlap;
2. similarity = IoU of the translated track mask with each new mask, on a coarse grid (:mod:`fastsam.video.mask_grid`),
   blended with the IoU of the predicted box and the new box (``box_weight``; more for masks of a few cells, only
   the box for masks under a cell, as in ByteTrack); for a lost track, at least half the
   fraction of the new mask inside the track's when the new mask is at most twice as large (an object reappears
   partly from behind something; a larger mask there is rather what hides it), and for a track last seen at the
   image border, of the smaller mask inside the other (the object comes back growing from the border);
3. as in ByteTrack, high-score masks are matched first (to tracked and lost tracks), then low-score masks to the
   tracks still unmatched (a partly occluded object scores low but keeps its identity), then tentative tracks;
   optimal one-to-one assignment by :func:`scipy.optimize.linear_sum_assignment`;
4. an unmatched track is *lost*: kept ``track_buffer`` frames and recovered with its identity if its object
   comes back (one that left the image waits where it was last seen); unmatched high-score masks start tentative
   tracks, confirmed after ``min_hits`` frames.

Why not a tracking library: supervision's ``ByteTrack`` and boxmot associate boxes only (a box IoU cannot tell two
crossing objects apart, a mask IoU can) and boxmot's better trackers need re-identification networks; the
assignment itself is scipy's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .kalman import BoxKalman, cxcywh_to_xyxy
from .mask_grid import GridMasks, grid_overlaps, grid_stride

TENTATIVE, TRACKED, LOST = 0, 1, 2


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of :class:`MaskTracker`.

    Attributes:
        high_score: masks scoring at least this are matched first and may start tracks.
        low_score: masks scoring below this are ignored; those in ``[low_score, high_score)`` only continue
            tracks that no high-score mask continued.
        new_track_score: score a mask needs to start a track (default: ``high_score``).
        match_iou: least similarity of a high-score match.
        low_match_iou: least similarity of a low-score match (stricter: low-score masks are less reliable).
        track_buffer: frames a lost track is kept before it is dropped (prompted tracks are never dropped).
        min_hits: consecutive matches that confirm a new track (1: at once); on the first frame every track is
            confirmed at once.
        grid_cells: cells on the long side of the grid the masks are compared on (:mod:`.mask_grid`).
        box_weight: weight of the predicted-box IoU in the similarity (the mask IoU gets ``1 - box_weight``).
        track_cells: a track's mask is kept thinned to about this many grid cells (:meth:`GridMasks.thinned`).
        small_cells: pairs whose smaller mask covers fewer grid cells than this lean on box IoU instead (only box
            IoU below a cell).
    """

    high_score: float = 0.5
    low_score: float = 0.1
    new_track_score: float | None = None
    match_iou: float = 0.2
    low_match_iou: float = 0.4
    track_buffer: int = 30
    min_hits: int = 2
    grid_cells: int = 160
    box_weight: float = 0.2
    track_cells: int = 256
    small_cells: int = 16

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_score <= self.high_score <= 1.0:
            raise ValueError(
                f"track scores must satisfy 0 <= low ({self.low_score}) <= high ({self.high_score}) <= 1"
            )
        if self.track_buffer < 0 or self.min_hits < 1 or self.grid_cells < 1:
            raise ValueError("track_buffer must be >= 0, min_hits >= 1 and grid_cells >= 1")
        if not 0.0 <= self.box_weight <= 1.0:
            raise ValueError(f"box_weight is a weight in [0, 1], got {self.box_weight}")

    @property
    def start_score(self) -> float:
        return self.high_score if self.new_track_score is None else self.new_track_score


@dataclass
class TrackUpdate:
    """What :meth:`MaskTracker.update` found in one frame.

    Attributes:
        frame: the frame index.
        track_ids: ``(N,)`` int64 track of each input mask, -1 for none (ignored, or a tentative track).
        confirmed: ``(N,)`` bool, True where ``track_ids`` is a confirmed track (the masks to report).
        lost_ids: ``(L,)`` int64 tracks not found in this frame but still kept.
        lost_boxes: ``(L, 4)`` float64 their Kalman-predicted xyxy boxes in this frame.
    """

    frame: int
    track_ids: np.ndarray
    confirmed: np.ndarray
    lost_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    lost_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


def pair_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(K,)`` IoU of the box pairs ``a[k]``, ``b[k]`` (``(K, 4)`` xyxy each; 0 for empty boxes)."""
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1) + np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union -= inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(A, B)`` IoU of ``(A, 4)`` and ``(B, 4)`` xyxy boxes (0 for empty boxes), float32."""
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    width = np.minimum.outer(a[:, 2], b[:, 2]) - np.maximum.outer(a[:, 0], b[:, 0])
    height = np.minimum.outer(a[:, 3], b[:, 3]) - np.maximum.outer(a[:, 1], b[:, 1])
    np.clip(width, 0, None, out=width)
    np.clip(height, 0, None, out=height)
    inter = width * height
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _assign(
    rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, row_ok: np.ndarray, col_ok: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matches among candidate pairs ``(rows[k], cols[k])`` with similarity ``sims[k]``, using
    only the rows (tracks) and columns (masks) flagged in ``row_ok`` / ``col_ok`` and pairs >= ``threshold``.

    Pairs that are each other's only candidate are matched directly; the rest go through
    :func:`scipy.optimize.linear_sum_assignment`. Returns the matched rows and columns.
    """
    from scipy.optimize import linear_sum_assignment

    keep = row_ok[rows] & col_ok[cols] & (sims >= threshold)
    r, c, v = rows[keep], cols[keep], sims[keep]
    if r.size == 0:
        return r, c
    alone = (np.bincount(r, minlength=len(row_ok))[r] == 1) & (np.bincount(c, minlength=len(col_ok))[c] == 1)
    out_r, out_c = [r[alone]], [c[alone]]
    if not alone.all():
        r, c, v = r[~alone], c[~alone], v[~alone]
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        block = np.zeros((len(ur), len(uc)))
        block[ri, ci] = v
        br, bc = linear_sum_assignment(block, maximize=True)
        good = block[br, bc] >= threshold
        out_r.append(ur[br[good]])
        out_c.append(uc[bc[good]])
    return np.concatenate(out_r), np.concatenate(out_c)


def _pairs_mask(rows: np.ndarray, cols: np.ndarray, subset: np.ndarray, n: int) -> np.ndarray:
    """``(len(subset), n)`` bool: which (subset row, column) pairs are among ``(rows, cols)``."""
    position = np.full(max(int(rows.max(initial=0)), int(subset.max(initial=0))) + 1, -1)
    position[subset] = np.arange(len(subset))
    out = np.zeros((len(subset), n), bool)
    on = position[rows] >= 0
    out[position[rows[on]], cols[on]] = True
    return out


class MaskTracker:
    """Give masks identities that persist from frame to frame (see the module docstring).

    Args:
        image_size: ``(H, W)`` of the frames, pixels.
        config: the settings (default :class:`TrackerConfig`).

    Example::

        tracker = MaskTracker((720, 1280))
        for result in results:                        # one SegmentationResult per frame
            masks = result.mask_windows() or result.masks
            update = tracker.update(result.boxes, result.scores, masks)
            ids = update.track_ids[update.confirmed]  # ids of the confirmed masks of this frame
    """

    def __init__(self, image_size: tuple[int, int], config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.stride = grid_stride(self.image_size, self.config.grid_cells)
        self._kalman = BoxKalman()
        self._next_id = 1
        self._frame: int | None = None
        self._ids = np.zeros(0, np.int64)
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 4, 3))
        self._state = np.zeros(0, np.int8)
        self._hits = np.zeros(0, np.int64)
        self._last = np.zeros(0, np.int64)  # frame of the last match
        self._pinned = np.zeros(0, bool)
        self._parked = np.zeros(0, bool)  # lost after leaving the image, waiting where it was last seen
        self._anchor = np.zeros((0, 2))  # filtered box centre when the track's mask was recorded
        self._masks = GridMasks.empty(GridMasks.grid_shape(self.image_size, self.stride), self.stride)
        self._previous: tuple[np.ndarray, GridMasks, np.ndarray] | None = None  # last frame: boxes, masks, rows

    def __len__(self) -> int:
        """Tracks kept (tentative, tracked and lost)."""
        return len(self._ids)

    @property
    def started(self) -> int:
        """Tracks started so far (the largest id given)."""
        return self._next_id - 1

    @property
    def frame(self) -> int | None:
        """Index of the last frame given to :meth:`update` (None before the first)."""
        return self._frame

    def state(self, track_id: int) -> int | None:
        """``TRACKED``, ``LOST`` or ``TENTATIVE`` for a kept track, None for an unknown or dropped one."""
        where = np.flatnonzero(self._ids == track_id)
        return int(self._state[where[0]]) if where.size else None

    def update(self, boxes: np.ndarray, scores: np.ndarray, masks: Any, frame: int | None = None) -> TrackUpdate:
        """Associate one frame's masks with the tracks.

        Args:
            boxes: ``(N, 4)`` xyxy pixels.
            scores: ``(N,)`` confidences in [0, 1].
            masks: the ``N`` masks: a :class:`~fastsam.masks.WindowedMasks`, an ``(N, H, W)`` bool array or torch
                tensor, or a :class:`~fastsam.video.mask_grid.GridMasks` already sampled with :attr:`stride`.
            frame: the frame's index; defaults to the previous one plus 1. A gap (frames dropped from a live
                source) moves the tracks that many frames.

        Returns:
            A :class:`TrackUpdate`.
        """
        cfg = self.config
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        grid = masks if isinstance(masks, GridMasks) else GridMasks.from_masks(masks, self.image_size, self.stride)
        if len(grid) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(grid)} masks")
        if grid.grid != self._masks.grid:
            raise ValueError(f"masks sampled on a {grid.grid} grid; this tracker uses {self._masks.grid}")
        first = self._frame is None
        frame = (0 if first else self._frame + 1) if frame is None else int(frame)
        if not first and frame <= self._frame:
            raise ValueError(f"frame {frame} does not come after frame {self._frame}")
        steps = 1 if first else frame - self._frame
        self._frame = frame
        self._mean, self._cov = self._kalman.predict(self._mean, self._cov, steps)

        pair_rows, pair_cols, pair_sims = self._similarity(boxes, grid)
        n = len(boxes)
        det_row = np.full(n, -1, np.int64)  # the track row each mask continues
        used = np.zeros(len(self._ids), bool)
        high = scores >= cfg.high_score
        low = (scores >= cfg.low_score) & ~high

        def match(row_ok: np.ndarray, col_ok: np.ndarray, threshold: float) -> None:
            r, c = _assign(pair_rows, pair_cols, pair_sims, row_ok, col_ok, threshold)
            det_row[c], used[r] = r, True

        match(self._state != TENTATIVE, high, cfg.match_iou)
        match((self._state == TRACKED) & ~used, low & (det_row < 0), cfg.low_match_iou)
        match(self._state == TENTATIVE, high & (det_row < 0), cfg.match_iou)

        matched = np.flatnonzero(det_row >= 0)
        rows = det_row[matched]
        thin = grid.thinned(cfg.track_cells)
        if matched.size:
            self._mean[rows], self._cov[rows] = self._kalman.update(self._mean[rows], self._cov[rows], boxes[matched])
            self._hits[rows] += 1
            self._last[rows] = frame
            self._anchor[rows] = self._mean[rows, :2]
            self._parked[rows] = False
            source = np.arange(len(self._ids))
            source[rows] = len(self._ids) + matched  # the matched tracks' masks become the new ones
            self._masks = self._masks.concat(thin).take(source)
            promote = (self._state[rows] == LOST) | (self._hits[rows] >= cfg.min_hits)
            self._state[rows[promote]] = TRACKED
        self._state[~used & (self._state == TRACKED)] = LOST
        self._park(~used & (self._state == LOST))
        age = frame - self._last
        self._mean[~used & self._pinned & (age > cfg.track_buffer), 4:] = 0.0  # a prompted object gone for long
        # waits where it was last expected
        expired = ~used & ((self._state == TENTATIVE) | ((age > cfg.track_buffer) & ~self._pinned))
        self._drop(expired, det_row)

        fresh = np.flatnonzero((det_row < 0) & (scores >= cfg.start_score))
        det_row[fresh] = self._start(boxes, thin, fresh, TRACKED if first or cfg.min_hits <= 1 else TENTATIVE)
        self._previous = (boxes, thin, det_row.copy())
        track_ids, confirmed = np.full(n, -1, np.int64), np.zeros(n, bool)
        on = np.flatnonzero(det_row >= 0)
        track_ids[on] = self._ids[det_row[on]]
        confirmed[on] = self._state[det_row[on]] == TRACKED
        lost = np.flatnonzero(self._state == LOST)
        return TrackUpdate(frame, track_ids, confirmed, self._ids[lost].copy(), cxcywh_to_xyxy(self._mean[lost, :4]))

    def adopt(self, index: int, pin: bool = True) -> int:
        """Make mask ``index`` of the last :meth:`update` a confirmed track (for a prompted object: ``pin`` keeps it
        however long it is lost) and return its id. A mask already on a track keeps that track."""
        if self._previous is None:
            raise RuntimeError("adopt() needs a frame: call update() first")
        boxes, thin, det_row = self._previous
        if not 0 <= index < len(boxes):
            raise IndexError(f"mask {index} is not among the {len(boxes)} masks of frame {self._frame}")
        row = int(det_row[index])
        if row < 0:
            row = int(self._start(boxes, thin, np.array([index]), TRACKED)[0])
            det_row[index] = row
        self._state[row] = TRACKED
        self._pinned[row] = self._pinned[row] or pin
        return int(self._ids[row])

    def _similarity(self, boxes: np.ndarray, grid: GridMasks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every track-mask pair whose masks (or, for small tracks, boxes) overlap: ``(rows, cols, similarity)``."""
        none = np.zeros(0, np.int64)
        if len(self._ids) == 0 or len(boxes) == 0:
            return none, none, np.zeros(0)
        cfg = self.config
        shift = np.rint((self._mean[:, :2] - self._anchor) / self.stride)  # motion since the mask was recorded
        rows, cols, iou, overlap = grid_overlaps(self._masks.shifted(shift[:, 0], shift[:, 1]), grid)
        lost = self._state[rows] == LOST
        if lost.any():  # a lost object often comes back partly (from behind something, into the frame): half
            # credit for the part of the new mask inside the track's, unless the new mask is more than twice as large
            # (then it is rather what hid the object); for a track that left the image, of the smaller mask inside
            # the other (it comes back growing from the border)
            det_area, track_area = grid.areas[cols[lost]], self._masks.areas[rows[lost]]
            extent, (grid_rows, grid_cols) = self._masks.extent[rows[lost]], grid.grid
            parked = self._parked[rows[lost]] | (extent[:, 0] <= 1) | (extent[:, 1] <= 1)  # last seen at the border
            parked |= (extent[:, 2] >= grid_rows - 2) | (extent[:, 3] >= grid_cols - 2)  # (within a cell of it)
            base = np.where(parked, np.minimum(det_area, track_area), det_area)
            inside = np.clip(overlap[lost] / np.maximum(base, 1e-9), 0.0, 1.0)
            inside[~parked & (det_area > 2 * track_area)] = 0.0
            iou[lost] = np.maximum(iou[lost], 0.5 * inside)
        predicted = cxcywh_to_xyxy(self._mean[:, :4])
        # A mask of a few grid cells says little about its shape: the smaller of a pair, the more its predicted
        # box decides (below small_cells cells, as in ByteTrack, only the box)
        mask_weight = np.clip(np.minimum(self._masks.areas[rows], grid.areas[cols]) / cfg.small_cells, 0.0, 1.0)
        mask_weight *= 1.0 - cfg.box_weight
        sims = mask_weight * iou + (1.0 - mask_weight) * pair_box_iou(predicted[rows], boxes[cols])
        small = np.flatnonzero(self._masks.areas < cfg.small_cells)
        # small tracks also meet masks whose grid cells they missed, by their boxes (masks over 8x larger could not
        # reach the match threshold by box IoU: skipped)
        fits = np.flatnonzero(grid.areas < 8 * cfg.small_cells)
        if small.size and fits.size:
            near = box_iou(predicted[small], boxes[fits])
            near[_pairs_mask(rows, cols, small, len(boxes))[:, fits]] = 0.0  # those pairs are already counted above
            near *= 1.0 - (self._masks.areas[small, None] / cfg.small_cells) * (1.0 - cfg.box_weight)
            sr, sc = np.nonzero(near > 0)
            rows, cols = np.concatenate([rows, small[sr]]), np.concatenate([cols, fits[sc]])
            sims = np.concatenate([sims, near[sr, sc]])
        return rows, cols, sims

    def _park(self, lost: np.ndarray) -> None:
        """Lost tracks predicted out of the image wait, at rest, where their mask was last seen: an object that
        left the frame is most likely to come back where it went out."""
        height, width = self.image_size
        centre = self._mean[:, :2]
        out = lost & ((centre[:, 0] < 0) | (centre[:, 0] > width) | (centre[:, 1] < 0) | (centre[:, 1] > height))
        self._mean[out, :2] = self._anchor[out]
        self._mean[out, 4:] = 0.0
        self._parked |= out

    def _start(self, boxes: np.ndarray, thin: GridMasks, indices: np.ndarray, state: int) -> np.ndarray:
        """New tracks for masks ``indices`` (their boxes among ``boxes``, thinned masks among ``thin``); returns
        their rows."""
        k = len(indices)
        if k == 0:
            return np.zeros(0, np.int64)
        mean, cov = self._kalman.initiate(boxes[indices])
        start = len(self._ids)
        self._ids = np.concatenate([self._ids, np.arange(self._next_id, self._next_id + k)])
        self._next_id += k
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._state = np.concatenate([self._state, np.full(k, state, np.int8)])
        self._hits = np.concatenate([self._hits, np.ones(k, np.int64)])
        self._last = np.concatenate([self._last, np.full(k, self._frame, np.int64)])
        self._pinned = np.concatenate([self._pinned, np.zeros(k, bool)])
        self._parked = np.concatenate([self._parked, np.zeros(k, bool)])
        self._anchor = np.concatenate([self._anchor, mean[:, :2]])
        self._masks = self._masks.concat(thin.take(indices))
        return np.arange(start, start + k)

    def _drop(self, drop: np.ndarray, det_row: np.ndarray) -> None:
        """Forget the tracks flagged in ``drop`` and renumber the rows held in ``det_row``."""
        if not drop.any():
            return
        keep = ~drop
        new_row = np.cumsum(keep) - 1
        det_row[:] = np.where(det_row >= 0, new_row[np.maximum(det_row, 0)], -1)
        self._ids, self._mean, self._cov = self._ids[keep], self._mean[keep], self._cov[keep]
        self._state, self._hits, self._last = self._state[keep], self._hits[keep], self._last[keep]
        self._pinned, self._anchor, self._parked = self._pinned[keep], self._anchor[keep], self._parked[keep]
        self._masks = self._masks.take(np.flatnonzero(keep))
