"""Tests for fastsam.visualize: overlay, label_map, save_png."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam.visualize import FIXED_COLOR, label_map, mask_colors, overlay, save_png


def _image(height: int = 40, width: int = 60) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _masks(height: int = 40, width: int = 60) -> np.ndarray:
    masks = np.zeros((3, height, width), bool)
    masks[0, 5:35, 5:55] = True  # large
    masks[1, 10:15, 10:15] = True  # small, inside the large one
    masks[2, 30:40, 50:60] = True  # touches the bottom-right border
    return masks


def test_overlay_shape_dtype_and_untouched_pixels() -> None:
    image, masks = _image(), _masks()
    out = overlay(image, masks)
    assert out.shape == image.shape and out.dtype == np.uint8
    outside = ~masks.any(0)
    np.testing.assert_array_equal(out[outside], image[outside])
    assert (out[masks.any(0)] != image[masks.any(0)]).any()
    np.testing.assert_array_equal(image, _image())  # input not modified


def test_overlay_alpha_zero_and_one() -> None:
    image, masks = _image(), _masks()
    np.testing.assert_array_equal(overlay(image, masks, alpha=0.0), image)
    colors = np.array([[10, 20, 30], [200, 100, 0], [0, 0, 255]], np.uint8)
    out = overlay(image, masks, colors=colors, alpha=1.0)
    np.testing.assert_array_equal(out[20, 30], colors[0])
    np.testing.assert_array_equal(out[39, 59], colors[2])


def test_small_mask_on_top_of_large() -> None:
    image, masks = _image(), _masks()
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    # Put the large mask last: area ordering, not index ordering, must decide what is on top.
    out = overlay(image, masks[[1, 2, 0]], colors=colors[[1, 2, 0]], alpha=1.0)
    np.testing.assert_array_equal(out[12, 12], [0, 255, 0])
    np.testing.assert_array_equal(out[25, 30], [255, 0, 0])


def test_blend_formula() -> None:
    image = np.full((2, 2, 3), 100, np.uint8)
    masks = np.zeros((1, 2, 2), bool)
    masks[0, 0, 0] = True
    out = overlay(image, masks, colors=np.array([200, 0, 51]), alpha=0.25)
    np.testing.assert_array_equal(out[0, 0], [125, 75, 88])  # 100*.75 + c*.25, rounded
    np.testing.assert_array_equal(out[1, 1], [100, 100, 100])


def test_label_map() -> None:
    masks = _masks()
    labels = label_map(masks)
    assert labels.dtype == np.int32 and labels.shape == masks.shape[1:]
    assert labels[12, 12] == 1 and labels[20, 30] == 0 and labels[0, 0] == -1 and labels[39, 59] == 2
    assert (label_map(np.zeros((0, 4, 5), bool)) == -1).all()


def test_contours() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    masks = np.zeros((1, 20, 20), bool)
    masks[0, 5:15, 0:10] = True  # touches the left border
    out = overlay(image, masks, alpha=0.0, contours=True, contour_color=(255, 0, 0))
    red = (out == [255, 0, 0]).all(-1)
    assert red[5, 3] and red[14, 3] and red[8, 9] and red[8, 0]  # edges, incl. the image border
    assert not red[8, 5]  # interior
    assert not red[~masks[0]].any()
    assert red.sum() == 10 * 2 + 8 * 2


def test_colors() -> None:
    a, b = mask_colors(5, seed=1), mask_colors(5, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, mask_colors(5, seed=2))
    fixed = mask_colors(4, random_colors=False)
    assert (fixed == np.array(FIXED_COLOR, np.uint8)).all()
    image, masks = _image(), _masks()
    out = overlay(image, masks, random_colors=False, alpha=1.0)
    np.testing.assert_array_equal(out[20, 30], FIXED_COLOR)


def test_overlay_no_masks_and_validation() -> None:
    image = _image()
    np.testing.assert_array_equal(overlay(image, np.zeros((0, 40, 60), bool)), image)
    with pytest.raises(ValueError, match="masks"):
        overlay(image, np.zeros((1, 10, 10), bool))
    with pytest.raises(ValueError, match="image"):
        overlay(image.astype(np.float32), _masks())
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, _masks(), alpha=1.5)
    with pytest.raises(ValueError, match="colors"):
        overlay(image, _masks(), colors=np.zeros((2, 3)))


def test_overlay_is_fast() -> None:
    """300 masks at 1024x1024 must not cost seconds (the naive per-mask blend does)."""
    rng = np.random.default_rng(0)
    size, n = 1024, 300
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        y, x = rng.integers(0, size - 64, 2)
        h, w = rng.integers(8, 400, 2)
        masks[i, y : y + h, x : x + w] = True
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    start = time.perf_counter()
    overlay(image, masks)
    assert time.perf_counter() - start < 1.5


def test_save_png(tmp_path: Path) -> None:
    rgb = _image(8, 9)
    path = tmp_path / "a" / "b" / "rgb.png"
    save_png(rgb, path)
    with Image.open(path) as img:
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), rgb)
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True
    save_png(mask, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), mask.astype(np.uint8) * 255)
    save_png(np.zeros((3, 3, 4), np.uint8), tmp_path / "rgba.png")
    with pytest.raises(ValueError):
        save_png(np.zeros((3, 3), np.float32), tmp_path / "bad.png")
