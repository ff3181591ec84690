"""Zero-shot instance segmentation: box prompts (ground truth or a detector's) -> one FastSAM mask per box ->
class-aware COCO mask AP, each mask taking its box's category and score."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ops.rle import mask_to_rle
from ..predictor import SegmentedImage
from .coco_data import image_paths, load_coco
from .coco_metrics import average_precision

if TYPE_CHECKING:
    from pycocotools.coco import COCO

    from ..engine import FastSAM


def ground_truth_boxes(coco: COCO, image_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per image, its non-crowd ground-truth boxes as prompts ``{"bbox": xywh, "category_id", "score": 1}``."""
    prompts: dict[int, list[dict[str, Any]]] = {}
    for image_id in image_ids:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        prompts[image_id] = [
            {"bbox": list(map(float, a["bbox"])), "category_id": int(a["category_id"]), "score": 1.0}
            for a in anns
            if not a.get("iscrowd", 0)
        ]
    return prompts


def detector_boxes(
    path: str | os.PathLike[str], image_ids: list[int], max_per_image: int = 100
) -> dict[int, list[dict[str, Any]]]:
    """Per image, a detector's boxes from a COCO results JSON (highest scores first, at most ``max_per_image``).

    Raises:
        ValueError: the file is not a list of ``{"image_id", "category_id", "bbox", "score"}``.
    """
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read detections {path}: {err}") from err
    if not isinstance(entries, list) or any(
        not {"image_id", "category_id", "bbox", "score"} <= set(e) for e in entries[:50]
    ):
        raise ValueError(f"{path}: expected a COCO results list of {{image_id, category_id, bbox, score}}")
    wanted = set(image_ids)
    per_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        if int(e["image_id"]) in wanted:
            per_image[int(e["image_id"])].append(
                {"bbox": list(map(float, e["bbox"])), "category_id": int(e["category_id"]), "score": float(e["score"])}
            )
    return {i: sorted(per_image.get(i, []), key=lambda p: -p["score"])[:max_per_image] for i in image_ids}


def masks_for_boxes(session: SegmentedImage, prompts: list[dict[str, Any]], image_id: int) -> list[dict[str, Any]]:
    """One COCO segmentation result per box prompt (an empty mask where no FastSAM mask overlaps the box).

    Boxes with no area or outside the image get an empty mask (they still count as detections).
    """
    if not prompts:
        return []
    h, w = session.image_size
    xyxy = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (p["bbox"] for p in prompts)], dtype=np.float64)
    valid = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1]) & (xyxy[:, 2] > 0) & (xyxy[:, 3] > 0)
    valid &= (xyxy[:, 0] < w) & (xyxy[:, 1] < h)
    masks = np.zeros((len(prompts), h, w), dtype=bool)
    if valid.any():
        masks[valid] = session.boxes(xyxy[valid]).masks
    return [
        {"image_id": int(image_id), "category_id": p["category_id"], "segmentation": rle, "score": p["score"]}
        for p, rle in zip(prompts, mask_to_rle(masks))
    ]


def evaluate_instances(
    model: FastSAM,
    annotations: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    boxes: str | os.PathLike[str] | None = None,
    imgsz: int = 1024,
    conf: float = 0.4,
    iou: float = 0.9,
    max_det: int = 300,
    retina: bool = True,
    max_per_image: int = 100,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Mask AP of FastSAM's box-prompt masks.

    Args:
        model: a loaded :class:`fastsam.engine.FastSAM`.
        annotations: COCO or LVIS instances JSON.
        images_dir: the image folder (missing images are skipped and listed).
        boxes: a detector's COCO results JSON; None prompts with the ground-truth boxes (score 1).
        imgsz, conf, iou, max_det, retina: everything-mode settings of the masks the boxes choose from.
        max_per_image: detector boxes kept per image (highest scores).
        limit: evaluate only the first ``limit`` images found.

    Returns:
        ``{"mask": {"AP", "AP50", ...}, "images", "prompts", "missing_images", "boxes": "ground truth"|path,
        "settings"}``.
    """
    coco = load_coco(annotations)
    paths, missing = image_paths(coco, images_dir, limit)
    if not paths:
        raise FileNotFoundError(f"none of the {len(coco.imgs)} annotated images is in {images_dir}")
    ids = list(paths)
    prompts = ground_truth_boxes(coco, ids) if boxes is None else detector_boxes(boxes, ids, max_per_image)
    results: list[dict[str, Any]] = []
    for n, image_id in enumerate(ids, 1):
        [result] = model.predict(str(paths[image_id]), imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina)
        results.extend(masks_for_boxes(SegmentedImage(result), prompts[image_id], image_id))
        if progress:
            progress(n, len(ids))
    return {
        "mask": average_precision(coco, results, "segm", ids),
        "images": len(ids),
        "prompts": sum(len(p) for p in prompts.values()),
        "missing_images": missing,
        "boxes": "ground truth" if boxes is None else str(boxes),
        "settings": {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "retina": retina},
    }
