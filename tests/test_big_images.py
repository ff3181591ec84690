"""Masks as column-major runs (issue 18, part 1): the same masks as the windowed path and the dense path, bit for
bit, made without laying out a mask, and answered from the runs (RLE, areas, points, boxes)."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsam.jit import Kernel
from fastsam.masks import RunMasks, WindowedMasks
from fastsam.ops.boxes import scale_boxes_to_original
from fastsam.ops.mask_index import MaskIndex, RunIndex
from fastsam.ops.rle import (
    mask_area,
    mask_to_box,
    mask_to_rle,
    move_runs,
    runs_in_box,
    runs_intersection_area,
    runs_union,
    toggles_to_window,
    window_toggles,
)
from fastsam.ops import column_runs, rle
from fastsam.ops.sign_resize import linear_taps, positive_transitions, upsample_positive
from fastsam.postprocess import (
    masks_as_runs,
    masks_full_resolution,
    masks_in_windows,
    select_detections,
)
from fastsam.transforms import RESIZE_KERNEL, letterbox_geometry


def column_changes(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(x, y)`` where ``mask[y, x] != mask[y - 1, x]`` (rows -1 and H counted False), sorted."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1]), dtype=bool)
    padded[1:-1] = mask
    ys, xs = np.nonzero(padded[1:] != padded[:-1])
    return sorted(zip(xs.tolist(), ys.tolist()))


@st.composite
def sources(draw) -> np.ndarray:
    """float32 logit grids: smooth, coarsely quantised (exact zeros, crossings exactly on pixel weights) or tiny
    (values that underflow in the interpolation)."""
    h, w = draw(st.integers(2, 24)), draw(st.integers(2, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["smooth", "quantised", "tiny"]))
    if kind == "smooth":
        coarse = torch.from_numpy(rng.standard_normal((1, 1, 4, 4)).astype(np.float32))
        src = F.interpolate(coarse, size=(h, w), mode="bilinear")[0, 0].numpy() + 0.3 * rng.standard_normal((h, w))
    elif kind == "quantised":
        src = np.round(rng.standard_normal((h, w)) * 1.5) / 2
    else:
        src = rng.standard_normal((h, w)) * rng.choice([1e-38, 1e-31, 1e-20, 1.0], (h, w))
        src[rng.random((h, w)) < 0.2] = 0
    return src.astype(np.float32)


@given(src=sources(), out=st.tuples(st.integers(1, 150), st.integers(1, 150)), data=st.data())
@settings(max_examples=300, deadline=None)
def test_transitions_are_those_of_the_sign_lookup(src: np.ndarray, out: tuple[int, int], data: st.DataObject) -> None:
    """Up- and downsampling, any window of the output: the changes found from the sign grid and the crossings are
    exactly those of upsample_positive's mask (today's CPU path)."""
    (h, w), (sh, sw) = out, src.shape
    y0, y1 = sorted(data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2, unique=True)))
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2, unique=True)))
    rows, cols = linear_taps(y0, y1, sh / h, sh), linear_taps(x0, x1, sw / w, sw)
    x, y = positive_transitions(src, rows, cols)
    assert sorted(zip(x.tolist(), y.tolist())) == column_changes(upsample_positive(src, rows, cols))


@pytest.mark.skipif(not column_runs.KERNEL.available, reason="numba is not installed")
@given(src=sources(), out=st.tuples(st.integers(1, 150), st.integers(1, 150)), height=st.integers(0, 40), data=st.data())
@settings(max_examples=300, deadline=None)
def test_compiled_runs_are_those_of_the_sign_lookup(
    src: np.ndarray, out: tuple[int, int], height: int, data: st.DataObject
) -> None:
    """The compiled kernel (the default CPU path) gives the run boundaries of upsample_positive's mask placed in a
    taller image (a window that spans the image's height joins runs across columns), in canonical order."""
    (h, w), (sh, sw) = out, src.shape
    y0, y1 = sorted(data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2, unique=True)))
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2, unique=True)))
    rows, cols = linear_taps(y0, y1, sh / h, sh), linear_taps(x0, x1, sw / w, sw)
    top = data.draw(st.integers(0, height))  # the window's rows y0 .. y1 - 1 at rows top .. of the image
    image = np.zeros((top + (y1 - y0) + (height - top), x1), dtype=bool)
    image[top : top + y1 - y0, x0:x1] = upsample_positive(src, rows, cols)
    flat = np.concatenate(([False], image.T.reshape(-1), [False]))
    expected = np.flatnonzero(flat[1:] != flat[:-1])
    got = column_runs.column_toggles(src, rows, cols, (x0, top), image.shape[0])
    assert got.dtype == np.int64 and np.array_equal(got, expected)


