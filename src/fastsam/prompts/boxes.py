"""Box prompts: one mask per box."""

from __future__ import annotations

import numpy as np

from ..ops.mask_index import MaskIndex


def select_by_boxes(index: MaskIndex, boxes_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each box, the mask with the highest box-region IoU.

    The score of mask ``m`` for box ``b`` is ``|m ∩ b| / (area(b) + area(m) − |m ∩ b|)`` (the references'
    criterion); ties go to the lower mask index.

    Args:
        index: the masks.
        boxes_px: ``(B, 4)`` int64 pixel bounds xyxy (x2, y2 exclusive), clipped to the image.

    Returns:
        ``indices (B,)`` int64 (-1 where no mask overlaps the box) and ``ious (B,)`` float32 (0 there).
    """
    b = boxes_px.shape[0]
    if b == 0 or len(index) == 0:
        return np.full(b, -1, dtype=np.int64), np.zeros(b, dtype=np.float32)
    inter = index.box_counts(boxes_px)  # (B, N)
    box_area = (boxes_px[:, 2] - boxes_px[:, 0]) * (boxes_px[:, 3] - boxes_px[:, 1])
    union = box_area[:, None] + index.areas[None, :] - inter
    iou = inter / np.maximum(union, 1)
    best = iou.argmax(1)
    best_iou = iou[np.arange(b), best]
    return np.where(best_iou > 0, best, -1).astype(np.int64), best_iou.astype(np.float32)
