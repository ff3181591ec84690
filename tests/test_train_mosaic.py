"""Mosaic augmentation: masks, boxes and pixels move together; cut-away instances are dropped; deterministic."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from fastsam.training.augment import Augment, Tile, compose, random_affine, render_instance
from fastsam.training.dataset import SegmentationDataset
from fastsam.training.mosaic import mosaic_tiles
from fastsam.training.records import ImageRecord


def _box_of(mask: torch.Tensor | np.ndarray) -> list[float]:
    ys, xs = np.nonzero(np.asarray(mask))
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


CELL = 1.0 + 0.5 / 4 + 1e-3  # one mask cell, plus the box's sub-pixel refinement (half an input pixel)


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


@pytest.fixture(scope="module")
def white_shapes(tmp_path_factory) -> list[ImageRecord]:
    """Images of different sizes: black, with white rectangles and ellipses (their masks known exactly)."""
    folder = tmp_path_factory.mktemp("bw")
    rng = np.random.default_rng(7)
    records = []
    for i in range(10):
        h, w = int(rng.integers(60, 200)), int(rng.integers(60, 200))
        image = np.zeros((h, w, 3), np.uint8)
        anns = []
        for _ in range(int(rng.integers(1, 4))):
            m = np.zeros((h, w), np.uint8)
            bw, bh = int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            if rng.random() < 0.5:
                m[y0 : y0 + bh, x0 : x0 + bw] = 1
            else:
                cv2.ellipse(m, (x0 + bw // 2, y0 + bh // 2), (bw // 2, bh // 2), 0, 0, 360, 1, -1)
            m &= ~image[:, :, 0].astype(bool)  # shapes do not overlap: each pixel has one owner
            if m.sum() < 30:
                continue
            image[m.astype(bool)] = 255
            rle = _rle(m)
            anns.append(("rle", {"size": rle["size"], "counts": rle["counts"].decode()}, False))
        path = folder / f"{i}.png"
        cv2.imwrite(str(path), image)
        records.append(ImageRecord(path, h, w, anns, i))
    return records


MOSAIC_ONLY = Augment(mosaic=1.0, scale=0.5, translate=0.1, fliplr=0.5, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)


def test_mosaic_boxes_masks_and_pixels_agree(white_shapes: list[ImageRecord]):
    ds = SegmentationDataset(white_shapes, 96, MOSAIC_ONLY, seed=1)
    total = sum(len(r.annotations) for r in white_shapes)
    seen = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            image, boxes, masks = item["image"], item["boxes"], item["masks"]
            assert image.shape == (3, 96, 96) and image.dtype == torch.uint8
            assert masks.dtype == torch.uint8 and masks.shape[1:] == (24, 24)
            assert boxes.dtype == torch.float32 and len(boxes) == len(masks) <= 4 * total
            assert bool((boxes >= 0).all() and (boxes <= 96).all())
            assert bool((boxes[:, 2:] - boxes[:, :2] >= 2).all())
            for m, b in zip(masks, boxes):
                assert m.any()
                assert _box_of(m) == pytest.approx((b / 4).tolist(), abs=CELL)
            # pixels: the instances are the white shapes (mask cells are >= half covered; edges are blurred)
            grey = image.float().mean(0).numpy()
            if len(masks):
                cells = masks.any(0).numpy().astype(bool)
                block = grey.reshape(24, 4, 24, 4).mean((1, 3))
                assert (block[cells] > 100).mean() > 0.9
            white = grey > 200
            covered = np.kron(masks.any(0).numpy(), np.ones((4, 4), np.uint8)).astype(bool) if len(masks) else np.zeros_like(white)
            grown = cv2.dilate(covered.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
            assert white[~grown].mean() < 0.02  # no white shape without an instance, but slivers under 10 %
            seen += len(masks)
    assert seen > 0


def test_mosaic_deterministic_and_switchable(white_shapes: list[ImageRecord]):
    ds = SegmentationDataset(white_shapes, 64, Augment(), seed=3)
    a, b = ds[2], ds[2]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["masks"], b["masks"])
    other = SegmentationDataset(white_shapes, 64, Augment(), seed=4)[2]
    assert not torch.equal(a["image"], other["image"])
    # mosaic off (probability 0 or switched off by the trainer): the item is its own letterboxed image
    plain = SegmentationDataset(white_shapes, 64, Augment.off())[2]
    off = SegmentationDataset(white_shapes, 64, Augment(mosaic=0.0, scale=0, translate=0, fliplr=0, hsv_h=0, hsv_s=0, hsv_v=0))[2]
    closed = SegmentationDataset(white_shapes, 64, Augment(scale=0, translate=0, fliplr=0, hsv_h=0, hsv_s=0, hsv_v=0))
    closed.mosaic = False
    for item in (off, closed[2]):
        assert torch.equal(item["image"], plain["image"]) and torch.equal(item["boxes"], plain["boxes"])
    mixed = SegmentationDataset(white_shapes, 64, Augment(mosaic=0.5), seed=0)
    counts = [len(mixed[i]["boxes"]) for i in range(len(mixed))]
    assert counts == [len(mixed[i]["boxes"]) for i in range(len(mixed))]


def test_instances_cut_away_are_dropped_and_cut_ones_shrink():
    mask = np.zeros((100, 100), np.uint8)
    cv2.fillPoly(mask, [np.array([[10, 90], [50, 10], [90, 90]], np.int32)], 1)  # a triangle, apex at the top
    rle = _rle(mask)
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    box, m = render_instance(rle, Tile(identity, (0, 0, 96, 96)), 96)
    assert box.tolist() == pytest.approx([10, 10, 91, 91], abs=0.01)  # the source pixel box, cut at 96
    assert render_instance(rle, Tile(identity, (0, 0, 96, 8)), 96) is None  # entirely above the triangle
    # cut to the top 30 px: only the apex region is left; its box is the visible part's, not the cut full box
    box, m = render_instance(rle, Tile(identity, (0, 0, 96, 40)), 96)
    ys, xs = np.nonzero(mask[:40])
    assert box.tolist() == pytest.approx([xs.min(), 10, xs.max() + 1, 40], abs=0.5)
    assert not m[10:].any() and m.any()
    assert render_instance(rle, Tile(identity, (0, 0, 96, 13)), 96) is None  # under 10 % of the area left
    # through a mosaic whose crop misses the image: nothing of it survives
    tiles = mosaic_tiles([(100, 100)] * 4, 64, np.random.default_rng(0))
    far = np.array([[1.0, 0, -1000.0], [0, 1.0, 0]])
    assert compose(tiles[0], far, 64) is None


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(16, 160), st.integers(16, 160)), min_size=4, max_size=4),
    rect=st.tuples(st.floats(0, 0.8), st.floats(0, 0.8), st.floats(0.1, 1.0), st.floats(0.1, 1.0)),
    seed=st.integers(0, 2**16),
    size=st.sampled_from([32, 64, 96]),
)
def test_property_mosaic_instances_stay_consistent(sizes, rect, seed, size):
    rng = np.random.default_rng(seed)
    tiles = mosaic_tiles(sizes, size, rng)
    matrix = random_affine(2 * size, size, Augment(), rng)
    for (h, w), tile in zip(sizes, tiles):
        placed = compose(tile, matrix, size)
        x0, y0 = int(rect[0] * w), int(rect[1] * h)
        x1, y1 = min(max(x0 + int(rect[2] * w), x0 + 1), w), min(max(y0 + int(rect[3] * h), y0 + 1), h)
        mask = np.zeros((h, w), np.uint8)
        mask[y0:y1, x0:x1] = 1
        if placed is None:
            continue
        px1, py1, px2, py2 = placed.rect
        assert 0 <= px1 < px2 <= size and 0 <= py1 < py2 <= size
        got = render_instance(_rle(mask), placed, size)
        corners = np.array([[x0, y0, 1], [x1, y1, 1]], float) @ placed.matrix.T
        exact = [max(corners[:, 0].min(), px1), max(corners[:, 1].min(), py1), min(corners[:, 0].max(), px2), min(corners[:, 1].max(), py2)]
        if got is None:
            # dropped only when (nearly) cut away or tiny
            area = max(exact[2] - exact[0], 0) * max(exact[3] - exact[1], 0)
            full = abs(np.linalg.det(placed.matrix[:, :2])) * (x1 - x0) * (y1 - y0)
            assert min(exact[2] - exact[0], exact[3] - exact[1]) < 3 or area < 0.12 * full or area < 40
            continue
        box, cells = got
        assert cells.shape == (size // 4, size // 4) and cells.any()
        assert box.tolist() == pytest.approx(exact, abs=1.0)  # a rectangle stays a rectangle, cut by its tile
        assert _box_of(cells) == pytest.approx((box / 4).tolist(), abs=CELL)


def test_close_mosaic_and_cli_options(tmp_path: Path, caplog):
    from fastsam.cli import train as train_cli
    from fastsam.training.trainer import TrainConfig, train
    from train_synth import write_synthetic_coco

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--data", "x.json", "--mosaic", "0.25", "--close-mosaic", "3"])
    cfg = train_cli.config_from_args(args)
    assert cfg.augment["mosaic"] == 0.25 and cfg.close_mosaic == 3 and cfg.format == "auto"
    assert train_cli.config_from_args(parser.parse_args(["train", "--data", "x.json"])).augment["mosaic"] == 1.0
    assert train_cli.config_from_args(parser.parse_args(["train", "--data", "x.json", "--no-augment"])).augment["mosaic"] == 0.0
    with pytest.raises(ValueError, match="probability"):
        train_cli.config_from_args(parser.parse_args(["train", "--data", "x.json", "--mosaic", "1.5"]))

    data = write_synthetic_coco(tmp_path / "d", 4, 64, seed=2)
    cfg = TrainConfig(data=str(data), scale="n", imgsz=64, epochs=2, batch=4, nominal_batch=4, workers=0, device="cpu",
                      out=str(tmp_path / "run"), progress=False, plots=False, close_mosaic=1)
    with caplog.at_level(logging.INFO, logger="fastsam.train"):
        summary = train(cfg)
    assert summary["epochs_done"] == 2 and len(summary["history"]) == 2
    assert "epoch 2: mosaic off for the last 1 epochs" in caplog.text
    assert "epoch 1: mosaic off" not in caplog.text
