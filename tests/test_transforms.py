"""Letterbox geometry and box scaling, including extreme aspect ratios."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsam.ops.boxes import scale_boxes_to_original
from fastsam.postprocess import fastsam_box_step, placement_from_shapes, reference_placement
from fastsam.transforms import PAD_VALUE, RESIZE_KERNEL, letterbox_geometry, letterbox_image, resize_bilinear_u8


@given(h=st.integers(1, 5000), w=st.integers(1, 5000), imgsz=st.sampled_from([64, 640, 1024]))
@settings(max_examples=300, deadline=None)
def test_geometry_invariants(h: int, w: int, imgsz: int) -> None:
    g = letterbox_geometry((h, w), imgsz)
    in_h, in_w = g.input_hw
    assert in_h % 32 == 0 and in_w % 32 == 0
    assert max(in_h, in_w) == imgsz or max(g.resized_hw) == imgsz
    assert 1 <= g.resized_hw[0] <= in_h and 1 <= g.resized_hw[1] <= in_w
    assert 0 <= g.top <= in_h - g.resized_hw[0] and 0 <= g.left <= in_w - g.resized_hw[1]
    # the placement can be rebuilt from the two shapes alone
    assert placement_from_shapes((h, w), g.input_hw) == g
    # the resized image's corners map back onto the original image's corners
    corners = torch.tensor([[g.left, g.top, g.left + g.resized_hw[1], g.top + g.resized_hw[0]]], dtype=torch.float32)
    back = scale_boxes_to_original(corners, g)[0]
    assert torch.allclose(back, torch.tensor([0.0, 0.0, w, h]), atol=1e-3 * max(h, w))


@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (10, 4000), (4000, 10), (333, 500), (1024, 1024)])
def test_letterbox_image_extremes(hw: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    g = letterbox_geometry(hw, 640)
    x = letterbox_image(image, g)
    assert x.shape == (3, *g.input_hw) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    if g.top > 0:
        assert torch.all(x[:, 0] == PAD_VALUE / 255)
    if g.left > 0:
        assert torch.all(x[:, :, 0] == PAD_VALUE / 255)


def test_letterbox_identity_when_no_resize() -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(640, 480, 3), dtype=np.uint8)
    g = letterbox_geometry((640, 480), 640)
    assert g.resized_hw == (640, 480) and g.input_hw == (640, 480)
    x = letterbox_image(image, g)
    assert np.array_equal((x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), image)


def test_imgsz_must_be_a_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        letterbox_geometry((100, 100), 100)


def test_box_step_snaps_and_widens() -> None:
    boxes = torch.tensor([[5.0, 10.0, 90.0, 95.0], [30.0, 30.0, 60.0, 60.0], [2.0, 3.0, 995.0, 590.0]])
    out = fastsam_box_step(boxes, (600, 1000))
    assert out[0].tolist() == [0.0, 0.0, 90.0, 95.0]  # near top-left: snapped
    assert out[1].tolist() == [30.0, 30.0, 60.0, 60.0]  # interior: unchanged
    assert out[2].tolist() == [0.0, 0.0, 1000.0, 600.0]  # near-whole image: the whole image
    assert boxes[0, 0] == 5.0  # input untouched
    assert fastsam_box_step(torch.zeros((0, 4)), (10, 10)).shape == (0, 4)


def test_reference_placement_quirk_is_detected() -> None:
    # 72x1418 at 640: the short side rounds down to 32 rows, and the reference's recomputed scale gives
    # 630 columns instead of the 640 the image really occupies.
    g = letterbox_geometry((72, 1418), 640)
    assert g.resized_hw == (32, 640)
    assert reference_placement((72, 1418), g.input_hw).resized_hw == (32, 630)
    # for an ordinary photo both agree
    g = letterbox_geometry((534, 800), 1024)
    assert reference_placement((534, 800), g.input_hw) == g


@given(
    h=st.integers(1, 300), w=st.integers(1, 300), out_h=st.integers(1, 400), out_w=st.integers(1, 400),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=200, deadline=None)
@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "torch"])
def test_resize_is_bit_identical_to_the_reference_library(
    compiled: bool, h: int, w: int, out_h: int, out_w: int, seed: int
) -> None:
    """Both forms of the resize (the compiled pass, and torch ops where Numba is unusable) against OpenCV."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (test extra) is the reference for the 8-bit resize")
    if compiled and not RESIZE_KERNEL.available:
        pytest.skip("numba is not installed")
    image = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    expected = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, 3)
    saved = RESIZE_KERNEL.available
    RESIZE_KERNEL.available = compiled  # (not monkeypatch: a function-scoped fixture under Hypothesis)
    try:
        got = resize_bilinear_u8(image, (out_h, out_w))
    finally:
        RESIZE_KERNEL.available = saved
    assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("hw", [(3, 5), (333, 500), (1500, 2250), (1024, 1024)])
def test_letterbox_on_cuda_is_bit_identical(hw: tuple[int, int]) -> None:
    """The fixed-point resize is integer arithmetic: the GPU gives the CPU's bits."""
    image = np.random.default_rng(2).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    g = letterbox_geometry(hw, 1024)
    assert torch.equal(letterbox_image(image, g, "cuda").cpu(), letterbox_image(image, g))
