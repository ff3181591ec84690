"""Mask agreement between two segmentations of the same image: how many reference masks a faster path keeps.

Used for every reduced-precision and backend figure: the reference is our fp32 PyTorch output, the candidate a
bf16 / OpenVINO / INT8 run on the same image and thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils


@dataclass(frozen=True)
class Agreement:
    """One image's (or a sum of images') agreement.

    Attributes:
        reference: reference masks. candidate: candidate masks.
        matched: reference masks one-to-one matched at IoU >= the threshold.
        iou_sum: the sum of the matched pairs' IoUs.
    """

    reference: int
    candidate: int
    matched: int
    iou_sum: float

    @property
    def matched_fraction(self) -> float:
        """Fraction of reference masks matched (1.0 when both are empty)."""
        return self.matched / self.reference if self.reference else float(self.candidate == 0)

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matched pairs (1.0 when nothing was to match)."""
        return self.iou_sum / self.matched if self.matched else float(self.reference == 0)

    def __add__(self, other: "Agreement") -> "Agreement":
        return Agreement(self.reference + other.reference, self.candidate + other.candidate,
                         self.matched + other.matched, self.iou_sum + other.iou_sum)  # fmt: skip


def mask_agreement(reference: list[dict], candidate: list[dict], threshold: float = 0.9) -> Agreement:
    """Match ``candidate`` masks to ``reference`` masks one-to-one, greedily by decreasing IoU, pairs at
    IoU >= ``threshold`` only (above 0.5 a mask has at most one such partner in a set of disjoint masks, so greedy
    equals optimal in the common case).

    Args:
        reference, candidate: COCO RLEs (``{"size": [H, W], "counts": ...}``) of one image each.
    """
    if not reference or not candidate:
        return Agreement(len(reference), len(candidate), 0, 0.0)
    ious = np.asarray(mask_utils.iou(candidate, reference, [0] * len(reference)), dtype=np.float64)  # (C, R)
    cand, ref = np.nonzero(ious >= threshold)
    order = np.argsort(-ious[cand, ref], kind="stable")
    used_c, used_r = set(), set()
    total = 0.0
    for k in order:
        c, r = int(cand[k]), int(ref[k])
        if c in used_c or r in used_r:
            continue
        used_c.add(c)
        used_r.add(r)
        total += float(ious[c, r])
    return Agreement(len(reference), len(candidate), len(used_r), total)
