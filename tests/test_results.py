"""Tests for SegmentationResult exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam.ops.rle import mask_to_box, rle_to_mask
from fastsam.results import SegmentationResult


def _result(with_image: bool = True) -> SegmentationResult:
    height, width = 24, 32
    masks = np.zeros((4, height, width), bool)
    masks[0, 2:20, 3:30] = True
    masks[1, 5:9, 6:12] = True
    masks[2, 10:24, 0:5] = True
    masks[2, 14:18, 1:3] = False  # a hole
    masks[3, 0, 31] = True
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return SegmentationResult(
        masks=masks,
        boxes=mask_to_box(masks),
        scores=np.array([0.9, 0.8, 0.7, 0.25], np.float32),
        image_size=(height, width),
        file_name="img.jpg",
        image=image if with_image else None,
    )


def test_to_rle() -> None:
    res = _result()
    rles = res.to_rle()
    assert len(rles) == len(res) == 4
    np.testing.assert_array_equal(rle_to_mask(rles), res.masks)


def test_sa1b_json_roundtrip() -> None:
    res = _result()
    data = json.loads(json.dumps(res.to_sa1b(image_id=7)))
    assert data["image"] == {"image_id": 7, "width": 32, "height": 24, "file_name": "img.jpg"}
    anns = data["annotations"]
    assert [a["id"] for a in anns] == [0, 1, 2, 3]
    np.testing.assert_array_equal(rle_to_mask([a["segmentation"] for a in anns]), res.masks)
    assert anns[1]["bbox"] == [6.0, 5.0, 6.0, 4.0]
    assert anns[3]["bbox"] == [31.0, 0.0, 1.0, 1.0]
    assert [a["area"] for a in anns] == [int(m.sum()) for m in res.masks]
    assert anns[0]["predicted_iou"] == pytest.approx(0.9)
    assert all(a["point_coords"] == [] and a["crop_box"] == [0, 0, 32, 24] for a in anns)
    assert "image_id" not in res.to_sa1b()["image"]


def test_save_json(tmp_path: Path) -> None:
    res = _result()
    path = res.save_json(tmp_path / "out" / "r.json", image_id=1)
    assert path == tmp_path / "out" / "r.json"
    data = json.loads(path.read_text())
    np.testing.assert_array_equal(rle_to_mask([a["segmentation"] for a in data["annotations"]]), res.masks)


def test_save_masks(tmp_path: Path) -> None:
    res = _result()
    paths = res.save_masks(tmp_path / "masks")
    assert [p.name for p in paths] == ["000.png", "001.png", "002.png", "003.png"]
    for path, mask in zip(paths, res.masks):
        with Image.open(path) as img:
            assert img.mode == "L"
            np.testing.assert_array_equal(np.asarray(img), mask.astype(np.uint8) * 255)


def test_save_masks_wider_names_over_1000(tmp_path: Path) -> None:
    res = SegmentationResult(
        masks=np.zeros((1001, 2, 2), bool),
        boxes=np.zeros((1001, 4), np.float32),
        scores=np.zeros(1001, np.float32),
        image_size=(2, 2),
    )
    paths = res.save_masks(tmp_path)
    assert paths[0].name == "0000.png" and paths[-1].name == "1000.png"


def test_polygons() -> None:
    polys = _result().polygons()
    assert len(polys) == 4
    assert len(polys[0]) == 1 and len(polys[2]) == 2  # outer + hole
    assert all(p.dtype == np.float32 and p.shape[1] == 2 for ps in polys for p in ps)


def test_render_and_save_overlay(tmp_path: Path) -> None:
    res = _result()
    out = res.render(alpha=0.6, contours=True, seed=3)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(res.render(alpha=0.0), res.image)
    path = res.save_overlay(tmp_path / "o.png", alpha=0.6, contours=True, seed=3)
    with Image.open(path) as img:
        np.testing.assert_array_equal(np.asarray(img), out)
    with pytest.raises(ValueError, match="no image"):
        _result(with_image=False).render()


def test_select() -> None:
    res = _result()
    sub = res.select([2, 0])
    assert len(sub) == 2
    np.testing.assert_array_equal(sub.masks, res.masks[[2, 0]])
    np.testing.assert_array_equal(sub.scores, res.scores[[2, 0]])
    assert sub.image is res.image and sub.file_name == "img.jpg" and sub.image_size == (24, 32)
    assert len(res.select(1)) == 1
    assert len(res.select(res.scores > 0.5)) == 3
    assert len(res.select(slice(1, 3))) == 2
    assert len(res.select([])) == 0
    assert res.select([]).masks.shape == (0, 24, 32)


def test_empty() -> None:
    res = SegmentationResult.empty((10, 12), file_name="x.png")
    assert len(res) == 0
    assert res.masks.shape == (0, 10, 12) and res.masks.dtype == np.bool_
    assert res.boxes.shape == (0, 4) and res.boxes.dtype == np.float32
    assert res.scores.shape == (0,) and res.scores.dtype == np.float32
    assert res.to_sa1b() == {"image": {"width": 12, "height": 10, "file_name": "x.png"}, "annotations": []}
    assert res.to_rle() == [] and res.polygons() == []
    image = np.zeros((10, 12, 3), np.uint8)
    np.testing.assert_array_equal(SegmentationResult.empty((10, 12), image=image).render(), image)


def test_tensor_masks_stay_unread_for_rle_sa1b_len_and_select() -> None:
    """A result holding a tensor (as CUDA models return) answers RLE, SA-1B, areas, len and select from the
    tensor, equal to the same result holding numpy masks, and converts only when ``masks`` is read."""
    import torch

    ref = _result()
    lazy = SegmentationResult(
        masks=torch.from_numpy(ref.masks.copy()), boxes=ref.boxes, scores=ref.scores,
        image_size=ref.image_size, file_name=ref.file_name, image=ref.image,
    )  # fmt: skip
    assert not lazy.masks_materialized and len(lazy) == 4
    assert lazy.to_rle() == ref.to_rle()
    assert lazy.to_sa1b(image_id=3) == ref.to_sa1b(image_id=3)
    np.testing.assert_array_equal(lazy.areas(), ref.areas())
    assert lazy.areas().dtype == np.int64
    for index in ([2, 0], ref.scores > 0.5, slice(1, 3), 1, []):
        sub = lazy.select(index)
        assert not sub.masks_materialized
        assert sub.to_rle() == ref.select(index).to_rle()
        np.testing.assert_array_equal(sub.masks, ref.select(index).masks)
    assert not lazy.masks_materialized  # nothing above read lazy.masks
    masks = lazy.masks
    assert lazy.masks_materialized and isinstance(masks, np.ndarray) and masks.dtype == np.bool_
    np.testing.assert_array_equal(masks, ref.masks)
    other = SegmentationResult(masks=torch.from_numpy(ref.masks.copy()), boxes=ref.boxes, scores=ref.scores,
                               image_size=ref.image_size)  # fmt: skip
    assert other.materialize_masks() is other and other.masks_materialized
