"""Tests for fastsam.ops.rle: RLE, areas, boxes, polygons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from fastsam.ops.rle import (
    BOUNDS_KERNEL,
    STRING_KERNEL,
    box_xyxy_to_xywh,
    mask_area,
    mask_to_box,
    mask_to_polygons,
    mask_to_rle,
    polygon_area,
    rle_to_mask,
    toggles_bounds_and_area,
    toggles_to_rle,
)

# pycocotools (used directly below as the reference rasteriser) predates numpy 2's __array__ protocol.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _random_masks(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    masks = np.random.default_rng(seed).random((n, height, width)) < 0.3
    masks[0] = False
    masks[1] = True
    return masks


def _brute_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _rasterize(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise outer rings minus holes with pycocotools (COCO polygon convention)."""
    out = np.zeros((height, width), bool)
    for ring in polygons:
        filled = mask_utils.decode(mask_utils.frPyObjects([ring.ravel().astype(float).tolist()], height, width))
        filled = filled[:, :, 0].astype(bool)
        if polygon_area(ring, signed=True) > 0:
            out |= filled
        else:
            out &= ~filled
    return out


# --- RLE -----------------------------------------------------------------------------------------


def test_rle_roundtrip_random_incl_empty_and_full() -> None:
    masks = _random_masks(6, 37, 53)
    rles = mask_to_rle(masks)
    assert len(rles) == 6
    for rle in rles:
        assert rle["size"] == [37, 53]
        assert isinstance(rle["counts"], str)
    json.dumps(rles)
    back = rle_to_mask(rles)
    assert back.dtype == np.bool_ and back.shape == masks.shape and back.flags.c_contiguous
    np.testing.assert_array_equal(back, masks)


def test_rle_bytes_and_uncompressed_counts() -> None:
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    rle = mask_to_rle(mask[None])[0]
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    np.testing.assert_array_equal(rle_to_mask([as_bytes])[0], mask)
    # Uncompressed COCO RLE: column-major runs starting with zeros.
    flat = mask.ravel(order="F").astype(int)
    runs, current, length = [], 0, 0
    for v in flat:
        if v == current:
            length += 1
        else:
            runs.append(length)
            current, length = v, 1
    runs.append(length)
    np.testing.assert_array_equal(rle_to_mask([{"size": [4, 5], "counts": runs}])[0], mask)


def test_rle_empty_inputs_and_errors() -> None:
    assert mask_to_rle(np.zeros((0, 3, 4), bool)) == []
    assert rle_to_mask([]).shape == (0, 0, 0)
    assert rle_to_mask([], image_size=(3, 4)).shape == (0, 3, 4)
    a = mask_to_rle(np.ones((1, 2, 2), bool))[0]
    b = mask_to_rle(np.ones((1, 3, 2), bool))[0]
    with pytest.raises(ValueError, match="same size"):
        rle_to_mask([a, b])
    with pytest.raises(ValueError, match="COCO RLE"):
        rle_to_mask([{"counts": "x"}])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        mask_to_rle(np.zeros((3, 4), bool))


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))))
def test_rle_roundtrip_property(masks: np.ndarray) -> None:
    rles = json.loads(json.dumps(mask_to_rle(masks)))
    np.testing.assert_array_equal(rle_to_mask(rles), masks)
    np.testing.assert_array_equal(mask_area(masks), masks.reshape(len(masks), -1).sum(1))
    np.testing.assert_array_equal(mask_to_box(masks), np.array([_brute_box(m) for m in masks], np.float32))


# --- areas and boxes -----------------------------------------------------------------------------


def test_area_and_box_match_brute_force() -> None:
    masks = _random_masks(5, 30, 40, seed=3)
    masks[2] = False
    masks[2, 7, 11] = True  # single pixel
    masks[3] = False
    masks[3, 5:9, 0:40] = True  # touches left and right borders
    areas = mask_area(masks)
    assert areas.dtype == np.int64
    np.testing.assert_array_equal(areas, [m.sum() for m in masks])
    boxes = mask_to_box(masks)
    assert boxes.dtype == np.float32 and boxes.shape == (5, 4)
    np.testing.assert_array_equal(boxes, np.array([_brute_box(m) for m in masks], np.float32))
    np.testing.assert_array_equal(boxes[2], [11, 7, 12, 8])
    np.testing.assert_array_equal(boxes[3], [0, 5, 40, 9])
    np.testing.assert_array_equal(boxes[0], [0, 0, 0, 0])
    assert mask_to_box(np.zeros((0, 3, 3), bool)).shape == (0, 4)
    assert mask_area(np.zeros((0, 3, 3), bool)).shape == (0,)


