"""Evaluation on the FastSAM paper's benchmarks.

* BSDS500 zero-shot edges: :func:`~.edge_pipeline.evaluate_model_edges`, :func:`~.edges.masks_to_edges`,
  and the boundary benchmark itself (:func:`~.boundary_benchmark.evaluate_boundaries`: thinning, one-to-one
  pixel matching, ODS / OIS / AP / R50).
* COCO / LVIS class-agnostic proposals: :func:`~.proposals.evaluate_proposals` (AR@10/100/1000).
* COCO instance segmentation from box prompts: :func:`~.instances.evaluate_instances` (mask AP).
* Speed: :func:`~.speed.time_fastsam`.

Heavy imports (torch, pycocotools) happen in the submodules that need them.
"""

from __future__ import annotations

from .boundary_benchmark import BoundaryBenchmark, evaluate_boundaries
from .boundary_counts import BoundaryCounts, benchmark_thresholds, boundary_counts
from .boundary_metrics import BoundaryScores, summarize
from .bsds_data import BSDSItem, list_bsds, load_boundaries, load_edge_map
from .correspond import Correspondence, correspond_pixels
from .edges import masks_to_edges
from .thinning import thin

__all__ = [
    "BSDSItem",
    "BoundaryBenchmark",
    "BoundaryCounts",
    "BoundaryScores",
    "Correspondence",
    "benchmark_thresholds",
    "boundary_counts",
    "correspond_pixels",
    "evaluate_boundaries",
    "list_bsds",
    "load_boundaries",
    "load_edge_map",
    "masks_to_edges",
    "summarize",
    "thin",
]