def random_masks(orig_hw: tuple[int, int], imgsz: int, n: int, seed: int, spread: float = 0.5):
    """Prototypes, coefficients and boxes like a network's (smooth logits, boxes anywhere, some past the edges)."""
    g = letterbox_geometry(orig_hw, imgsz)
    gen = torch.Generator().manual_seed(seed)
    mh, mw = g.input_hw[0] // 4, g.input_hw[1] // 4
    coarse = torch.randn(1, 32, mh // 8 + 1, mw // 8 + 1, generator=gen)
    protos = F.interpolate(coarse, size=(mh, mw), mode="bilinear")[0] + 0.2 * torch.randn(32, mh, mw, generator=gen)
    coefficients = torch.randn(n, 32, generator=gen)
    h, w = orig_hw
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * spread
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
    return protos, coefficients, boxes, g


@pytest.mark.parametrize(
    "orig_hw,imgsz",
    [((534, 800), 640), ((534, 800), 1024), ((1080, 1920), 320), ((72, 1418), 640), ((3000, 2000), 256), ((7, 5), 64)],
)
def test_runs_equal_the_windowed_and_the_dense_masks(orig_hw: tuple[int, int], imgsz: int) -> None:
    """Bit for bit the windowed path's masks (today's, reference-exact), and the dense interpolation's up to the
    float rounding of logits within an ulp of 0 that the windowed path already allows."""
    protos, coefficients, boxes, g = random_masks(orig_hw, imgsz, 30, seed=imgsz + orig_hw[0])
    runs = masks_as_runs(protos, coefficients, boxes, g)
    windows = masks_in_windows(protos, coefficients, boxes, g)
    assert runs.to_rle() == windows.to_rle()
    assert np.array_equal(runs.areas(), windows.areas()) and np.array_equal(runs.any(), windows.any())
    dense = masks_full_resolution(protos, coefficients, boxes, g, dense=True).numpy()
    laid_out = runs.numpy()
    assert laid_out.shape == dense.shape and (laid_out != dense).sum() <= 2
    assert np.array_equal(runs.bounds, mask_to_box(laid_out).astype(np.int64))


def test_numpy_fallback_gives_the_compiled_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without numba the numpy form runs instead, with the same answer."""
    protos, coefficients, boxes, g = random_masks((1080, 1920), 640, 20, seed=7)
    compiled = masks_as_runs(protos, coefficients, boxes, g)
    monkeypatch.setattr(column_runs.KERNEL, "available", False)
    fallback = masks_as_runs(protos, coefficients, boxes, g)
    assert fallback.to_rle() == compiled.to_rle() and len(compiled) == 20


def test_an_unusable_numba_falls_back_with_one_note(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """Numba present but failing to load (e.g. built for another NumPy): one warning, then the numpy form."""
    protos, coefficients, boxes, g = random_masks((300, 400), 320, 20, seed=3)
    expected = masks_as_runs(protos, coefficients, boxes, g).to_rle()
    monkeypatch.setattr(column_runs, "KERNEL", Kernel(column_runs._column_toggles, column_runs.KERNEL.fallback))
    for other in (rle.STRING_KERNEL, rle.BOUNDS_KERNEL, RESIZE_KERNEL):  # not yet compiled, they fail too: restored after
        monkeypatch.setattr(other, "available", other.available)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    with caplog.at_level("WARNING", logger="fastsam"):
        assert masks_as_runs(protos, coefficients, boxes, g).to_rle() == expected
        assert masks_as_runs(protos, coefficients, boxes, g).to_rle() == expected
    assert column_runs.KERNEL.available is False
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "numpy form" in caplog.records[0].message


def test_runs_of_a_network_on_real_photos_equal_todays_masks(tiny_model, shared_images_dir) -> None:
    """The tiny random network on real photos (one scaled up, as a big photo is): the RLE strings of the
    runs are today's windowed path's, the dense path's up to ulp rounding, and predict() holds runs."""
    from PIL import Image

    truck = Image.open(shared_images_dir / "segment-anything" / "truck.jpg").convert("RGB")
    photos = [np.asarray(truck), np.asarray(truck.resize((3000, 2000), Image.BILINEAR))]  # 1800x1200, 3000x2000
    for photo in photos:
        [stage] = tiny_model.forward_arrays([photo], 512)
        g = stage.geometries[0]
        boxes_in, _, _, coefficients = select_detections(stage.preds[0], 1, 0.1, 0.9, 40)
        boxes = scale_boxes_to_original(boxes_in, g)
        assert len(boxes) == 40
        runs = masks_as_runs(stage.protos[0], coefficients, boxes, g)
        assert runs.to_rle() == masks_in_windows(stage.protos[0], coefficients, boxes, g).to_rle()
        if photo.shape[0] < 2000:
            dense = masks_full_resolution(stage.protos[0], coefficients, boxes, g, dense=True).numpy()
            assert (runs.numpy() != dense).sum() <= 4
    [result] = tiny_model.predict(photos[0], imgsz=512, conf=0.1, max_det=40)
    assert result.mask_runs() is not None and not result.masks_materialized
    assert result.to_rle() == mask_to_rle(result.masks)


def test_memory_follows_boundaries_not_areas() -> None:
    """A 6000 x 6000 image, 24 masks over big boxes: their windows would hold 200+ MB of bool; making the runs and
    the RLE allocates a small fraction of that (numpy allocations, traced), and the runs hold a few percent."""
    protos, coefficients, _, g = random_masks((6000, 6000), 1024, 24, seed=3)
    corner = torch.rand(24, 2, generator=torch.Generator().manual_seed(3)) * 2000
    boxes = torch.cat((corner, corner + 3000 + 1000 * torch.rand(24, 2, generator=torch.Generator().manual_seed(4))), 1)
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).numpy()
    assert areas.sum() > 2e8
    tracemalloc.start()
    try:
        runs = masks_as_runs(protos, coefficients, boxes, g)
        rles = runs.to_rle()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rles) == 24 and runs.areas().sum() > 1e8
    assert peak < 0.1 * areas.sum()  # bytes; today's path holds every window's bool pixels at once
    assert runs.nbytes < 0.05 * areas.sum()