def test_box_xyxy_to_xywh() -> None:
    boxes = np.array([[1, 2, 4, 8], [0, 0, 0, 0]], np.float32)
    out = box_xyxy_to_xywh(boxes)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1, 2, 3, 6], [0, 0, 0, 0]])
    np.testing.assert_array_equal(boxes[0], [1, 2, 4, 8])  # input untouched
    assert box_xyxy_to_xywh(np.array([[1, 2, 3, 4]])).dtype == np.float32
    with pytest.raises(ValueError):
        box_xyxy_to_xywh(np.zeros((2, 3)))


# --- polygons ------------------------------------------------------------------------------------


def _disc(height: int, width: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r**2


def _check_polygons(mask: np.ndarray, n_outer: int, n_holes: int) -> None:
    polys = mask_to_polygons(mask)
    signed = [polygon_area(p, signed=True) for p in polys]
    assert sum(a > 0 for a in signed) == n_outer
    assert sum(a < 0 for a in signed) == n_holes
    for p in polys:
        assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 2
        assert p[:, 0].min() >= 0 and p[:, 0].max() <= mask.shape[1]
        assert p[:, 1].min() >= 0 and p[:, 1].max() <= mask.shape[0]
    assert sum(signed) == pytest.approx(mask.sum(), rel=0.03)
    back = _rasterize(polys, *mask.shape)
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.97


def test_polygons_rectangle() -> None:
    mask = np.zeros((40, 50), bool)
    mask[5:30, 10:40] = True
    polys = mask_to_polygons(mask)
    assert len(polys) == 1
    assert polygon_area(polys[0]) == pytest.approx(25 * 30 - 0.5)  # corners cut by 1/8 px each
    np.testing.assert_allclose(polys[0].min(0), [10, 5])
    np.testing.assert_allclose(polys[0].max(0), [40, 30])
    assert len(polys[0]) == 8  # collinear points dropped
    _check_polygons(mask, 1, 0)


def test_polygons_disc() -> None:
    _check_polygons(_disc(100, 120, 50, 60, 30), 1, 0)


def test_polygons_ring() -> None:
    mask = _disc(100, 100, 50, 50, 40) & ~_disc(100, 100, 50, 50, 20)
    _check_polygons(mask, 1, 1)


def test_polygons_border_touching_and_two_parts() -> None:
    mask = np.zeros((30, 30), bool)
    mask[:, :10] = True  # touches three borders
    mask[20:, 20:] = True  # bottom-right corner
    _check_polygons(mask, 2, 0)
    full = np.ones((7, 9), bool)
    polys = mask_to_polygons(full)
    assert len(polys) == 1 and polygon_area(polys[0]) == pytest.approx(63 - 0.5)


def test_polygons_empty_and_min_area() -> None:
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []
    mask = np.zeros((30, 30), bool)
    mask[2, 2] = True
    mask[10:20, 10:20] = True
    assert len(mask_to_polygons(mask)) == 2
    assert len(mask_to_polygons(mask, min_area=5)) == 1
    with pytest.raises(ValueError):
        mask_to_polygons(np.zeros((1, 5, 5), bool))


def test_real_coco_annotations_roundtrip(shared_dir: Path) -> None:
    ann_file = shared_dir / "data" / "tiny-coco" / "small_coco" / "instances_train2017_small.json"
    if not ann_file.is_file():
        pytest.skip(f"{ann_file} not present")
    data = json.loads(ann_file.read_text())
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    checked = 0
    for ann in data["annotations"][:40]:
        height, width = sizes[ann["image_id"]]
        seg = ann["segmentation"]
        rle = mask_utils.frPyObjects(seg, height, width)
        mask = mask_utils.decode(mask_utils.merge(rle) if isinstance(rle, list) else rle).astype(bool)
        masks = mask[None]
        np.testing.assert_array_equal(rle_to_mask(mask_to_rle(masks)), masks)
        if mask.sum() >= 200:
            back = _rasterize(mask_to_polygons(mask), height, width)
            assert (back & mask).sum() / (back | mask).sum() > 0.9
        checked += 1
    assert checked > 0


def _toggles(mask: np.ndarray) -> np.ndarray:
    """Column-major run boundaries of one ``(H, W)`` mask, by the definition."""
    flat = np.concatenate(([False], mask.T.reshape(-1), [False]))
    return np.flatnonzero(flat[1:] != flat[:-1]).astype(np.int32)


@given(
    mask=arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40))),
    fill=st.sampled_from(["drawn", "empty", "full", "noise"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=300, deadline=None)
@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "pycocotools"])
def test_toggles_to_rle_gives_the_strings_of_pycocotools(compiled: bool, mask: np.ndarray, fill: str, seed: int) -> None:
    """The compiled COCO string encoder (and its fallback) against pycocotools' encoder, incl. masks that start or
    end at the image's first/last pixel and runs long enough to need several characters and negative differences."""
    if compiled and not STRING_KERNEL.available:
        pytest.skip("numba is not installed")
    if fill == "empty":
        mask = np.zeros_like(mask)
    elif fill == "full":
        mask = np.ones_like(mask)
    elif fill == "noise":
        mask = np.random.default_rng(seed).random(mask.shape) < 0.5
    saved = STRING_KERNEL.available
    STRING_KERNEL.available = compiled  # (not monkeypatch: a function-scoped fixture under Hypothesis)
    try:
        [ours] = toggles_to_rle([_toggles(mask)], mask.shape)
    finally:
        STRING_KERNEL.available = saved
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours == {"size": list(mask.shape), "counts": theirs["counts"].decode("ascii")}


