"""Task-aligned label assignment (TOOD), as used to train YOLOv8 and FastSAM.

For every ground-truth box the assigner scores the anchors whose centres lie inside it with the alignment
metric ``t = s ** alpha * u ** beta`` (``s`` the predicted score of the GT's class, ``u`` the IoU of the predicted
box with the GT box), keeps the ``topk`` best anchors as positives, gives an anchor claimed by several GTs to the
GT it overlaps most, and makes soft classification targets: ``t`` normalised so that each GT's best anchor
target equals that GT's best IoU among its positives.

The work is done one image at a time, and the IoUs are computed only for (GT, anchor) pairs with the anchor
inside the box, so memory grows with the number of such pairs rather than ``batch x GTs x anchors``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Assignment:
    """The targets of one image's ``A`` anchors.

    Attributes:
        boxes: ``(A, 4)`` xyxy target box of each anchor (that of its GT; meaningless where not ``fg``).
        scores: ``(A, C)`` soft classification targets (zero for background anchors).
        fg: ``(A,)`` bool, the positive anchors.
        gt_index: ``(A,)`` int64 index of the anchor's GT (0 where not ``fg``).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    fg: torch.Tensor
    gt_index: torch.Tensor


def pairwise_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Element-wise IoU of ``(..., 4)`` xyxy boxes ``a`` and ``b`` (same shape)."""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    return inter / (area_a + area_b - inter + eps)


class TaskAlignedAssigner:
    """Task-aligned assigner.

    Args:
        topk: positives kept per GT (10).
        num_classes: ``C``.
        alpha: exponent of the classification score in the alignment metric (0.5).
        beta: exponent of the IoU (6.0).
        eps: numerical guard.
        iou: ``"iou"`` (plain IoU, the TOOD definition) or ``"ciou"`` (complete IoU clamped at 0) as the
            localisation quality ``u``.
    """

    def __init__(
        self, topk: int = 10, num_classes: int = 1, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9, iou: str = "iou"
    ) -> None:
        if iou not in ("iou", "ciou"):
            raise ValueError(f"iou must be 'iou' or 'ciou', got {iou!r}")
        self.topk, self.num_classes, self.alpha, self.beta, self.eps, self.iou = topk, num_classes, alpha, beta, eps, iou

    def _overlap(self, gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        if self.iou == "ciou":
            from .loss import bbox_ciou

            return bbox_ciou(gt, pred).clamp(min=0)
        return pairwise_iou(gt, pred)

    @torch.no_grad()
    def assign(
        self,
        pred_scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
    ) -> Assignment:
        """Assign one image's anchors.

        Args:
            pred_scores: ``(A, C)`` predicted probabilities (after sigmoid).
            pred_boxes: ``(A, 4)`` predicted xyxy boxes, in the same units as ``gt_boxes``.
            anchor_points: ``(A, 2)`` anchor centres x, y, same units.
            gt_labels: ``(N,)`` int64 class of each GT.
            gt_boxes: ``(N, 4)`` xyxy GT boxes.
        """
        num_anchors, num_classes = pred_scores.shape
        device = pred_scores.device
        num_gt = gt_boxes.shape[0]
        if num_gt == 0:
            return Assignment(
                torch.zeros(num_anchors, 4, device=device, dtype=pred_boxes.dtype),
                torch.zeros(num_anchors, num_classes, device=device, dtype=pred_scores.dtype),
                torch.zeros(num_anchors, dtype=torch.bool, device=device),
                torch.zeros(num_anchors, dtype=torch.long, device=device),
            )
        pred_scores, pred_boxes, gt_boxes = pred_scores.float(), pred_boxes.float(), gt_boxes.float()
        anchor_points = anchor_points.float()
        # Anchor centres strictly inside each GT box.
        left_top = anchor_points[None] - gt_boxes[:, None, :2]
        right_bottom = gt_boxes[:, None, 2:] - anchor_points[None]
        inside = torch.cat((left_top, right_bottom), -1).amin(-1) > self.eps  # (N, A)

        gi, ai = inside.nonzero(as_tuple=True)
        overlaps = torch.zeros(num_gt, num_anchors, device=device)
        overlaps[gi, ai] = self._overlap(gt_boxes[gi], pred_boxes[ai]).to(overlaps.dtype)
        scores = torch.zeros(num_gt, num_anchors, device=device)
        scores[gi, ai] = pred_scores[ai, gt_labels[gi]]
        metric = scores.pow(self.alpha) * overlaps.pow(self.beta)  # zero outside the boxes

        k = min(self.topk, num_anchors)
        top = metric.topk(k, dim=1, largest=True).indices  # (N, k)
        positive = torch.zeros(num_gt, num_anchors, dtype=torch.bool, device=device).scatter_(1, top, True) & inside

        # An anchor claimed by several GTs goes to the one with the highest IoU.
        claimed = positive.sum(0)
        if bool((claimed > 1).any()):
            best = F.one_hot(overlaps.argmax(0), num_gt).T.bool()  # (N, A)
            positive = torch.where((claimed > 1)[None], best, positive)

        fg = positive.any(0)
        gt_index = positive.to(torch.uint8).argmax(0)

        metric = metric * positive
        best_metric = metric.amax(1, keepdim=True)  # (N, 1)
        best_overlap = (overlaps * positive).amax(1, keepdim=True)
        norm = (metric * best_overlap / (best_metric + self.eps)).amax(0)  # (A,)

        labels = gt_labels[gt_index]
        target_scores = F.one_hot(labels, num_classes).to(pred_scores.dtype) * (norm * fg)[:, None]
        return Assignment(gt_boxes[gt_index], target_scores, fg, gt_index)
