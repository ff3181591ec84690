"""The YOLOv8-seg training loss: CIoU + DFL box loss, BCE classification, prototype mask loss.

Definitions (published for YOLOv8 / FastSAM):

* Box: ``1 - CIoU`` between each positive anchor's predicted box and its target box, plus the distribution focal
  loss (DFL) of the predicted side-distance distributions against the target distances (in stride units,
  clamped to ``reg_max - 1 - 0.01``); both weighted by the anchor's classification target and divided by the sum
  of all classification targets.
* Classification: binary cross-entropy of the class logits against the task-aligned soft targets, summed and
  divided by the sum of the targets.
* Masks: per positive anchor, BCE between ``coefficients @ prototypes`` and its GT instance mask at prototype
  resolution, restricted to the GT box, averaged over the box's area; averaged over positive anchors.
* Gains: box 7.5, classification 0.5, DFL 1.5, masks 7.5 (the box gain). The total is multiplied by the batch
  size (the per-image means become a per-batch sum), as published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .assigner import TaskAlignedAssigner


def bbox_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise IoU of ``(..., 4)`` xyxy boxes."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    return inter / (union + eps)


def bbox_ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise complete IoU of ``(..., 4)`` xyxy boxes (Zheng et al. 2020).

    ``CIoU = IoU - rho^2 / c^2 - alpha * v`` with ``rho`` the distance of the centres, ``c`` the diagonal of the
    smallest enclosing box, ``v = 4 / pi^2 (atan(w_b / h_b) - atan(w_a / h_a))^2`` and
    ``alpha = v / (v - IoU + 1)`` (treated as a constant in the gradient).
    """
    w1, h1 = a[..., 2] - a[..., 0], (a[..., 3] - a[..., 1]).clamp(min=eps)
    w2, h2 = b[..., 2] - b[..., 0], (b[..., 3] - b[..., 1]).clamp(min=eps)
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    c2 = cw.pow(2) + ch.pow(2) + eps
    rho2 = ((b[..., 0] + b[..., 2] - a[..., 0] - a[..., 2]).pow(2) + (b[..., 1] + b[..., 3] - a[..., 1] - a[..., 3]).pow(2)) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def dfl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution focal loss.

    Args:
        logits: ``(n, 4, reg_max)`` bin logits of each side.
        target: ``(n, 4)`` target distances in bins, in ``[0, reg_max - 1)``.

    Returns:
        ``(n,)``: for each side, cross-entropy to the two bins around the target weighted by the linear
        interpolation weights, averaged over the four sides.
    """
    left = target.long()
    right = left + 1
    w_left = right.to(target.dtype) - target
    w_right = 1 - w_left
    n, sides, bins = logits.shape
    flat = logits.reshape(-1, bins)
    ce_left = F.cross_entropy(flat, left.reshape(-1), reduction="none").view(n, sides)
    ce_right = F.cross_entropy(flat, right.reshape(-1).clamp(max=bins - 1), reduction="none").view(n, sides)
    return (ce_left * w_left + ce_right * w_right).mean(-1)


def distances_to_boxes(dist: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` left, top, right, bottom distances around ``(..., 2)`` points -> xyxy."""
    return torch.cat((points - dist[..., :2], points + dist[..., 2:]), -1)


def boxes_to_distances(points: torch.Tensor, boxes: torch.Tensor, limit: float) -> torch.Tensor:
    """xyxy boxes -> left, top, right, bottom distances from the points, clamped to ``[0, limit]``."""
    return torch.cat((points - boxes[..., :2], boxes[..., 2:] - points), -1).clamp(0, limit)


