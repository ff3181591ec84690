"""Tiled everything mode: small objects in big photos.

The network sees an image shrunk to ``imgsz`` pixels on its longer side, so on a 6000 x 6000 photo at 1024 an
object must be about 30 pixels across to span the 5 input pixels a mask needs. :func:`segment_tiled` also runs it
on overlapping tiles (:func:`fastsam.ops.tiles.tile_grid`; ``"auto"``: tiles of at most ``imgsz`` pixels, seen at
full detail) and combines everything in the image's frame, on the masks' column-major runs (no mask is laid out):

1. every tile mask is moved to the image frame, and marked *cut* on each side where it reaches an edge of its
   tile that is not the image's edge;
2. masks of two overlapping tiles are the same object when at least one is cut and, inside the area the two tiles
   share, they agree (IoU >= :data:`MERGE_IOU`; each mask paired at most once per pair of tiles, best IoU first):
   such masks are joined (their union, best score), so an object cut by tile edges comes out as one mask;
3. a joined mask is *complete* when each cut of its members is covered by a member from a tile across that edge;
4. duplicates go, keeping first complete tile masks (full detail), then the whole-image masks, then incomplete
   tile masks, each by score. A mask is the same object as a kept mask of another pass when their IoU is
   >= :data:`DUPLICATE_IOU`, or when the smaller lies :data:`COVERED` or more inside the larger and their areas
   differ by at most :data:`SIZE_RATIO`; a whole-image mask less than :data:`COARSE` network input pixels across
   (too coarse for IoU: a small object's blob next to its full-detail tile mask) is the same object as a tile mask
   when half of the smaller lies inside the larger and their areas differ by at most ``2 * SIZE_RATIO``. An
   incomplete tile mask lying :data:`COVERED` or more inside a kept mask is a piece of it. Masks of one pass are
   never compared: the network's own NMS chose them, nested masks included.

Cost: one network pass per tile plus the whole-image pass (an ``n x n`` grid: ``n**2 + 1`` passes), and the masks
of every tile; see the README ("Big photos") for measured numbers. ``max_det`` applies to each pass, so a tiled
result can hold more masks than ``max_det``. Boxes of masks found on tiles are their masks' tight boxes (after
FastSAM's box step for the whole image); masks found on the whole image keep their network boxes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .masks import RunMasks, WindowedMasks
from .ops.rle import (
    column_runs,
    concat_ranges,
    filled_before,
    move_runs,
    runs_in_box,
    runs_intersection_area,
    runs_union,
    tight_windows,
    toggles_bounds_and_area,
)
from .ops.tiles import check_tiling, tile_grid, tiles_for_detail
from .postprocess import fastsam_box_step
from .results import SegmentationResult

MERGE_IOU = 0.5  # tile masks whose parts in the tiles' shared area agree this well are one object
DUPLICATE_IOU = 0.5  # a mask this similar to a kept mask of another pass is the same object seen twice
COVERED = 0.8  # share of a mask's pixels inside another for "the same object" (sizes within SIZE_RATIO) or "a piece"
SIZE_RATIO = 2.0  # masks whose areas differ more than this are not one object seen at two resolutions
COARSE = 8  # whole-image masks fewer network input pixels across than this are compared loosely (see above)
MIN_SHARED_PIXELS = 4  # tile masks with fewer pixels than this in the shared area are not compared there
SHARED_SAMPLES = 4096  # points of a shared area on which the IoU of two large masks there is counted

Segment = Callable[[Sequence[np.ndarray]], list[SegmentationResult]]
"""Everything mode on a batch of RGB uint8 images: one result per image, in its own frame."""


def tile_count(image_hw: tuple[int, int], tiles: int | str, overlap: float, imgsz: int) -> int:
    """Tiles along the longer side for ``tiles`` (an int, or ``"auto"``: full detail at ``imgsz``)."""
    check_tiling(tiles, overlap)
    if tiles == "auto":
        return tiles_for_detail(max(image_hw), imgsz, overlap)
    return int(tiles)


def run_masks(result: SegmentationResult) -> RunMasks:
    """A result's masks as :class:`~fastsam.masks.RunMasks` (as held on a CPU; encoded from other forms)."""
    held = result.mask_runs()
    if held is not None:
        return held
    windows = result.mask_windows()
    if windows is None:
        windows = WindowedMasks(*tight_windows(np.asarray(result.masks, dtype=bool)), result.image_size)
    return RunMasks.from_windows(windows)


