"""The BSDS boundary benchmark over a data set: per-image counts (in parallel), then ODS / OIS / AP / R50."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .boundary_counts import BoundaryCounts, benchmark_thresholds, boundary_counts
from .boundary_metrics import BoundaryScores, PerThreshold, dataset_curve, image_best, summarize
from .bsds_data import load_boundaries, load_edge_map
from .correspond import DEFAULT_MAX_DIST

EdgeSource = np.ndarray | str | os.PathLike
"""An edge map: a ``(H, W)`` float array in [0, 1], or the path of a PNG / ``.npy`` file."""


@dataclass
class BoundaryBenchmark:
    """Result of :func:`evaluate_boundaries`.

    Attributes:
        scores: ODS / OIS / AP / R50.
        curve: the dataset PR curve, one point per threshold.
        images: per image id, its counts.
        best: per image id, its best ``(threshold, R, P, F)``.
        nthresh, max_dist, thin: the settings used.
    """

    scores: BoundaryScores
    curve: PerThreshold
    images: dict[str, BoundaryCounts]
    best: dict[str, tuple[float, float, float, float]]
    nthresh: int
    max_dist: float
    thin: bool

    def as_dict(self) -> dict:
        """JSON-ready summary (scores, settings, the curve, per-image best and counts)."""
        return {
            "scores": self.scores.as_dict(),
            "settings": {"nthresh": self.nthresh, "max_dist": self.max_dist, "thin": self.thin},
            "curve": {
                "thresholds": self.curve.thresholds.tolist(),
                "recall": self.curve.recall.tolist(),
                "precision": self.curve.precision.tolist(),
                "f": self.curve.f.tolist(),
            },
            "images": {
                k: {"best": dict(zip(("threshold", "recall", "precision", "f"), self.best[k])), "counts": c.as_dict()}
                for k, c in self.images.items()
            },
        }


def _score_one(task: tuple[str, EdgeSource, str, int, float, bool]) -> tuple[str, BoundaryCounts]:
    image_id, edges, gt_path, nthresh, max_dist, thin = task
    if not isinstance(edges, np.ndarray):
        edges = load_edge_map(edges)
    humans = load_boundaries(gt_path)
    return image_id, boundary_counts(edges, humans, benchmark_thresholds(nthresh), max_dist, thin)


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else methods[0])


def evaluate_boundaries(
    edges: Mapping[str, EdgeSource],
    ground_truth: Mapping[str, str | os.PathLike[str]],
    nthresh: int = 99,
    max_dist: float = DEFAULT_MAX_DIST,
    thin: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BoundaryBenchmark:
    """Score soft edge maps against BSDS human boundaries.

    Args:
        edges: image id -> edge map (``(H, W)`` float array in [0, 1], or a PNG / ``.npy`` path).
        ground_truth: image id -> ``.mat`` path (every id of ``edges`` must be present).
        nthresh: number of thresholds (``linspace(1/(n+1), n/(n+1), n)``; 99 -> 0.01 ... 0.99).
        max_dist: matching radius as a fraction of the image diagonal (0.0075).
        thin: thin the thresholded maps (the benchmark's default; set False for maps already thin).
        workers: processes (default: the CPU count; 1 runs in this process).
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        A :class:`BoundaryBenchmark`.
    """
    ids = list(edges)
    if not ids:
        raise ValueError("no edge maps to score")
    missing = [i for i in ids if i not in ground_truth]
    if missing:
        raise ValueError(f"no ground truth for {len(missing)} image(s), e.g. {missing[:3]}")
    tasks = [(i, edges[i], str(Path(ground_truth[i])), nthresh, max_dist, thin) for i in ids]
    workers = (os.cpu_count() or 1) if workers is None else max(1, workers)
    results: dict[str, BoundaryCounts] = {}
    if workers == 1 or len(tasks) == 1:
        for n, task in enumerate(tasks, 1):
            image_id, counts = _score_one(task)
            results[image_id] = counts
            if progress:
                progress(n, len(tasks))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=_pool_context()) as pool:
            for n, (image_id, counts) in enumerate(pool.map(_score_one, tasks, chunksize=1), 1):
                results[image_id] = counts
                if progress:
                    progress(n, len(tasks))
    ordered = [results[i] for i in ids]
    return BoundaryBenchmark(
        scores=summarize(ordered),
        curve=dataset_curve(ordered),
        images={i: results[i] for i in ids},
        best={i: image_best(results[i]) for i in ids},
        nthresh=nthresh,
        max_dist=max_dist,
        thin=thin,
    )
