"""Tiled everything mode (issue 18, part 3): tile geometry, recall of small objects and merging across tile edges,
checked with a stand-in network whose answers are known, then end to end with a tiny random network and the CLI."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsam.masks import RunMasks, WindowedMasks
from fastsam.ops.rle import (
    mask_to_box,
    runs_intersection_area,
    tight_windows,
    window_toggles,
)
from fastsam.ops.tiles import MAX_OVERLAP, check_tiling, tile_grid, tiles_for_detail
from fastsam.results import SegmentationResult
from fastsam.tiling import segment_tiled


@given(
    hw=st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
    tiles=st.integers(1, 12),
    overlap=st.floats(0.0, 0.85),
)
@settings(max_examples=200, deadline=None)
def test_tiles_cover_the_image_and_overlap(hw: tuple[int, int], tiles: int, overlap: float) -> None:
    grid = tile_grid(hw, tiles, overlap)
    h, w = hw
    assert grid[:, 0].min() == 0 and grid[:, 1].min() == 0 and grid[:, 2].max() == w and grid[:, 3].max() == h
    assert (grid[:, 2] > grid[:, 0]).all() and (grid[:, 3] > grid[:, 1]).all()
    sizes = grid[:, 2:] - grid[:, :2]
    assert (sizes == sizes[0]).all()  # one tile shape: one network input shape, batched
    for axis, length in ((0, w), (1, h)):
        starts = np.unique(grid[:, axis])
        gaps = np.diff(np.append(starts, length - sizes[0, axis]))
        # neighbours share at least `overlap` of a tile (up to rounding), never leave a gap
        assert (gaps <= sizes[0, axis] * (1 - overlap) + 1).all()
    along = len(np.unique(grid[:, 0 if w >= h else 1]))  # tiles along the longer side
    assert len(np.unique(grid, axis=0)) == len(grid) and along <= tiles
    if max(hw) >= 10 * tiles:
        assert along == tiles


@pytest.mark.parametrize("length,imgsz,overlap", [(6000, 1024, 0.2), (1024, 1024, 0.2), (1025, 1024, 0.0), (90000, 640, 0.5)])
def test_auto_tiles_are_seen_at_full_detail(length: int, imgsz: int, overlap: float) -> None:
    n = tiles_for_detail(length, imgsz, overlap)
    grid = tile_grid((length, length), n, overlap)
    assert (grid[:, 2] - grid[:, 0]).max() <= imgsz
    if n > 1:  # and no fewer tiles would do
        assert (tile_grid((length, length), n - 1, overlap)[:, 2] - tile_grid((length, length), n - 1, overlap)[:, 0]).max() > imgsz


def test_bad_tiling_values_are_refused_in_one_line() -> None:
    for tiles in (0, -2, 2.5, "many", True):
        with pytest.raises(ValueError, match="tiles must be 'auto' or a whole number"):
            check_tiling(tiles, 0.2)
    for overlap in (-0.1, MAX_OVERLAP, 1.5):
        with pytest.raises(ValueError, match="tile overlap is a fraction"):
            check_tiling("auto", overlap)


def labels_to_image(labels: np.ndarray) -> np.ndarray:
    """An RGB image that carries a label map (object ids in R + 256 G), for the stand-in network."""
    return np.stack([labels & 255, labels >> 8, np.zeros_like(labels)], axis=2).astype(np.uint8)


class StandIn:
    """Everything mode as a network at ``imgsz`` would see the ground truth: the crop's label map shrunk to ``imgsz``
    (nearest), every object with at least ``min_pixels`` pixels there found, its mask the shrunk one scaled back
    (nearest; coarse, as a real mask from 1/4-resolution prototypes is)."""

    def __init__(self, imgsz: int, min_pixels: int = 4) -> None:
        self.imgsz, self.min_pixels, self.calls = imgsz, min_pixels, 0

    def __call__(self, crops: Sequence[np.ndarray]) -> list[SegmentationResult]:
        out = []
        for crop in crops:
            self.calls += 1
            labels = crop[:, :, 0].astype(np.int64) | (crop[:, :, 1].astype(np.int64) << 8)
            h, w = labels.shape
            scale = self.imgsz / max(h, w)
            lh, lw = max(1, round(h * scale)), max(1, round(w * scale))
            low = labels[np.ix_(((np.arange(lh) + 0.5) * h / lh).astype(int), ((np.arange(lw) + 0.5) * w / lw).astype(int))]
            ids, counts = np.unique(low[low > 0], return_counts=True)
            ids = ids[counts >= self.min_pixels]
            back = low[np.ix_(((np.arange(h) + 0.5) * lh / h).astype(int), ((np.arange(w) + 0.5) * lw / w).astype(int))]
            masks = np.stack([back == i for i in ids]) if ids.size else np.zeros((0, h, w), dtype=bool)
            scores = np.linspace(0.9, 0.5, len(ids), dtype=np.float32)
            out.append(SegmentationResult(masks=masks, boxes=mask_to_box(masks), scores=scores, image_size=(h, w)))
        return out


def scene(size: int, seed: int, shapes: list[np.ndarray] | None = None) -> np.ndarray:
    """A label map: one big object across the middle (it spans tile edges) and small objects around it (real
    object outlines when ``shapes`` are given, else discs), none touching another."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.int64)
    yy, xx = np.mgrid[:size, :size]
    labels[((yy - size / 2) / (size / 4)) ** 2 + ((xx - size / 2) / (size / 2.8)) ** 2 < 1] = 1
    for k in range(400):
        if labels.max() >= 61:
            break
        if shapes:
            shape = shapes[k % len(shapes)]
        else:
            r = int(rng.integers(4, 7))
            shape = np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) < r
        sh, sw = shape.shape
        y, x = int(rng.integers(2, size - sh - 2)), int(rng.integers(2, size - sw - 2))
        if labels[y - 2 : y + sh + 2, x - 2 : x + sw + 2].any():
            continue
        labels[y : y + sh, x : x + sw][shape] = labels.max() + 1
    return labels


