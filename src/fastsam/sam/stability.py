"""SAM's stability score: how much a mask moves when the logit threshold moves.

SAM defines it as the IoU of the two masks obtained by thresholding the mask logits at ``threshold + offset`` and
at ``threshold - offset``; the first lies inside the second, so the IoU is the ratio of their areas. Here the
logits are FastSAM's (``coefficients @ prototypes``, resized to the original image, clamped below
:data:`~fastsam.sam.logits.OUTSIDE_LOGIT` outside the mask's box).

:func:`calculate_stability_score` computes it from dense logits. The generator gets the same two areas at full
resolution from the pass that makes the masks (:func:`~fastsam.sam.logits.window_pass` counts inside each box
window, where alone the logits can exceed a threshold above ``OUTSIDE_LOGIT``); :func:`window_stability_scores`
does that for masks already made. Both equal counting the dense logits up to float rounding of values within an
ulp of either threshold.
"""

from __future__ import annotations

import numpy as np
import torch

from .logits import LogitImage, stability_from_counts, window_pass


def calculate_stability_score(masks: torch.Tensor, mask_threshold: float, threshold_offset: float) -> torch.Tensor:
    """Stability score of ``(..., H, W)`` mask logits: ``|logits > t + o| / |logits > t - o|`` per mask.

    Returns:
        ``(...)`` float32; NaN where no pixel is above ``t - o`` (0 / 0, as SAM's).
    """
    high = (masks > (mask_threshold + threshold_offset)).flatten(-2).sum(-1)
    low = (masks > (mask_threshold - threshold_offset)).flatten(-2).sum(-1)
    return high.to(torch.float32) / low.to(torch.float32)


def window_stability_scores(image: LogitImage, threshold_offset: float = 1.0) -> np.ndarray:
    """``(N,)`` float32 stability score of each mask of ``image`` at its threshold, at full resolution."""
    if len(image) == 0:
        return np.zeros(0, dtype=np.float32)
    thresholds = (image.threshold + threshold_offset, image.threshold - threshold_offset)
    _, counts = window_pass(image.protos, image.coefficients, image.boxes, image.geometry, image.threshold, thresholds)
    return stability_from_counts(counts[:, 0], counts[:, 1])
