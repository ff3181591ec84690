"""Pure box operations. Boxes are float tensors, xyxy unless the name says otherwise."""

from __future__ import annotations

import torch

from ..transforms import Letterbox


def box_xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` centre x, centre y, width, height -> ``(N, 4)`` x1, y1, x2, y2."""
    xy, half = boxes[:, :2], boxes[:, 2:] / 2
    return torch.cat((xy - half, xy + half), 1)


def clip_boxes(boxes: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Clamp ``(N, 4)`` xyxy boxes into an image of size ``(H, W)`` (in place; returned)."""
    h, w = hw
    boxes[:, 0].clamp_(0, w)
    boxes[:, 1].clamp_(0, h)
    boxes[:, 2].clamp_(0, w)
    boxes[:, 3].clamp_(0, h)
    return boxes


def scale_boxes_to_original(boxes: torch.Tensor, geometry: Letterbox) -> torch.Tensor:
    """``(N, 4)`` xyxy in letterboxed-input pixels -> xyxy in original-image pixels, clipped to the image."""
    out = boxes.clone()
    (h, w), (rh, rw) = geometry.orig_hw, geometry.resized_hw
    out[:, 0] -= geometry.left
    out[:, 2] -= geometry.left
    out[:, 1] -= geometry.top
    out[:, 3] -= geometry.top
    out[:, 0] /= rw / w
    out[:, 2] /= rw / w
    out[:, 1] /= rh / h
    out[:, 3] /= rh / h
    return clip_boxes(out, geometry.orig_hw)


def crop_masks_to_boxes(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero ``(N, H, W)`` bool masks outside their ``(N, 4)`` xyxy boxes (pixel i is inside if x1 <= i < x2).

    Modifies ``masks`` in place and returns it.
    """
    _, h, w = masks.shape
    boxes = boxes.to(masks.device)
    cols = torch.arange(w, device=masks.device, dtype=boxes.dtype)[None, None, :]
    rows = torch.arange(h, device=masks.device, dtype=boxes.dtype)[None, :, None]
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    masks &= (cols >= x1) & (cols < x2)
    masks &= (rows >= y1) & (rows < y2)
    return masks