def match(truth: RunMasks, masks: RunMasks) -> np.ndarray:
    """``(objects, masks)`` IoU, from the runs."""
    iou = np.zeros((len(truth), len(masks)))
    a, b = truth.bounds, masks.bounds
    for i, j in zip(*np.nonzero((a[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < a[:, None, 2])
                                & (a[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < a[:, None, 3]))):  # fmt: skip
        inter = runs_intersection_area(truth.runs[i], masks.runs[j])
        iou[i, j] = inter / (truth.areas()[i] + masks.areas()[j] - inter)
    return iou


def check_scene(labels: np.ndarray, imgsz: int) -> None:
    image = labels_to_image(labels)
    size = labels.shape[0]
    truth = RunMasks([window_toggles(labels == i, 0, 0, size) for i in range(1, labels.max() + 1)], labels.shape)
    whole = StandIn(imgsz)
    untiled = segment_tiled(image, whole, tiles=1, imgsz=imgsz)
    tiled_net = StandIn(imgsz)
    tiled = segment_tiled(image, tiled_net, tiles="auto", overlap=0.2, imgsz=imgsz)
    assert whole.calls == 1 and tiled_net.calls == 1 + len(tile_grid(labels.shape, tiles_for_detail(size, imgsz, 0.2), 0.2))
    assert tiled.mask_runs() is not None and tiled.image_size == labels.shape
    assert list(tiled.scores) == sorted(tiled.scores, reverse=True)
    untiled_runs = RunMasks.from_windows(untiled.mask_windows() or WindowedMasks(*tight_windows(untiled.masks), labels.shape))
    before, after = match(truth, untiled_runs), match(truth, tiled.mask_runs())
    recall_before, recall_after = (before.max(1) >= 0.5).mean(), (after.max(1) >= 0.5).mean()
    assert recall_before <= 0.7 and recall_after == 1.0  # many small objects are found only on tiles
    assert ((after >= 0.5).sum(1) == 1).all() and ((after >= 0.5).sum(0) == 1).all()  # one mask per object, no other
    # the big object, cut by several tile edges, is one mask, close to the untiled one and to the truth
    big = int(after[0].argmax())
    assert (after[0] > 0).sum() == 1 and after[0, big] >= 0.95
    untiled_big = untiled_runs.select([int(before[0].argmax())])
    assert match(tiled.mask_runs().select([big]), untiled_big)[0, 0] >= 0.95


def test_tiles_find_small_objects_and_join_the_big_one() -> None:
    check_scene(scene(1200, seed=0), imgsz=256)


def test_small_real_objects_pasted_in_a_big_scene(shared_dir) -> None:
    """Outlines of real objects (coco128-seg polygons, shrunk to 10-16 px) as the small objects."""
    from PIL import Image, ImageDraw

    shapes = []
    for label in sorted((shared_dir / "data" / "coco128-seg" / "labels").rglob("*.txt"))[:20]:
        for line in label.read_text().splitlines()[:3]:
            xy = np.array(line.split()[1:], dtype=np.float64).reshape(-1, 2)
            xy = (xy - xy.min(0)) / max(np.ptp(xy, 0).max(), 1e-6) * 14
            canvas = Image.new("1", (16, 16))
            ImageDraw.Draw(canvas).polygon([tuple(p) for p in xy.tolist()], fill=1)
            shape = np.asarray(canvas, dtype=bool)
            if shape.sum() >= 30:
                shapes.append(shape[shape.any(1)][:, shape.any(0)])
    assert len(shapes) >= 10
    check_scene(scene(1200, seed=1, shapes=shapes), imgsz=256)


def test_predict_with_tiles_on_a_real_photo(tiny_model, photo_path) -> None:
    """End to end with a (random) network: one result in the photo's frame, more masks than the whole-image pass,
    every mask inside the photo; tiles=1 is the untiled result itself."""
    [plain] = tiny_model.predict(photo_path, imgsz=160, conf=0.2, max_det=50)
    [one] = tiny_model.predict(photo_path, imgsz=160, conf=0.2, max_det=50, tiles=1)
    assert one.to_rle() == plain.to_rle()
    [tiled] = tiny_model.predict(photo_path, imgsz=160, conf=0.2, max_det=50, tiles=2, tile_overlap=0.25, batch_size=4)
    assert tiled.image_size == plain.image_size and len(tiled) > len(plain)
    assert tiled.masks.shape == (len(tiled), *plain.image_size) and tiled.masks.any((1, 2)).all()
    h, w = plain.image_size
    assert (tiled.boxes[:, 0] >= 0).all() and (tiled.boxes[:, 2] <= w).all() and (tiled.boxes[:, 3] <= h).all()
    with pytest.raises(ValueError, match="tiles must be"):
        tiny_model.predict(photo_path, imgsz=256, tiles=0)


def test_cli_tiles(tiny_weights, tiny_model, photo_path, tmp_path) -> None:
    """`--tiles` and `--tile-overlap` reach predict (the same masks as the Python call); bad values exit 2 at once."""
    import json

    from fastsam.cli.main import main

    common = ["segment", str(photo_path), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "128", "--conf", "0.2",
              "--max-det", "30", "--precision", "fp32", "--format", "json", "--quiet"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "tiled"), "--tiles", "2", "--tile-overlap", "0.3"]) == 0
    tiled = json.loads((tmp_path / "tiled" / "dog.json").read_text())
    [want] = tiny_model.predict(photo_path, imgsz=128, conf=0.2, max_det=30, tiles=2, tile_overlap=0.3, batch_size=1)
    assert [a["segmentation"] for a in tiled["annotations"]] == want.to_rle() and len(want) > 0
    for bad in (["--tiles", "0"], ["--tiles", "lots"], ["--tile-overlap", "0.95"]):
        assert main([*common, "--out", str(tmp_path / "bad"), *bad]) == 2
