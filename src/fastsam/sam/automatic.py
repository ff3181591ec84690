"""``SamAutomaticMaskGenerator`` on FastSAM: SAM's mask records from one everything-mode run per crop.

SAM prompts a grid of points and filters the masks it decodes; FastSAM segments everything in one network run.
Each of SAM's options keeps its name and gets its FastSAM meaning:

==============================  =====================================================================================
option                          FastSAM meaning
==============================  =====================================================================================
``pred_iou_thresh``             FastSAM's confidence threshold (``conf``; default 0.4, FastSAM's own: FastSAM's
                                scores run lower than SAM's predicted IoUs, so SAM's 0.88 keeps few masks)
``box_nms_thresh``              FastSAM's NMS IoU threshold (``iou``; default 0.9, FastSAM's own)
``stability_score_thresh``      SAM's filter on the stability score computed from FastSAM's mask logits (default 0:
                                keep every mask, so the defaults give :meth:`FastSAM.predict`'s masks)
``stability_score_offset``      the logit offset of the stability score, as SAM (default 1.0)
``crop_n_layers`` and the       FastSAM also runs on SAM's crop boxes; masks near a crop edge are dropped and
``crop_*`` options              duplicates across crops removed by box NMS preferring smaller crops, as SAM does
``min_mask_region_area``        SAM's post-processing: small holes filled and small islands removed, then box NMS
                                preferring untouched masks (:mod:`fastsam.sam.regions`, scipy)
``points_per_side``,            SAM's point grid of each crop layer gives ``point_coords``: the first grid point
``point_grids``,                inside each mask (else the mask pixel nearest its centroid)
``crop_n_points_downscale_factor``
``output_mode``                 ``"binary_mask"``, ``"uncompressed_rle"`` or ``"coco_rle"``, as SAM
``points_per_batch``            no FastSAM meaning (there are no point batches): warned once, ignored
==============================  =====================================================================================

``predicted_iou`` is FastSAM's score. ``imgsz`` and ``max_det`` come from the model (``sam_model_registry[...](
imgsz=..., max_det=...)``) unless given here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine import FastSAM
from ..ops.sam_records import (
    check_output_mode,
    interior_points,
    sam_boxes_xyxy,
    sam_records,
    tighten,
)
from ..postprocess import nms_first
from .crops import crop_boxes, layer_point_grids, near_crop_edge
from .logits import LogitImage, segment_with_logits
from .model import SamModel, as_rgb_array
from .options import warn_once
from .predictor import SamPredictor
from .regions import clean_window

CROP_BATCH = 8  # crops per network batch


@dataclass
class FoundMasks:
    """Masks of one image (image frame) with what their records need; ``windows[k]`` at ``bounds[k]``, each window
    cut to its mask's tight box."""

    windows: list[np.ndarray]
    bounds: np.ndarray  # (N, 4) int64 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    stability: np.ndarray  # (N,) float32
    points: np.ndarray  # (N, 2) float64
    crop_boxes: np.ndarray  # (N, 4) int64 xyxy

    def __len__(self) -> int:
        return len(self.windows)

    def select(self, keep: np.ndarray) -> FoundMasks:
        keep = np.arange(len(self))[keep]
        return FoundMasks([self.windows[i] for i in keep], self.bounds[keep], self.scores[keep],
                          self.stability[keep], self.points[keep], self.crop_boxes[keep])  # fmt: skip

    def sam_boxes(self) -> np.ndarray:
        """``(N, 4)`` int64 xyxy boxes in SAM's convention (last pixel inclusive)."""
        return sam_boxes_xyxy(self.bounds)

    @staticmethod
    def concatenate(parts: list[FoundMasks]) -> FoundMasks:
        return FoundMasks(
            [w for p in parts for w in p.windows], np.concatenate([p.bounds for p in parts]).reshape(-1, 4),
            np.concatenate([p.scores for p in parts]), np.concatenate([p.stability for p in parts]),
            np.concatenate([p.points for p in parts]).reshape(-1, 2),
            np.concatenate([p.crop_boxes for p in parts]).reshape(-1, 4),
        )  # fmt: skip