def crop_loss_to_box(loss: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero ``(n, h, w)`` outside each ``(n, 4)`` xyxy box (pixel ``i`` is inside when ``x1 <= i < x2``)."""
    _, h, w = loss.shape
    cols = torch.arange(w, device=loss.device, dtype=boxes.dtype)[None, None, :]
    rows = torch.arange(h, device=loss.device, dtype=boxes.dtype)[None, :, None]
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    return loss * ((cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2))


@dataclass
class LossItems:
    """The four loss components (after their gains, before the batch-size factor)."""

    box: float
    cls: float
    dfl: float
    mask: float

    @property
    def total(self) -> float:
        return self.box + self.cls + self.dfl + self.mask


class SegmentationLoss:
    """Loss of a YOLOv8-seg network on a batch.

    Args:
        nc: number of classes.
        reg_max: DFL bins.
        box, cls, dfl, mask: gains (``mask=None``: the box gain).
        topk, alpha, beta: assigner settings.
    """

    def __init__(
        self,
        nc: int = 1,
        reg_max: int = 16,
        box: float = 7.5,
        cls: float = 0.5,
        dfl: float = 1.5,
        mask: float | None = None,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
    ) -> None:
        self.nc, self.reg_max = nc, reg_max
        self.gains = (box, cls, dfl, box if mask is None else mask)
        self.assigner = TaskAlignedAssigner(topk, nc, alpha, beta)
        self.bins = torch.arange(reg_max, dtype=torch.float32)

    def __call__(
        self,
        outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        anchor_points: torch.Tensor,
        strides: torch.Tensor,
        gt_boxes: list[torch.Tensor],
        gt_masks: list[torch.Tensor],
        input_hw: tuple[int, int],
        gt_labels: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, LossItems]:
        """Compute the loss.

        Args:
            outputs: ``SegmentHead.forward_raw`` outputs: box logits ``(B, 4 * reg_max, A)``, class logits
                ``(B, nc, A)``, mask coefficients ``(B, M, A)``, prototypes ``(B, M, h, w)``.
            anchor_points: ``(2, A)`` in stride units; strides: ``(1, A)``.
            gt_boxes: per image ``(N_i, 4)`` xyxy boxes in input pixels.
            gt_masks: per image ``(N_i, h, w)`` binary instance masks at prototype resolution.
            input_hw: ``(H_in, W_in)`` of the network input.
            gt_labels: per image ``(N_i,)`` classes (default: all 0).

        Returns:
            ``(loss, items)``: the scalar to back-propagate (sum of the gained components times the batch size)
            and the components.
        """
        box_logits, cls_logits, coef, protos = (t.float() for t in outputs)
        batch, _, num_anchors = box_logits.shape
        device = box_logits.device
        points = anchor_points.T.float()  # (A, 2) stride units
        stride = strides.T.float()  # (A, 1)
        dist_logits = box_logits.view(batch, 4, self.reg_max, num_anchors).permute(0, 3, 1, 2)  # (B, A, 4, R)
        dist = dist_logits.softmax(-1) @ self.bins.to(device)  # (B, A, 4)
        pred_boxes = distances_to_boxes(dist, points[None])  # (B, A, 4) stride units
        cls_logits = cls_logits.permute(0, 2, 1)  # (B, A, C)
        h_in, w_in = input_hw
        _, num_masks, mh, mw = protos.shape

        zero = box_logits.sum() * 0.0
        loss_box, loss_dfl, loss_cls, loss_mask = zero, zero, zero, zero
        target_sum = torch.zeros((), device=device)
        mask_terms: list[torch.Tensor] = []
        num_pos = 0
        assignments = []
        pred_scores = cls_logits.detach().sigmoid()
        anchors_px = points * stride
        for i in range(batch):
            boxes_i = gt_boxes[i].to(device).float()
            labels_i = (
                gt_labels[i].to(device).long() if gt_labels is not None else torch.zeros(len(boxes_i), dtype=torch.long, device=device)
            )
            a = self.assigner.assign(pred_scores[i], pred_boxes[i].detach() * stride, anchors_px, labels_i, boxes_i)
            assignments.append(a)
            target_sum = target_sum + a.scores.sum()
        target_sum = target_sum.clamp(min=1.0)

        target_scores = torch.stack([a.scores for a in assignments])
        loss_cls = F.binary_cross_entropy_with_logits(cls_logits, target_scores.to(cls_logits.dtype), reduction="sum") / target_sum

        for i, a in enumerate(assignments):
            if not bool(a.fg.any()):
                continue
            fg = a.fg
            weight = a.scores[fg].sum(-1)
            target_stride_units = a.boxes[fg] / stride[fg]
            ciou = bbox_ciou(pred_boxes[i][fg], target_stride_units)
            loss_box = loss_box + ((1.0 - ciou) * weight).sum() / target_sum
            target_dist = boxes_to_distances(points[fg], target_stride_units, self.reg_max - 1 - 0.01)
            loss_dfl = loss_dfl + (dfl_loss(dist_logits[i][fg], target_dist) * weight).sum() / target_sum

            # masks
            gt_m = gt_masks[i].to(device)
            idx = a.gt_index[fg]
            target_masks = gt_m[idx].float()  # (n, mh, mw)
            pred_masks = (coef[i][:, fg].T @ protos[i].view(num_masks, -1)).view(-1, mh, mw)
            boxes_px = a.boxes[fg]
            scale = torch.tensor([mw / w_in, mh / h_in, mw / w_in, mh / h_in], device=device)
            boxes_m = boxes_px * scale
            area = ((boxes_px[:, 2] - boxes_px[:, 0]) / w_in) * ((boxes_px[:, 3] - boxes_px[:, 1]) / h_in)
            bce = F.binary_cross_entropy_with_logits(pred_masks, target_masks, reduction="none")
            per_instance = crop_loss_to_box(bce, boxes_m).mean((1, 2)) / area.clamp(min=1e-9)
            mask_terms.append(per_instance.sum())
            num_pos += int(fg.sum())
        if mask_terms:
            loss_mask = torch.stack(mask_terms).sum() / max(num_pos, 1)
        # Keep every output in the graph (DDP needs gradients for all parameters, even with no positives).
        loss_mask = loss_mask + coef.sum() * 0.0 + protos.sum() * 0.0

        g_box, g_cls, g_dfl, g_mask = self.gains
        parts = (loss_box * g_box, loss_cls * g_cls, loss_dfl * g_dfl, loss_mask * g_mask)
        total = (parts[0] + parts[1] + parts[2] + parts[3]) * batch
        items = LossItems(*(float(p.detach()) for p in parts))
        return total, items
