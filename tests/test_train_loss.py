"""Loss pieces of `fastsam train` against hand-computed values on tiny cases."""

from __future__ import annotations

import math

import pytest
import torch

from fastsam.training.assigner import TaskAlignedAssigner
from fastsam.training.loss import SegmentationLoss, bbox_ciou, boxes_to_distances, dfl_loss


def test_ciou_same_aspect():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    # IoU 1/7, centre distance^2 2, enclosing diagonal^2 18, no aspect term
    assert float(bbox_ciou(a, b)) == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)


def test_ciou_aspect_term():
    a = torch.tensor([0.0, 0.0, 2.0, 1.0])
    b = torch.tensor([0.0, 0.0, 1.0, 2.0])
    iou = 1 / 3
    v = 4 / math.pi**2 * (math.atan(1 / 2) - math.atan(2 / 1)) ** 2
    alpha = v / (v - iou + 1)
    expected = iou - 0.5 / 8 - alpha * v
    assert float(bbox_ciou(a, b)) == pytest.approx(expected, abs=1e-6)
    assert float(bbox_ciou(a, a)) == pytest.approx(1.0, abs=1e-6)


def test_dfl_uniform_and_two_bins():
    reg_max = 4
    uniform = torch.zeros(1, 4, reg_max)
    assert float(dfl_loss(uniform, torch.full((1, 4), 2.5))[0]) == pytest.approx(math.log(reg_max), abs=1e-6)
    logits = torch.zeros(1, 4, reg_max)
    logits[..., 1] = math.log(2.0)  # probabilities 1/5, 2/5, 1/5, 1/5
    got = float(dfl_loss(logits, torch.full((1, 4), 1.3))[0])
    assert got == pytest.approx(0.7 * math.log(5 / 2) + 0.3 * math.log(5), abs=1e-5)


def test_distance_targets_clamped():
    points = torch.tensor([[5.0, 5.0]])
    boxes = torch.tensor([[-40.0, 4.0, 6.0, 100.0]])
    d = boxes_to_distances(points, boxes, 16 - 1 - 0.01)
    assert d[0].tolist() == pytest.approx([14.99, 1.0, 1.0, 14.99])


def _assign(topk: int):
    anchors = torch.tensor([[1.0, 1.0], [3.0, 1.0], [5.0, 1.0], [7.0, 1.0]])
    pred = torch.tensor([[0.0, 0, 4, 2], [2, 0, 8, 2], [4, 0, 8, 2], [6, 0, 8, 2]])
    scores = torch.full((4, 1), 0.5)
    gts = torch.tensor([[0.0, 0, 4, 2], [2, 0, 8, 2]])
    return TaskAlignedAssigner(topk=topk).assign(scores, pred, anchors, torch.zeros(2, dtype=torch.long), gts)


def test_assigner_topk_and_conflict():
    # GT0 holds anchors 0, 1; GT1 holds 1, 2, 3. Anchor 1 is claimed by both (IoU 0.25 vs 1): goes to GT1.
    a = _assign(topk=2)
    assert a.fg.tolist() == [True, True, True, False]
    assert a.gt_index[a.fg].tolist() == [0, 1, 1]
    # normalised targets: metric / best metric of the GT * best IoU of the GT
    assert a.scores[:, 0].tolist() == pytest.approx([1.0, 1.0, (2 / 3) ** 6, 0.0], abs=1e-5)
    assert a.boxes[2].tolist() == [2, 0, 8, 2]


def test_assigner_topk10_takes_all_inside():
    a = _assign(topk=10)
    assert a.fg.tolist() == [True, True, True, True]
    assert a.gt_index.tolist() == [0, 1, 1, 1]
    assert a.scores[:, 0].tolist() == pytest.approx([1.0, 1.0, (2 / 3) ** 6, (1 / 3) ** 6], abs=1e-5)


def test_assigner_no_gt():
    a = TaskAlignedAssigner().assign(torch.rand(5, 1), torch.rand(5, 4), torch.rand(5, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))
    assert not a.fg.any() and a.scores.sum() == 0


def test_mask_loss_of_zero_logits_is_log2():
    """Mask logits 0 everywhere: per-pixel BCE log 2, so the box-area-normalised mask loss is log 2 exactly."""
    from fastsam.modeling.head import make_anchors

    reg_max, m = 16, 2
    points, strides = make_anchors([(4, 4), (2, 2), (1, 1)], (8, 16, 32), torch.device("cpu"), torch.float32)
    a = points.shape[1]
    outputs = (torch.zeros(1, 4 * reg_max, a), torch.zeros(1, 1, a), torch.zeros(1, m, a), torch.randn(1, m, 8, 8))
    gt_boxes = [torch.tensor([[4.0, 8.0, 20.0, 24.0]])]  # proto pixels 1..5 x 2..6
    gt_masks = [torch.zeros(1, 8, 8)]
    gt_masks[0][0, 2:6, 1:5] = 1
    loss, items = SegmentationLoss(reg_max=reg_max)(outputs, points, strides, gt_boxes, gt_masks, (32, 32))
    assert items.mask == pytest.approx(7.5 * math.log(2), abs=1e-5)
    assert float(loss) == pytest.approx(items.total, rel=1e-5)  # batch size 1
