"""Mask assembly: the fast CPU path (sign lookup inside boxes) against the dense reference computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsam.ops.sign_resize import linear_taps, upsample_positive
from fastsam.postprocess import masks_full_resolution
from fastsam.transforms import letterbox_geometry


@given(
    src_hw=st.tuples(st.integers(2, 40), st.integers(2, 40)),
    out_hw=st.tuples(st.integers(1, 120), st.integers(1, 120)),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=150, deadline=None)
def test_sign_lookup_equals_dense_interpolation(src_hw, out_hw, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    src = F.interpolate(torch.randn(1, 1, 4, 4, generator=gen), size=src_hw, mode="bilinear")[0, 0]
    src += 0.3 * torch.randn(src_hw, generator=gen)
    dense = F.interpolate(src[None, None], size=out_hw, mode="bilinear", align_corners=False)[0, 0] > 0
    h, w = out_hw
    y0, x0 = int(torch.randint(0, h, (1,), generator=gen)), int(torch.randint(0, w, (1,), generator=gen))
    rows = linear_taps(y0, h, src_hw[0] / h, src_hw[0])
    cols = linear_taps(x0, w, src_hw[1] / w, src_hw[1])
    window = upsample_positive(src.numpy(), rows, cols)
    mismatch = window != dense[y0:, x0:].numpy()
    # identical except where float rounding of a value within an ulp of 0 may differ
    assert mismatch.sum() <= 1


@pytest.mark.parametrize("orig_hw,imgsz", [((534, 800), 640), ((534, 800), 1024), ((1080, 1920), 320), ((72, 1418), 640)])
def test_fast_masks_equal_dense_masks(orig_hw, imgsz) -> None:
    g = letterbox_geometry(orig_hw, imgsz)
    gen = torch.Generator().manual_seed(imgsz)
    mh, mw = g.input_hw[0] // 4, g.input_hw[1] // 4
    protos = F.interpolate(torch.randn(1, 32, mh // 8 + 1, mw // 8 + 1, generator=gen), size=(mh, mw), mode="bilinear")[0]
    coefficients = torch.randn(40, 32, generator=gen)
    h, w = orig_hw
    xy = torch.rand(40, 2, generator=gen) * torch.tensor([w, h])
    wh = torch.rand(40, 2, generator=gen) * torch.tensor([w, h]) / 2
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1).clamp(min=0)
    boxes[:, 2] = boxes[:, 2].clamp(max=w)
    boxes[:, 3] = boxes[:, 3].clamp(max=h)
    dense = masks_full_resolution(protos, coefficients, boxes, g, dense=True)
    fast = masks_full_resolution(protos, coefficients, boxes, g, dense=False)
    assert fast.shape == dense.shape == (40, h, w)
    assert (fast != dense).sum() <= 2 and dense.any()


@given(
    n=st.integers(0, 1500),
    max_det=st.integers(1, 400),
    iou=st.floats(0.0, 1.0),
    levels=st.sampled_from([3, 50, 0]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=120, deadline=None)
def test_nms_first_equals_torchvision_nms_head(n: int, max_det: int, iou: float, levels: int, seed: int) -> None:
    """Stopping NMS after max_det kept boxes gives torchvision's first max_det, score ties (levels > 0) included."""
    from torchvision.ops import nms

    from fastsam.postprocess import nms_first

    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 300
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=gen) * 80 + 1], 1)
    scores = torch.rand(n, generator=gen)
    if levels:
        scores = (scores * levels).floor() / levels
    assert torch.equal(nms_first(boxes, scores, iou, max_det), nms(boxes, scores, iou)[:max_det])