@given(mask=arrays(bool, st.tuples(st.integers(1, 30), st.integers(1, 30))))
@settings(max_examples=200, deadline=None)
@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
def test_bounds_and_area_from_toggles_are_those_of_the_mask(compiled: bool, mask: np.ndarray) -> None:
    if compiled and not BOUNDS_KERNEL.available:
        pytest.skip("numba is not installed")
    saved = BOUNDS_KERNEL.available
    BOUNDS_KERNEL.available = compiled  # (not monkeypatch: a function-scoped fixture under Hypothesis)
    try:
        box, area = toggles_bounds_and_area(_toggles(mask), mask.shape[0])
    finally:
        BOUNDS_KERNEL.available = saved
    expected = mask_to_box(mask[None])[0].astype(int).tolist() if mask.any() else [0, 0, 0, 0]
    assert list(box) == expected and area == int(mask.sum())


def test_toggles_to_rle_of_a_big_noisy_mask() -> None:
    """Millions of runs, counts past 2**5k boundaries and int64 toggles (as stored past 2**31 pixels)."""
    mask = np.random.default_rng(1).random((1500, 2250)) < 0.5
    mask[:, 700:1600] = False  # one run of ~1.3 M zeros among the short ones
    [ours] = toggles_to_rle([_toggles(mask).astype(np.int64)], mask.shape)
    assert ours["counts"] == mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


@given(
    masks=arrays(bool, st.tuples(st.integers(0, 4), st.integers(1, 17), st.integers(1, 13))),
)
@settings(max_examples=200, deadline=None)
def test_mask_to_rle_equals_pycocotools(masks: np.ndarray) -> None:
    from pycocotools import mask as mask_utils

    ours = mask_to_rle(masks)
    if len(masks):
        theirs = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        assert [r["counts"] for r in ours] == [r["counts"].decode("ascii") for r in theirs]


@given(
    masks=arrays(bool, st.tuples(st.integers(0, 5), st.integers(1, 17), st.integers(1, 13))),
    chunk_masks=st.integers(1, 6),
)
@settings(max_examples=200, deadline=None)
def test_mask_tensor_to_rle_equals_pycocotools(masks: np.ndarray, chunk_masks: int) -> None:
    """The device-side encoder (runs found with torch ops, in chunks of masks) gives pycocotools' strings."""
    import torch

    from fastsam.ops.rle_torch import mask_tensor_to_rle

    height, width = masks.shape[1:]
    ours = mask_tensor_to_rle(torch.from_numpy(masks), chunk_pixels=chunk_masks * height * width)
    assert len(ours) == len(masks)
    if len(masks):
        theirs = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        assert [r["counts"] for r in ours] == [r["counts"].decode("ascii") for r in theirs]
        assert all(r["size"] == [height, width] for r in ours)


def test_mask_tensor_to_rle_real_sizes_and_errors() -> None:
    """Photo-sized masks with edge pixels set: equal to the numpy encoder; a 2-D input is refused."""
    import torch

    from fastsam.ops.rle_torch import mask_tensor_to_rle

    masks = _random_masks(6, 300, 451, seed=3)
    masks[2] = False
    masks[2, 0, 0] = masks[2, -1, -1] = True  # the first and the last pixel of the column-major order
    masks[3, :, -1] = True  # a run reaching the end
    masks[4, 120:200, 40:300] = True
    assert mask_tensor_to_rle(torch.from_numpy(masks), chunk_pixels=1) == mask_to_rle(masks)
    assert mask_tensor_to_rle(torch.from_numpy(masks.astype(np.uint8))) == mask_to_rle(masks)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        mask_tensor_to_rle(torch.zeros(4, 5, dtype=torch.bool))