@dataclass
class _Candidates:
    """Masks in the image frame, with where they come from."""

    runs: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    tiles: list[int] = field(default_factory=list)  # index into the grid, -1: the whole-image pass
    cuts: list[np.ndarray] = field(default_factory=list)  # (4,) bool: cut at the tile's left, top, right, bottom
    boxes: list[np.ndarray] = field(default_factory=list)  # (4,) float32: the box the result gives


def segment_tiled(
    image: np.ndarray,
    segment: Segment,
    tiles: int | str = "auto",
    overlap: float = 0.2,
    imgsz: int = 1024,
    batch_size: int = 4,
    file_name: str = "",
) -> SegmentationResult:
    """Everything mode on the whole image and on overlapping tiles, combined (see the module docstring).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        segment: runs everything mode on a list of crops (:data:`Segment`).
        tiles: tiles along the longer side, or ``"auto"``; 1 is the whole-image pass alone.
        overlap: fraction of a tile shared with its neighbour, in ``[0, 0.9)``.
        imgsz: the network input size (for ``"auto"``).
        batch_size: crops per call of ``segment``.
        file_name: the result's file name.

    Returns:
        One :class:`~fastsam.results.SegmentationResult` in the image's frame, masks held as runs, by decreasing
        score.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    grid = tile_grid((height, width), tile_count((height, width), tiles, overlap, imgsz), overlap)
    [whole] = segment([image])
    if len(grid) == 1:
        return whole
    found = _Candidates()
    _add(found, whole, -1, (0, 0, width, height), (height, width))
    for start in range(0, len(grid), batch_size):
        part = grid[start : start + batch_size]
        crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in part.tolist()]
        for offset, result in enumerate(segment(crops)):
            _add(found, result, start + offset, tuple(part[offset].tolist()), (height, width))
    return _combine(found, grid, image, file_name, whole, max(height, width) / imgsz)


def _add(found: _Candidates, result: SegmentationResult, tile: int, box: tuple[int, int, int, int],
         image_hw: tuple[int, int]) -> None:  # fmt: skip
    """Move a pass's masks to the image frame and note where each is cut by an inner tile edge."""
    masks = run_masks(result)
    height, width = image_hw
    x1, y1, x2, y2 = box
    inner = np.array([x1 > 0, y1 > 0, x2 < width, y2 < height])  # tile edges that are not the image's
    tile_w, tile_h = x2 - x1, y2 - y1
    for k in range(len(masks)):
        runs = masks.runs[k]
        if runs.size == 0:
            continue
        bx1, by1, bx2, by2 = masks.bounds[k].tolist()
        reaches = np.array([bx1 == 0, by1 == 0, bx2 == tile_w, by2 == tile_h])
        found.runs.append(runs.astype(np.int64) if tile < 0 else move_runs(runs, tile_h, (x1, y1), height))
        found.scores.append(float(result.scores[k]))
        found.tiles.append(tile)
        found.cuts.append(reaches & inner if tile >= 0 else np.zeros(4, dtype=bool))
        found.boxes.append(np.asarray(result.boxes[k], dtype=np.float32))


