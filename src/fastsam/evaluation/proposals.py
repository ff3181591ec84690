"""Object proposals: FastSAM's everything-mode masks and boxes scored by class-agnostic COCO average recall."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ops.rle import box_xyxy_to_xywh
from ..results import SegmentationResult
from .coco_data import image_paths, load_coco
from .coco_metrics import PROPOSAL_MAX_DETS, average_recall

if TYPE_CHECKING:
    from ..engine import FastSAM


def result_to_proposals(
    result: SegmentationResult, image_id: int, category_id: int = 1, masks: bool = True
) -> list[dict[str, Any]]:
    """COCO results entries for every mask of one image (class-agnostic: one dummy category).

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score", "segmentation"?: RLE}]``.
    """
    boxes = box_xyxy_to_xywh(np.asarray(result.boxes, dtype=np.float32).reshape(-1, 4))
    rles = result.to_rle() if masks else [None] * len(result)
    out = []
    for box, score, rle in zip(boxes.tolist(), np.asarray(result.scores).tolist(), rles):
        entry: dict[str, Any] = {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "bbox": box,
            "score": float(score),
        }
        if rle is not None:
            entry["segmentation"] = rle
        out.append(entry)
    return out


def evaluate_proposals(
    model: FastSAM,
    annotations: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    imgsz: int = 1024,
    conf: float = 0.05,
    iou: float = 0.9,
    max_det: int = 1000,
    retina: bool = True,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Box and mask AR@10/100/1000 (all, small, medium, large) of FastSAM's everything mode.

    Args:
        model: a loaded :class:`fastsam.engine.FastSAM`.
        annotations: COCO or LVIS instances JSON.
        images_dir: folder of the annotated images (missing images are skipped and listed).
        imgsz, conf, iou, max_det, retina: everything-mode settings (a low ``conf`` and ``max_det >= 1000``
            so that AR@1000 has proposals to count).
        limit: evaluate only the first ``limit`` images found.
        progress: called as ``progress(done, total)``.

    Returns:
        ``{"dataset": "coco"|"lvis", "box": {AR...}, "mask": {AR...}, "images": n, "missing_images": [...],
        "proposals_per_image": mean, "settings": {...}}``.
    """
    coco = load_coco(annotations)
    paths, missing = image_paths(coco, images_dir, limit)
    if not paths:
        raise FileNotFoundError(f"none of the {len(coco.imgs)} annotated images is in {images_dir}")
    category = int(min(coco.cats)) if coco.cats else 1
    detections: list[dict[str, Any]] = []
    for n, (image_id, path) in enumerate(paths.items(), 1):
        [result] = model.predict(str(path), imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina)
        detections.extend(result_to_proposals(result, image_id, category))
        if progress:
            progress(n, len(paths))
    ids = list(paths)
    boxes_only = [{k: v for k, v in d.items() if k != "segmentation"} for d in detections]
    first = next(iter(coco.imgs.values()), {})
    return {
        "dataset": "lvis" if "neg_category_ids" in first or "not_exhaustive_category_ids" in first else "coco",
        "box": average_recall(coco, boxes_only, "bbox", ids, PROPOSAL_MAX_DETS),
        "mask": average_recall(coco, detections, "segm", ids, PROPOSAL_MAX_DETS),
        "images": len(ids),
        "missing_images": missing,
        "proposals_per_image": len(detections) / len(ids),
        "settings": {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "retina": retina},
    }
