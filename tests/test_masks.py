"""Mask stacks kept as box windows or device tensors (fastsam.masks) against the laid-out numpy array."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsam.masks import DeviceMasks, WindowedMasks
from fastsam.ops.rle import mask_area, mask_to_rle, windows_to_rle


@st.composite
def windowed_stacks(draw) -> tuple[WindowedMasks, np.ndarray]:
    """Random windows (empty, edge-touching, full-image, all-False) and the dense stack they stand for."""
    height, width = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    n = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    windows, bounds = [], []
    dense = np.zeros((n, height, width), dtype=bool)
    for k in range(n):
        x1, x2 = sorted(draw(st.lists(st.integers(0, width), min_size=2, max_size=2)))
        y1, y2 = sorted(draw(st.lists(st.integers(0, height), min_size=2, max_size=2)))
        window = rng.random((y2 - y1, x2 - x1)) < draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
        windows.append(window)
        bounds.append([x1, y1, x2, y2])
        dense[k, y1:y2, x1:x2] = window
    return WindowedMasks(windows, np.array(bounds, dtype=np.int64).reshape(-1, 4), (height, width)), dense


@given(windowed_stacks(), st.data())
@settings(max_examples=200, deadline=None)
def test_windowed_masks_equal_the_dense_stack(case: tuple[WindowedMasks, np.ndarray], data: st.DataObject) -> None:
    masks, dense = case
    assert masks.shape == dense.shape and len(masks) == len(dense)
    assert np.array_equal(masks.numpy(), dense)
    assert masks.to_rle() == mask_to_rle(dense)
    assert np.array_equal(masks.areas(), mask_area(dense))
    assert np.array_equal(masks.any(), dense.any(axis=(1, 2)))
    keep = data.draw(st.lists(st.integers(0, max(0, len(dense) - 1)), max_size=4)) if len(dense) else []
    assert np.array_equal(masks.select(keep).numpy(), dense[keep].reshape(-1, *dense.shape[1:]))
    flags = dense.any(axis=(1, 2))
    assert np.array_equal(masks.select(flags).numpy(), dense[flags])
    assert np.array_equal(masks.select(slice(1, None)).numpy(), dense[1:])


def test_windows_to_rle_threads_large_stacks_in_order() -> None:
    """64 masks take the threaded path (slices encoded side by side): same strings, same order."""
    rng = np.random.default_rng(5)
    dense = np.zeros((64, 40, 50), dtype=bool)
    bounds = []
    for k in range(64):
        x1, y1 = rng.integers(0, 40), rng.integers(0, 30)
        x2, y2 = x1 + rng.integers(1, 50 - x1 + 1), y1 + rng.integers(1, 40 - y1 + 1)
        dense[k, y1:y2, x1:x2] = rng.random((y2 - y1, x2 - x1)) < 0.5
        bounds.append([x1, y1, x2, y2])
    windows = [dense[k, y1:y2, x1:x2] for k, (x1, y1, x2, y2) in enumerate(bounds)]
    assert windows_to_rle(windows, np.array(bounds), (40, 50)) == mask_to_rle(dense)


def test_windowed_masks_refuse_windows_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit its bounds"):
        WindowedMasks([np.zeros((3, 4), bool)], np.array([[0, 0, 3, 4]]), (10, 10))
    with pytest.raises(ValueError, match="2 windows but 1 bounds"):
        WindowedMasks([np.zeros((1, 1), bool)] * 2, np.array([[0, 0, 1, 1]]), (10, 10))
    with pytest.raises(ValueError, match="2 windows but 1 bounds"):
        windows_to_rle([np.zeros((1, 1), bool)] * 2, np.array([[0, 0, 1, 1]]), (10, 10))


def test_device_masks_match_numpy() -> None:
    """DeviceMasks on a CPU tensor (the code is the same on a GPU): every answer equals the numpy one."""
    dense = np.random.default_rng(1).random((5, 13, 17)) < 0.4
    dense[0] = False
    masks = DeviceMasks(torch.from_numpy(dense))
    assert masks.shape == dense.shape and len(masks) == 5
    assert np.array_equal(masks.numpy(), dense)
    assert masks.to_rle() == mask_to_rle(dense)
    assert np.array_equal(masks.areas(), mask_area(dense))
    assert np.array_equal(masks.any(), dense.reshape(5, -1).any(1))
    assert np.array_equal(masks.select([3, 1]).numpy(), dense[[3, 1]])
    assert np.array_equal(masks.select(masks.any()).numpy(), dense[1:])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        DeviceMasks(torch.zeros(3, 4, dtype=torch.bool))


@given(windowed_stacks(), st.booleans(), st.sampled_from([0.0, 0.4, 1.0]))
@settings(max_examples=100, deadline=None)
def test_overlay_from_windows_equals_overlay_from_the_array(
    case: tuple[WindowedMasks, np.ndarray], contours: bool, alpha: float
) -> None:
    from fastsam.visualize import overlay

    masks, dense = case
    image = np.random.default_rng(len(dense)).integers(0, 256, (*dense.shape[1:], 3), dtype=np.uint8)
    want = overlay(image, dense, alpha=alpha, contours=contours)
    assert np.array_equal(overlay(image, masks, alpha=alpha, contours=contours), want)


def test_render_of_a_predicted_result_does_not_lay_out_the_array(tiny_model, photo_path) -> None:
    [result] = tiny_model.predict(photo_path, imgsz=256, conf=0.2)
    picture = result.render(contours=True)
    assert not result.masks_materialized and len(result) > 0
    from fastsam.visualize import overlay

    assert np.array_equal(picture, overlay(result.image, result.masks, contours=True))


@given(windowed_stacks())
@settings(max_examples=100, deadline=None)
def test_mask_index_from_windows_equals_the_index_of_the_array(case: tuple[WindowedMasks, np.ndarray]) -> None:
    from fastsam.ops.mask_index import MaskIndex

    masks, dense = case
    ours = MaskIndex.from_windows(masks.windows, masks.bounds, masks.image_size)
    ref = MaskIndex(dense)
    assert ours.shape == ref.shape
    for name in ("words", "integral", "areas", "bboxes"):
        assert np.array_equal(getattr(ours, name), getattr(ref, name)), name


def test_point_and_box_prompts_on_a_predicted_result_never_lay_out_the_array(tiny_model, photo_path) -> None:
    """Prompts answer from the windowed index and lay out only the masks they return; the same answers as a
    SegmentedImage over the laid-out array."""
    from fastsam.predictor import SegmentedImage

    [result] = tiny_model.predict(photo_path, imgsz=256, conf=0.2)
    [twin] = tiny_model.predict(photo_path, imgsz=256, conf=0.2)
    twin.materialize_masks()
    lazy, eager = SegmentedImage(result), SegmentedImage(twin)
    h, w = result.image_size
    points, boxes = [[w // 2, h // 2], [w // 5, h // 3]], [[w // 4, h // 4, w // 2, h // 2]]
    for ask in (lambda s: s.points(points, [1, 1]), lambda s: s.boxes(boxes), lambda s: s.points(points, [1, 0])):
        a, b = ask(lazy), ask(eager)
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.masks, b.masks)
    assert not result.masks_materialized