class _Groups:
    """Union-find over candidate indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _bounds(runs: list[np.ndarray], height: int) -> np.ndarray:
    """``(N, 4)`` int64 tight boxes of masks given by their runs."""
    return np.array([toggles_bounds_and_area(r, height)[0] for r in runs], dtype=np.int64).reshape(-1, 4)


def _overlapping(boxes: np.ndarray, box: Sequence[int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return (boxes[:, 0] < x2) & (boxes[:, 2] > x1) & (boxes[:, 1] < y2) & (boxes[:, 3] > y1)


def _combine(found: _Candidates, grid: np.ndarray, image: np.ndarray, file_name: str, whole: SegmentationResult,
             input_pixel: float) -> SegmentationResult:  # fmt: skip
    """Steps 2 to 4 of the module docstring; ``input_pixel``: image pixels per network input pixel, whole image."""
    height, width = int(image.shape[0]), int(image.shape[1])
    n = len(found.runs)
    tiles = np.array(found.tiles, dtype=np.int64)
    cuts = np.array(found.cuts, dtype=bool).reshape(-1, 4)
    bounds = _bounds(found.runs, height)
    groups = _Groups(n)
    # 2. join masks of overlapping tiles that agree inside the shared area (at least one of them cut)
    for a in range(len(grid)):
        for b in range(a + 1, len(grid)):
            shared = (max(grid[a, 0], grid[b, 0]), max(grid[a, 1], grid[b, 1]),
                      min(grid[a, 2], grid[b, 2]), min(grid[a, 3], grid[b, 3]))  # fmt: skip
            if shared[2] <= shared[0] or shared[3] <= shared[1]:
                continue
            in_a = np.flatnonzero((tiles == a) & _overlapping(bounds, shared))
            in_b = np.flatnonzero((tiles == b) & _overlapping(bounds, shared))
            if in_a.size == 0 or in_b.size == 0:
                continue
            for i, j in _matches(found.runs, in_a, in_b, cuts, shared, height):
                groups.join(i, j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(groups.find(i), []).append(i)
    # 3. joined masks, whether each is complete; 4. drop duplicates in order of preference
    runs, scores, kinds, boxes, tile_made, passes = [], [], [], [], [], []
    for group in members.values():
        scores.append(max(found.scores[i] for i in group))
        passes.append(frozenset(tiles[group].tolist()))
        if len(group) == 1 and tiles[group[0]] < 0:  # a whole-image mask
            runs.append(found.runs[group[0]])
            kinds.append(1)
            boxes.append(found.boxes[group[0]])
            tile_made.append(False)
            continue
        runs.append(found.runs[group[0]] if len(group) == 1 else runs_union([found.runs[i] for i in group]))
        kinds.append(0 if _complete(group, tiles, cuts, grid) else 2)
        boxes.append(None)
        tile_made.append(True)
    order = sorted(range(len(runs)), key=lambda i: (kinds[i], -scores[i], i))
    all_bounds = _bounds(runs, height)
    areas = np.array([int((r[1::2] - r[0::2]).sum()) for r in runs], dtype=np.int64)
    sides = np.minimum(all_bounds[:, 2] - all_bounds[:, 0], all_bounds[:, 3] - all_bounds[:, 1])
    coarse = (np.array(kinds) == 1) & (sides < COARSE * input_pixel)
    kept: list[int] = []
    filled: dict[int, np.ndarray] = {}  # filled_before() of the kept masks, each compared many times
    for i in order:
        others = np.array(kept, dtype=np.int64)
        # what the boxes allow: each rule needs a share of a mask inside the other, most of them similar sizes
        b = all_bounds[others]
        overlap = (np.minimum(b[:, 2], all_bounds[i, 2]) - np.maximum(b[:, 0], all_bounds[i, 0])).clip(0) * (
            np.minimum(b[:, 3], all_bounds[i, 3]) - np.maximum(b[:, 1], all_bounds[i, 1])).clip(0)  # fmt: skip
        small, large = np.minimum(areas[others], areas[i]), np.maximum(areas[others], areas[i])
        similar = large <= SIZE_RATIO * small
        possible = similar & (overlap >= np.minimum(DUPLICATE_IOU * large, COVERED * small))  # the first two rules
        possible |= (coarse[others] | coarse[i]) & (large <= 2 * SIZE_RATIO * small) & (overlap >= 0.5 * small)
        if kinds[i] == 2:
            possible |= overlap >= COVERED * areas[i]
        near = others[possible]
        if not any(_same_object(i, j, runs, areas, kinds, coarse, passes, filled) for j in near.tolist()):
            kept.append(i)
            filled[i] = filled_before(runs[i])
    kept.sort(key=lambda i: (-scores[i], i))
    tight = torch.from_numpy(all_bounds[[i for i in kept if tile_made[i]]].astype(np.float32))
    snapped = iter(fastsam_box_step(tight, (height, width)).numpy())
    out_boxes = [boxes[i] if not tile_made[i] else next(snapped) for i in kept]
    return SegmentationResult(
        masks=RunMasks([runs[i] for i in kept], (height, width)),
        boxes=np.array(out_boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.array([scores[i] for i in kept], dtype=np.float32),
        image_size=(height, width),
        file_name=file_name or whole.file_name,
        image=image,
    )


def _matches(runs: list[np.ndarray], in_a: np.ndarray, in_b: np.ndarray, cuts: np.ndarray, shared: tuple[int, ...],
             height: int) -> list[tuple[int, int]]:  # fmt: skip
    """Pairs of masks (one of tile A, one of tile B, at least one cut) that agree inside the ``shared`` area: IoU >=
    :data:`MERGE_IOU` there, each mask in at most one pair (greedily, best IoU first).

    The IoU is counted on a grid of at most :data:`SHARED_SAMPLES` points of the shared area (exactly, from the
    runs, where either mask covers fewer than 32 of them): a tile holds up to ``max_det`` masks, and this compares
    every pair of them at the cost of one small matrix product.
    """
    x1, y1, x2, y2 = (int(v) for v in shared)
    parts = [runs_in_box(runs[i], shared, height) for i in np.concatenate((in_a, in_b)).tolist()]
    areas = np.array([int((p[1::2] - p[0::2]).sum()) for p in parts], dtype=np.int64)
    step = max(1, int(np.ceil(np.sqrt((x2 - x1) * (y2 - y1) / SHARED_SAMPLES))))
    xs, ys = np.arange(x1 + step // 2, x2, step), np.arange(y1 + step // 2, y2, step)
    samples = np.zeros((len(parts), xs.size * ys.size), dtype=np.float32)
    for k, part in enumerate(parts):
        x, top, bottom = column_runs(part, height)
        column = np.searchsorted(xs, x)
        hit = (column < xs.size) & (xs[np.minimum(column, xs.size - 1)] == x)
        first, stop = np.searchsorted(ys, top[hit]), np.searchsorted(ys, bottom[hit])
        samples[k, concat_ranges(column[hit] * ys.size + first, stop - first)] = 1.0
    na = in_a.size
    sa, sb = samples[:na], samples[na:]
    counts_a, counts_b = sa.sum(1)[:, None], sb.sum(1)[None, :]
    inter = sa @ sb.T
    iou = inter / np.maximum(counts_a + counts_b - inter, 1)
    few = np.minimum(counts_a, counts_b) < 32
    few &= (areas[:na, None] >= MIN_SHARED_PIXELS) & (areas[None, na:] >= MIN_SHARED_PIXELS)
    for ia, jb in zip(*np.nonzero(few)):
        exact = runs_intersection_area(parts[ia], parts[na + jb])
        iou[ia, jb] = exact / max(areas[ia] + areas[na + jb] - exact, 1)
    iou[~(cuts[in_a].any(1)[:, None] | cuts[in_b].any(1)[None, :])] = 0.0
    pairs, used_a, used_b = [], set(), set()
    for ia, jb in sorted(zip(*np.nonzero(iou >= MERGE_IOU)), key=lambda p: -iou[p]):
        if ia not in used_a and jb not in used_b:
            used_a.add(ia)
            used_b.add(jb)
            pairs.append((int(in_a[ia]), int(in_b[jb])))
    return pairs


def _same_object(i: int, j: int, runs: list[np.ndarray], areas: np.ndarray, kinds: list[int], coarse: np.ndarray,
                 passes: list[frozenset[int]], filled: dict[int, np.ndarray]) -> bool:  # fmt: skip
    """Whether mask ``i`` is kept mask ``j`` seen again (step 4 of the module docstring)."""
    if passes[i] & passes[j]:  # one pass's masks were chosen by its own NMS
        return False
    inter = runs_intersection_area(runs[i], runs[j], filled[j])
    small, large = sorted((int(areas[i]), int(areas[j])))
    return (
        inter >= DUPLICATE_IOU * (areas[i] + areas[j] - inter)
        or (inter >= COVERED * small and large <= SIZE_RATIO * small)
        or (bool(coarse[i] or coarse[j]) and inter >= 0.5 * small and large <= 2 * SIZE_RATIO * small)
        or (kinds[i] == 2 and inter >= COVERED * areas[i])
    )


def _complete(group: list[int], tiles: np.ndarray, cuts: np.ndarray, grid: np.ndarray) -> bool:
    """Whether every cut of the group's members is covered by a member from a tile reaching across that edge."""
    member_tiles = grid[np.unique(tiles[group])]
    for i in group:
        x1, y1, x2, y2 = grid[tiles[i]]
        left, top, right, bottom = cuts[i]
        if left and not np.any(member_tiles[:, 0] < x1):
            return False
        if top and not np.any(member_tiles[:, 1] < y1):
            return False
        if right and not np.any(member_tiles[:, 2] > x2):
            return False
        if bottom and not np.any(member_tiles[:, 3] > y2):
            return False
    return True
