"""COCOeval wrappers: class-agnostic average recall (proposals) and class-aware AP (instances)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pycocotools.coco import COCO

PROPOSAL_MAX_DETS = (10, 100, 1000)
AREAS = ("all", "small", "medium", "large")


def _load_results(coco_gt, detections: list[dict[str, Any]]):
    with contextlib.redirect_stdout(io.StringIO()):
        return coco_gt.loadRes(detections)


def _run(coco_gt, detections: list[dict[str, Any]], iou_type: str, image_ids: Sequence[int], use_cats: bool, max_dets):
    from pycocotools.cocoeval import COCOeval

    coco_dt = _load_results(coco_gt, detections)
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    evaluator.params.imgIds = sorted(int(i) for i in image_ids)
    evaluator.params.useCats = int(use_cats)
    evaluator.params.maxDets = list(max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def average_recall(
    coco_gt: COCO,
    detections: list[dict[str, Any]],
    iou_type: str = "bbox",
    image_ids: Sequence[int] | None = None,
    max_dets: Sequence[int] = PROPOSAL_MAX_DETS,
) -> dict[str, float]:
    """Class-agnostic average recall of proposals (COCO protocol, ``useCats = 0``).

    AR is recall averaged over IoU thresholds 0.50:0.05:0.95 (and over images' pooled ground truth), for the
    top ``maxDet`` proposals per image by score, over all objects and per COCO area range (small < 32^2 <=
    medium < 96^2 <= large, in pixels of area).

    Args:
        coco_gt: a ``pycocotools.coco.COCO`` with the ground truth.
        detections: COCO results: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` for
            ``iou_type="bbox"``, ``"segmentation"`` (RLE) instead of / as well as ``bbox`` for ``"segm"``.
        iou_type: ``"bbox"`` or ``"segm"``.
        image_ids: the images to evaluate (default: every annotated image).
        max_dets: the proposal budgets.

    Returns:
        ``{"AR@10": ..., "AR_small@10": ..., ...}`` for every budget and area (fractions in [0, 1]; -1 where an
        area range has no ground truth).
    """
    ids = list(coco_gt.getImgIds()) if image_ids is None else list(image_ids)
    keys = [f"AR{'' if a == 'all' else '_' + a}@{m}" for m in max_dets for a in AREAS]
    if not detections:
        return {k: 0.0 for k in keys}
    evaluator = _run(coco_gt, detections, iou_type, ids, False, max_dets)
    recall = evaluator.eval["recall"]  # (T, K, A, M)
    out = {}
    for mi, m in enumerate(evaluator.params.maxDets):
        for ai, area in enumerate(evaluator.params.areaRngLbl):
            out[f"AR{'' if area == 'all' else '_' + area}@{m}"] = _mean_valid(recall[:, :, ai, mi])
    return out


def average_precision(
    coco_gt: COCO,
    detections: list[dict[str, Any]],
    iou_type: str = "segm",
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """Class-aware COCO AP (``COCOeval.summarize``'s first six numbers).

    Returns:
        ``{"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"}`` as fractions (-1 where undefined).
    """
    ids = list(coco_gt.getImgIds()) if image_ids is None else list(image_ids)
    names = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
    if not detections:
        return {k: 0.0 for k in names}
    evaluator = _run(coco_gt, detections, iou_type, ids, True, (1, 10, 100))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    return {k: float(v) for k, v in zip(names, evaluator.stats[:6])}
