"""FastSAM on BSDS500: everything-mode masks -> edge maps -> the boundary benchmark."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .boundary_benchmark import BoundaryBenchmark, evaluate_boundaries
from .bsds_data import BSDSItem, find_edge_maps
from .correspond import DEFAULT_MAX_DIST
from .edges import masks_to_edges

if TYPE_CHECKING:
    from ..engine import FastSAM

EdgeSourceKind = Literal["prob", "mask"]


def fastsam_edge_map(
    model: FastSAM,
    image: object,
    imgsz: int = 1024,
    conf: float = 0.4,
    iou: float = 0.9,
    max_det: int = 300,
    source: EdgeSourceKind = "prob",
    weight_by_score: bool = False,
) -> np.ndarray:
    """The edge map of one image from FastSAM's everything-mode masks.

    Args:
        model: a loaded :class:`fastsam.engine.FastSAM`.
        image: a path, PIL image or RGB uint8 array.
        imgsz, conf, iou, max_det: everything-mode settings.
        source: ``"prob"``: Sobel on each mask's probability map (sigmoid of its logits, as SAM's recipe);
            ``"mask"``: Sobel on the 0/1 masks that everything mode returns.
        weight_by_score: multiply each mask's gradient magnitude by its confidence.

    Returns:
        ``(H, W)`` float32 edge strength in [0, 1], thin (see :func:`fastsam.evaluation.edges.masks_to_edges`).
    """
    if source == "prob":
        from .soft_masks import mask_probabilities

        maps, scores, _ = mask_probabilities(model, image, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det)
    elif source == "mask":
        [result] = model.predict(image, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=True)
        maps, scores = result.masks, result.scores
    else:
        raise ValueError(f"unknown edge source {source!r}; choose 'prob' or 'mask'")
    return masks_to_edges(maps, weights=scores if weight_by_score else None)


def save_edge_png(edges: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an edge map in [0, 1] as an 8-bit grey PNG (the BSDS benchmark's input format)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(edges, 0, 1) * 255).astype(np.uint8), mode="L").save(path)
    return path


def evaluate_model_edges(
    model: FastSAM,
    items: list[BSDSItem],
    imgsz: int = 1024,
    conf: float = 0.4,
    iou: float = 0.9,
    max_det: int = 300,
    source: EdgeSourceKind = "prob",
    weight_by_score: bool = False,
    nthresh: int = 99,
    max_dist: float = DEFAULT_MAX_DIST,
    workers: int | None = None,
    save_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> BoundaryBenchmark:
    """Run FastSAM on BSDS images, turn the masks into edge maps and score them.

    Args:
        items: the images (from :func:`fastsam.evaluation.bsds_data.list_bsds`); each needs its image file.
        save_dir: also write each edge map there as ``<id>.png``.
        progress: called as ``progress(stage, done, total)`` with stage ``"edges"`` then ``"benchmark"``.
        (other arguments: see :func:`fastsam_edge_map` and :func:`~.boundary_benchmark.evaluate_boundaries`)
    """
    without = [it.image_id for it in items if it.image is None]
    if without:
        raise FileNotFoundError(f"{len(without)} image(s) have no image file, e.g. {without[:3]}")
    edges: dict[str, np.ndarray] = {}
    for n, item in enumerate(items, 1):
        edges[item.image_id] = fastsam_edge_map(model, item.image, imgsz, conf, iou, max_det, source, weight_by_score)
        if save_dir is not None:
            save_edge_png(edges[item.image_id], Path(save_dir) / f"{item.image_id}.png")
        if progress:
            progress("edges", n, len(items))
    return evaluate_boundaries(
        edges,
        {it.image_id: it.ground_truth for it in items},
        nthresh=nthresh,
        max_dist=max_dist,
        workers=workers,
        progress=(lambda d, t: progress("benchmark", d, t)) if progress else None,
    )


def evaluate_edge_folder(
    pred_dir: str | os.PathLike[str],
    items: list[BSDSItem],
    nthresh: int = 99,
    max_dist: float = DEFAULT_MAX_DIST,
    thin: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BoundaryBenchmark:
    """Score a folder of edge maps (``<id>.png`` 0-255 or ``<id>.npy`` floats in [0, 1]) on BSDS items."""
    files = find_edge_maps(pred_dir, [it.image_id for it in items])
    return evaluate_boundaries(
        {k: str(v) for k, v in files.items()},
        {it.image_id: it.ground_truth for it in items},
        nthresh=nthresh,
        max_dist=max_dist,
        thin=thin,
        workers=workers,
        progress=progress,
    )