class SamAutomaticMaskGenerator:
    """segment-anything's ``SamAutomaticMaskGenerator`` over FastSAM (options: see the module docstring).

    Example::

        from fastsam.sam import SamAutomaticMaskGenerator, sam_model_registry

        mask_generator = SamAutomaticMaskGenerator(sam_model_registry["vit_h"](checkpoint="FastSAM-x.pt"))
        masks = mask_generator.generate(image)   # [{"segmentation", "area", "bbox", "predicted_iou", ...}, ...]
    """

    def __init__(
        self,
        model: SamModel | FastSAM | str | os.PathLike,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.4,
        stability_score_thresh: float = 0.0,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.9,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        imgsz: int | None = None,
        max_det: int | None = None,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be 0 or more, got {crop_n_layers}")
        for name, value in (("pred_iou_thresh", pred_iou_thresh), ("box_nms_thresh", box_nms_thresh),
                            ("crop_nms_thresh", crop_nms_thresh)):  # fmt: skip
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if point_grids is not None and len(point_grids) < crop_n_layers + 1:
            raise ValueError(f"point_grids needs one grid per crop layer: {crop_n_layers + 1}, got {len(point_grids)}")
        if points_per_batch != 64:
            warn_once("points_per_batch", "points_per_batch has no FastSAM meaning (one network run segments "
                      "everything): ignored")  # fmt: skip
        self.output_mode = check_output_mode(output_mode)
        self.predictor = SamPredictor(model)
        self.point_grids = (
            [np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in point_grids] if point_grids is not None
            else layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        )  # fmt: skip
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = int(crop_n_layers)
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        settings = self.predictor.model.settings
        self.imgsz = int(imgsz) if imgsz is not None else settings["imgsz"]
        self.max_det = int(max_det) if max_det is not None else settings["max_det"]
        self.mask_threshold = 0.0

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """SAM's records for every mask of ``image`` (``(H, W, 3)`` uint8 RGB).

        Returns:
            One dict per mask: ``segmentation`` (per ``output_mode``), ``area`` (int), ``bbox`` (XYWH ints, SAM's
            inclusive last pixel), ``predicted_iou`` (FastSAM's score), ``point_coords`` (``[[x, y]]``),
            ``stability_score`` and ``crop_box`` (XYWH ints).
        """
        image = as_rgb_array(image)
        found = self.generate_masks(image)
        return sam_records(found.windows, found.bounds, image.shape[:2], found.scores, self.output_mode,
                           found.stability, found.points, found.crop_boxes, tight=True)  # fmt: skip

    def generate_masks(self, image: np.ndarray) -> FoundMasks:
        """The masks :meth:`generate` writes records of, before encoding."""
        size = (int(image.shape[0]), int(image.shape[1]))
        boxes, layers = crop_boxes(size, self.crop_n_layers, self.crop_overlap_ratio)
        parts = []
        for start in range(0, len(boxes), CROP_BATCH):
            chunk = boxes[start : start + CROP_BATCH]
            crops = [np.ascontiguousarray(image[y0:y1, x0:x1]) for x0, y0, x1, y1 in chunk]
            segmented = segment_with_logits(self.predictor.model.fastsam, crops, imgsz=self.imgsz,
                                            conf=self.pred_iou_thresh, iou=self.box_nms_thresh, max_det=self.max_det,
                                            threshold=self.mask_threshold,
                                            stability_offset=self.stability_score_offset)  # fmt: skip
            for crop, layer, crop_image in zip(chunk, layers[start : start + CROP_BATCH], segmented):
                parts.append(self._crop_masks(crop_image, crop, layer, size))
        found = FoundMasks.concatenate(parts)
        if len(boxes) > 1 and len(found):
            crop_area = (found.crop_boxes[:, 2] - found.crop_boxes[:, 0]) * (found.crop_boxes[:, 3] - found.crop_boxes[:, 1])
            found = found.select(_nms(found.sam_boxes(), 1.0 / crop_area, self.crop_nms_thresh))
        if self.min_mask_region_area > 0 and len(found):
            found = self.postprocess_small_regions(found, size)
        return found

    def _crop_masks(self, segmented: LogitImage, crop: list[int], layer: int, size: tuple[int, int]) -> FoundMasks:
        """One crop's masks, filtered as SAM filters them, in the image frame."""
        x0, y0, x1, y1 = crop
        held = segmented.windows
        stability = segmented.stability
        keep = np.ones(len(held), dtype=bool)
        if self.stability_score_thresh > 0:
            keep &= stability >= self.stability_score_thresh
        shift = np.array([x0, y0, x0, y0], dtype=np.int64)
        if crop != [0, 0, size[1], size[0]]:
            keep &= ~near_crop_edge(sam_boxes_xyxy(held.bounds) + shift, crop, size)  # windows are tight
        kept = np.flatnonzero(keep)
        windows = [held.windows[i] for i in kept]
        grid = self.point_grids[layer] * np.array([x1 - x0, y1 - y0], dtype=np.float64)
        points = interior_points(windows, held.bounds[kept], grid) + np.array([x0, y0], dtype=np.float64)
        return FoundMasks(
            windows, held.bounds[kept] + shift, segmented.result.scores[kept].astype(np.float32),
            stability[kept], points, np.tile(np.array([crop], dtype=np.int64), (kept.size, 1)),
        )  # fmt: skip

    def postprocess_small_regions(self, found: FoundMasks, size: tuple[int, int]) -> FoundMasks:
        """SAM's ``min_mask_region_area`` step: fill small holes, remove small islands, then drop new duplicates
        by box NMS (threshold ``max(box_nms_thresh, crop_nms_thresh)``) preferring masks left unchanged."""
        windows, bounds, unchanged = [], [], []
        for window, box in zip(found.windows, found.bounds):
            new_window, new_bounds, changed = clean_window(window, box, size, self.min_mask_region_area)
            windows.append(new_window)
            bounds.append(new_bounds)
            unchanged.append(0.0 if changed else 1.0)
        windows, bounds = tighten(windows, np.asarray(bounds, dtype=np.int64).reshape(-1, 4))
        cleaned = FoundMasks(windows, bounds, found.scores, found.stability, found.points, found.crop_boxes)
        keep = _nms(cleaned.sam_boxes(), np.asarray(unchanged), max(self.box_nms_thresh, self.crop_nms_thresh))
        return cleaned.select(keep)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by box NMS, by decreasing score (ties in index order)."""
    kept = nms_first(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(scores, dtype=torch.float32),
                     iou, len(boxes))  # fmt: skip
    return kept.numpy()