@st.composite
def dense_stacks(draw) -> np.ndarray:
    """``(N, H, W)`` masks: random, empty, full, full-height columns (runs that span columns)."""
    h, w, n = draw(st.integers(1, 13)), draw(st.integers(1, 13)), draw(st.integers(0, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    masks = rng.random((n, h, w)) < rng.random((n, 1, 1))
    for k in range(n):
        choice = draw(st.sampled_from(["keep", "empty", "full", "columns", "box"]))
        if choice == "empty":
            masks[k] = False
        elif choice == "full":
            masks[k] = True
        elif choice == "columns":
            masks[k] = rng.random(w) < 0.6
        elif choice == "box":
            masks[k] = False
            masks[k, rng.integers(0, h) : rng.integers(0, h + 1), rng.integers(0, w) : rng.integers(0, w + 1)] = True
    return masks


def as_runs(dense: np.ndarray) -> RunMasks:
    return RunMasks([window_toggles(m, 0, 0, dense.shape[1]) for m in dense], dense.shape[1:])


@given(dense=dense_stacks(), data=st.data())
@settings(max_examples=200, deadline=None)
def test_run_masks_answer_as_the_array(dense: np.ndarray, data: st.DataObject) -> None:
    masks = as_runs(dense)
    assert masks.shape == dense.shape and len(masks) == len(dense)
    assert np.array_equal(masks.numpy(), dense)
    assert masks.to_rle() == mask_to_rle(dense)
    assert np.array_equal(masks.areas(), mask_area(dense))
    assert np.array_equal(masks.any(), dense.any(axis=(1, 2)))
    assert np.array_equal(masks.bounds, mask_to_box(dense).astype(np.int64))
    keep = data.draw(st.lists(st.integers(0, max(0, len(dense) - 1)), max_size=4)) if len(dense) else []
    assert np.array_equal(masks.select(keep).numpy(), dense[keep].reshape(-1, *dense.shape[1:]))
    windowed = masks.windowed()
    assert isinstance(windowed, WindowedMasks) and np.array_equal(windowed.numpy(), dense)
    assert windowed.to_rle() == mask_to_rle(dense) and np.array_equal(windowed.select(keep).numpy(), dense[keep].reshape(-1, *dense.shape[1:]))
    assert RunMasks.from_windows(windowed).to_rle() == mask_to_rle(dense)


@given(dense=dense_stacks(), data=st.data())
@settings(max_examples=200, deadline=None)
def test_run_index_answers_as_the_bit_packed_index(dense: np.ndarray, data: st.DataObject) -> None:
    n, h, w = dense.shape
    ours, ref = as_runs(dense).index(), MaskIndex(dense)
    assert isinstance(ours, RunIndex) and ours.shape == ref.shape and len(ours) == n
    assert np.array_equal(ours.areas, ref.areas) and np.array_equal(ours.bboxes, ref.bboxes)
    points = np.array(data.draw(st.lists(st.tuples(st.integers(0, w - 1), st.integers(0, h - 1)), min_size=1, max_size=6)))
    assert np.array_equal(ours.contains(points), ref.contains(points))
    corners = data.draw(st.lists(st.tuples(st.integers(0, w), st.integers(0, h), st.integers(0, w), st.integers(0, h)), min_size=1, max_size=4))
    boxes = np.array([[min(a, c), min(b, d), max(a, c), max(b, d)] for a, b, c, d in corners])
    assert np.array_equal(ours.box_counts(boxes), ref.box_counts(boxes))
    assert np.array_equal(ours.unpack(np.arange(n)), dense)
    assert RunIndex(ours.runs, (h, w)).bboxes.tolist() == ref.bboxes.tolist()


@given(dense=dense_stacks(), data=st.data())
@settings(max_examples=200, deadline=None)
def test_operations_on_runs_equal_those_on_arrays(dense: np.ndarray, data: st.DataObject) -> None:
    if len(dense) < 2:
        return
    h, w = dense.shape[1:]
    a, b = (window_toggles(m, 0, 0, h) for m in dense[:2])
    whole = (0, 0, w, h)
    assert runs_intersection_area(a, b) == int((dense[0] & dense[1]).sum())
    assert np.array_equal(toggles_to_window(runs_union([a, b]), whole, h), dense[0] | dense[1])
    x1, x2 = sorted(data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2)))
    y1, y2 = sorted(data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2)))
    inside = np.zeros((h, w), dtype=bool)
    inside[y1:y2, x1:x2] = True
    assert np.array_equal(toggles_to_window(runs_in_box(a, (x1, y1, x2, y2), h), whole, h), dense[0] & inside)
    dx, dy, grow = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4)), data.draw(st.integers(0, 3))
    big = np.zeros((h + dy + grow, w + dx + grow), dtype=bool)
    big[dy : dy + h, dx : dx + w] = dense[0]
    moved = move_runs(a, h, (dx, dy), big.shape[0])
    assert np.array_equal(toggles_to_window(moved, (0, 0, big.shape[1], big.shape[0]), big.shape[0]), big)


def test_run_masks_refuse_odd_runs() -> None:
    with pytest.raises(ValueError, match="even number"):
        RunMasks([np.array([3])], (4, 4))


def test_an_image_over_the_decoder_limit_is_refused_before_decoding(tmp_path, tiny_weights) -> None:
    """A PNG that declares 20000 x 10000 pixels (200 MP, over Pillow's 179 MP guard) in a 100-byte file: refused at
    open, one line naming the limit and how to raise it; `segment` logs it and exits 1."""
    import struct
    import zlib

    from fastsam.cli.main import main
    from fastsam.errors import ImageLoadError
    from fastsam.io import load_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    assert path.stat().st_size < 200
    with pytest.raises(ImageLoadError, match=r"too large to load safely.*exceeds limit of \d+ pixels.*MAX_IMAGE_PIXELS"):
        load_image(path)
    code = main(["segment", str(path), "--model", str(tiny_weights), "--device", "cpu", "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1 and "exceeds limit" in (tmp_path / "out" / "errors.jsonl").read_text()
