"""Per-image boundary counts of the BSDS benchmark: matched and total pixels at each threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .correspond import DEFAULT_MAX_DIST, DEFAULT_OUTLIER_COST, HumanBoundary, matching_radius
from .thinning import thin


def benchmark_thresholds(nthresh: int) -> np.ndarray:
    """The benchmark's thresholds: ``nthresh`` values evenly spaced strictly inside (0, 1).

    ``linspace(1 / (nthresh + 1), 1 - 1 / (nthresh + 1), nthresh)``: 0.01 ... 0.99 for 99 thresholds,
    1/6 ... 5/6 for 5.
    """
    if nthresh < 1:
        raise ValueError(f"nthresh must be at least 1, got {nthresh}")
    step = 1.0 / (nthresh + 1)
    return np.linspace(step, 1.0 - step, nthresh)


@dataclass
class BoundaryCounts:
    """Counts of one image over the thresholds (all ``(T,)`` arrays).

    Attributes:
        thresholds: edge-strength thresholds (a pixel is an edge when its value is >= the threshold).
        cnt_r: human boundary pixels matched, summed over the annotators.
        sum_r: human boundary pixels, summed over the annotators.
        cnt_p: machine boundary pixels matched to at least one annotator.
        sum_p: machine boundary pixels (after thinning).
    """

    thresholds: np.ndarray
    cnt_r: np.ndarray
    sum_r: np.ndarray
    cnt_p: np.ndarray
    sum_p: np.ndarray

    def as_dict(self) -> dict[str, list[float]]:
        """Plain lists, for JSON."""
        return {
            "thresholds": self.thresholds.tolist(),
            "cnt_r": self.cnt_r.tolist(),
            "sum_r": self.sum_r.tolist(),
            "cnt_p": self.cnt_p.tolist(),
            "sum_p": self.sum_p.tolist(),
        }


def boundary_counts(
    edges: np.ndarray,
    humans: Sequence[np.ndarray],
    thresholds: np.ndarray | int = 99,
    max_dist: float = DEFAULT_MAX_DIST,
    thin_edges: bool = True,
    outlier_cost: float = DEFAULT_OUTLIER_COST,
) -> BoundaryCounts:
    """Score one soft edge map against an image's human boundary maps at every threshold.

    Args:
        edges: ``(H, W)`` float edge strength in [0, 1].
        humans: the annotators' ``(H, W)`` 0/1 boundary maps.
        thresholds: ``(T,)`` thresholds, or a count for :func:`benchmark_thresholds`.
        max_dist: matching radius as a fraction of the image diagonal.
        thin_edges: thin each thresholded map first (the benchmark's default).
        outlier_cost: cost of an unmatched pixel, in matching radii.

    Returns:
        The image's :class:`BoundaryCounts`.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 2:
        raise ValueError(f"an edge map must be 2-D, got shape {edges.shape}")
    humans = [np.asarray(h) != 0 for h in humans]
    for h in humans:
        if h.shape != edges.shape:
            raise ValueError(f"edge map of shape {edges.shape} does not match a ground truth of shape {h.shape}")
    thr = (
        benchmark_thresholds(thresholds) if isinstance(thresholds, (int, np.integer)) else np.asarray(thresholds, float)
    )
    n = thr.size
    radius = matching_radius(edges.shape, max_dist)
    prepared = [HumanBoundary(h, radius) for h in humans]
    cnt_r = np.zeros(n, np.int64)
    cnt_p = np.zeros(n, np.int64)
    sum_p = np.zeros(n, np.int64)
    sum_r = np.full(n, sum(p.count for p in prepared), np.int64)
    previous: np.ndarray | None = None  # the last thresholded map
    for t, value in enumerate(thr):
        raw = edges >= value
        if previous is not None and np.array_equal(raw, previous):
            cnt_r[t], cnt_p[t], sum_p[t] = cnt_r[t - 1], cnt_p[t - 1], sum_p[t - 1]
            continue
        previous = raw
        machine = np.flatnonzero(thin(raw) if thin_edges else raw)
        matched = np.zeros(edges.size, dtype=bool)
        for human in prepared:
            corr = human.match(machine, outlier_cost)
            cnt_r[t] += corr.count
            matched[corr.machine_matched] = True
        cnt_p[t] = int(matched.sum())
        sum_p[t] = machine.size
    return BoundaryCounts(thr, cnt_r, sum_r, cnt_p, sum_p)
