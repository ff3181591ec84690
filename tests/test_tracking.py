"""The tracker as a pure component: grid mask IoU, the Kalman filter, association (crossing, loss and recovery,
low-score stage, confirmation, dropped frames), and the MOTS / YouTube-VIS / DAVIS outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from fastsam.masks import WindowedMasks
from fastsam.ops.rle import mask_to_box, tight_windows
from fastsam.results import SegmentationResult
from fastsam.video.davis import DavisWriter, id_map
from fastsam.video.kalman import BoxKalman, cxcywh_to_xyxy
from fastsam.video.mask_grid import GridMasks, grid_iou
from fastsam.video.mots import MotsWriter
from fastsam.video.tracking import LOST, TRACKED, MaskTracker, TrackerConfig
from fastsam.video.ytvis import YtvisWriter

H, W = 120, 160


def disc(cx: float, cy: float, r: float, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 < r * r


def rect(x1: int, y1: int, x2: int, y2: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def frame_of(masks: list[np.ndarray], scores: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stack = np.array(masks, bool).reshape(-1, H, W)
    return mask_to_box(stack).astype(np.float64), np.array(scores, np.float64), stack


def exact_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# --- grid masks -------------------------------------------------------------------------------------------------


def test_grid_iou_is_close_to_the_exact_mask_iou_and_zero_for_disjoint_masks():
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(40):
        x, y = rng.integers(0, W - 40), rng.integers(0, H - 40)
        masks.append(rect(x, y, x + rng.integers(12, 40), y + rng.integers(12, 40)) if rng.random() < 0.5
                     else disc(x + 20, y + 20, rng.uniform(6, 20)))  # fmt: skip
    stack = np.array(masks)
    grid = GridMasks.from_masks(stack, (H, W), stride=2)
    iou = grid_iou(grid, grid)
    exact = np.array([[exact_iou(a, b) for b in stack] for a in stack])
    assert np.abs(iou - exact).max() < 0.12
    assert np.all(iou[exact == 0] == 0)
    assert np.allclose(np.diag(iou), 1.0)


def test_windows_and_arrays_sample_the_same_cells():
    stack = np.array([disc(50, 40, 17), rect(100, 10, 150, 100), disc(5, 5, 0.8)])  # the last: smaller than a cell
    windows, bounds = tight_windows(stack)
    from_windows = GridMasks.from_windows(windows, bounds, (H, W), 4)
    from_array = GridMasks.from_masks(stack, (H, W), 4)
    assert [p.tolist() for p in from_windows.parts()] == [p.tolist() for p in from_array.parts()]
    assert from_windows.counts[2] == 1  # a mask no sample point hits still gets a cell


def test_thinned_and_shifted_masks_estimate_iou_of_moved_masks():
    big, moved = rect(10, 10, 130, 100), rect(16, 14, 136, 104)
    grid = GridMasks.from_masks(np.array([big]), (H, W), 2)
    thin = grid.thinned(256)
    assert thin.counts[0] < grid.counts[0] / 4 and thin.areas[0] == grid.areas[0]
    target = GridMasks.from_masks(np.array([moved]), (H, W), 2)
    shifted = thin.shifted(np.array([3]), np.array([2]))  # 6 and 4 pixels, in cells of 2
    assert grid_iou(shifted, target)[0, 0] == pytest.approx(1.0, abs=0.05)
    assert grid_iou(thin, target)[0, 0] == pytest.approx(exact_iou(big, moved), abs=0.06)
    off = thin.shifted(np.array([200]), np.array([0]))  # pushed out of the grid entirely
    assert off.counts[0] == 0 and grid_iou(off, target)[0, 0] == 0


# --- Kalman filter --------------------------------------------------------------------------------------------------


def test_kalman_learns_a_constant_velocity_and_predicts_across_a_gap():
    kf = BoxKalman()
    box = lambda t: np.array([[20 + 4 * t, 30 - 2 * t, 60 + 4 * t, 50 - 2 * t]], float)
    mean, cov = kf.initiate(box(0))
    for t in range(1, 25):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, box(t))
    assert mean[0, 4:6] == pytest.approx([4, -2], abs=0.2)
    ahead, _ = kf.predict(mean, cov, steps=5)
    assert cxcywh_to_xyxy(ahead[:, :4])[0] == pytest.approx(box(29)[0], abs=1.5)


# --- association ----------------------------------------------------------------------------------------------------


def test_two_discs_crossing_keep_their_ids():
    tracker = MaskTracker((H, W), TrackerConfig(min_hits=1))
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for t in range(30):
        a, b = disc(20 + 4 * t, 60, 12), disc(140 - 4 * t, 64, 12)
        b &= ~a  # a passes in front of b
        boxes, scores, stack = frame_of([a, b], [0.9, 0.9 if b.sum() > 200 else 0.3])
        update = tracker.update(boxes, scores, stack)
        for k in range(2):
            if update.confirmed[k]:
                seen[k].add(int(update.track_ids[k]))
    assert len(seen[0]) == 1 and len(seen[1]) == 1 and seen[0] != seen[1]


def test_a_missed_object_is_lost_then_recovered_with_its_id_and_dropped_after_the_buffer():
    tracker = MaskTracker((H, W), TrackerConfig(min_hits=1, track_buffer=5))
    ids = []
    for t in range(20):
        visible = t < 5 or 8 <= t < 10  # missed on frames 5-7, then gone from frame 10
        masks = [disc(30 + 3 * t, 60, 14)] if visible else []
        update = tracker.update(*frame_of(masks, [0.9] * len(masks)))
        ids.append(int(update.track_ids[0]) if visible else None)
        if 5 <= t < 8:
            assert tracker.state(ids[0]) == LOST and ids[0] in update.lost_ids.tolist()
            predicted = update.lost_boxes[update.lost_ids.tolist().index(ids[0])]
            assert abs((predicted[0] + predicted[2]) / 2 - (30 + 3 * t)) < 3  # kept moving while unseen
    assert set(ids[:10]) - {None} == {ids[0]}  # recovered with the same id
    assert tracker.state(ids[0]) is None  # 10 frames unseen > buffer of 5: dropped
    update = tracker.update(*frame_of([disc(30, 60, 14)], [0.9]))
    assert int(update.track_ids[0]) != ids[0]


def test_low_scores_continue_tracks_but_never_start_them_and_one_frame_blobs_are_never_confirmed():
    tracker = MaskTracker((H, W), TrackerConfig(high_score=0.5, low_score=0.1, min_hits=2))
    first = tracker.update(*frame_of([disc(40, 60, 15)], [0.9]))
    assert first.confirmed[0]  # the first frame confirms at once
    weak = tracker.update(*frame_of([disc(42, 60, 15), disc(120, 30, 10)], [0.3, 0.3]))
    assert weak.track_ids[0] == first.track_ids[0] and weak.confirmed[0]
    assert weak.track_ids[1] == -1  # a low score alone starts nothing
    blob = tracker.update(*frame_of([disc(44, 60, 15), disc(120, 100, 8)], [0.9, 0.9]))
    assert blob.track_ids[1] > 0 and not blob.confirmed[1]  # tentative
    gone = tracker.update(*frame_of([disc(46, 60, 15)], [0.9]))
    assert gone.confirmed.tolist() == [True] and tracker.state(int(blob.track_ids[1])) is None


def test_dropped_frames_move_tracks_by_the_gap():
    tracker = MaskTracker((H, W), TrackerConfig(min_hits=1))
    for t in range(6):
        update = tracker.update(*frame_of([rect(10 + 6 * t, 40, 34 + 6 * t, 64)], [0.9]), frame=t)
    track_id = int(update.track_ids[0])
    # frames 6-9 were dropped by a live source: the object moved 30 pixels, more than its width
    after = tracker.update(*frame_of([rect(10 + 6 * 10, 40, 34 + 6 * 10, 64)], [0.9]), frame=10)
    assert int(after.track_ids[0]) == track_id
    with pytest.raises(ValueError, match="does not come after"):
        tracker.update(*frame_of([], []), frame=10)


def test_adopted_masks_are_confirmed_and_pinned_tracks_are_never_dropped():
    tracker = MaskTracker((H, W), TrackerConfig(high_score=0.5, low_score=0.1, track_buffer=2))
    tracker.update(*frame_of([disc(40, 60, 15), disc(120, 60, 12)], [0.9, 0.3]))
    pinned = tracker.adopt(1)  # the low-score mask has no track: it gets one
    assert tracker.state(pinned) == TRACKED
    for _ in range(6):
        tracker.update(*frame_of([disc(40, 60, 15)], [0.9]))
    assert tracker.state(pinned) == LOST  # unseen for 6 frames > buffer 2, still kept
    back = tracker.update(*frame_of([disc(40, 60, 15), disc(120, 60, 12)], [0.9, 0.6]))
    assert int(back.track_ids[1]) == pinned and tracker.state(pinned) == TRACKED


def test_windows_tensors_and_bad_inputs():
    import torch

    masks = np.array([disc(40, 60, 15), rect(90, 20, 130, 70)])
    boxes = mask_to_box(masks)
    windows, bounds = tight_windows(masks)
    for held in (WindowedMasks(windows, bounds, (H, W)), torch.from_numpy(masks)):
        tracker = MaskTracker((H, W))
        tracker.update(boxes, [0.9, 0.8], masks)
        again = tracker.update(boxes, [0.9, 0.8], held)
        assert again.track_ids.tolist() == [1, 2]
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        MaskTracker((H, W)).update(boxes, [0.9], masks)
    with pytest.raises(ValueError, match="low"):
        TrackerConfig(high_score=0.3, low_score=0.5)


# --- outputs --------------------------------------------------------------------------------------------------------


def result_of(masks: list[np.ndarray], scores: list[float]) -> SegmentationResult:
    stack = np.array(masks, bool)
    return SegmentationResult(stack, mask_to_box(stack), np.array(scores, np.float32), (H, W))


def test_mots_lines_are_disjoint_with_the_higher_score_keeping_shared_pixels(tmp_path: Path):
    whole, part = rect(10, 10, 70, 70), rect(30, 30, 50, 50)
    low = result_of([part, whole], [0.4, 0.9])  # the whole scores higher: it keeps the part's pixels
    with MotsWriter(tmp_path / "a.txt") as writer:
        writer.write(0, np.array([7, 3]), low)
        writer.write(4, np.array([3]), result_of([whole], [0.9]))
    lines = [line.split(" ") for line in (tmp_path / "a.txt").read_text().splitlines()]
    assert [line[:5] for line in lines] == [["1", "3", "2", str(H), str(W)], ["5", "3", "2", str(H), str(W)]]
    decoded = mask_utils.decode({"size": [H, W], "counts": lines[0][5].encode()}).astype(bool)
    assert np.array_equal(decoded, whole)  # the part lost every pixel to the whole: not written
    high = result_of([part, whole], [0.9, 0.4])
    with MotsWriter(tmp_path / "b.txt") as writer:
        writer.write(0, np.array([7, 3]), high)
    got = {int(line.split()[1]): mask_utils.decode({"size": [H, W], "counts": line.split()[5].encode()}).astype(bool)
           for line in (tmp_path / "b.txt").read_text().splitlines()}  # fmt: skip
    assert np.array_equal(got[7], part) and np.array_equal(got[3], whole & ~part)


def test_ytvis_json_holds_one_annotation_per_track_with_null_for_absent_frames(tmp_path: Path):
    a, b = disc(40, 60, 15), rect(90, 20, 130, 70)
    with YtvisWriter(tmp_path / "v.json", "clip", (H, W)) as writer:
        writer.write(0, np.array([1, 2]), result_of([a, b], [0.8, 0.6]))
        writer.write(1, np.array([2]), result_of([b], [0.4]))
        writer.write(2, np.array([], np.int64), SegmentationResult.empty((H, W)))
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["videos"][0]["length"] == 3 and data["videos"][0]["width"] == W
    by_track = {ann["track_id"]: ann for ann in data["annotations"]}
    assert by_track[1]["segmentations"][1:] == [None, None]
    assert by_track[2]["areas"][:2] == [int(b.sum())] * 2 and by_track[2]["score"] == pytest.approx(0.5)
    assert np.array_equal(mask_utils.decode(by_track[1]["segmentations"][0]).astype(bool), a)


def test_davis_pngs_hold_object_ids_in_the_davis_palette(tmp_path: Path):
    a, b = rect(10, 10, 80, 80), rect(30, 30, 50, 50)
    DavisWriter(tmp_path / "seq").write(3, np.array([1, 2]), result_of([a, b], [0.9, 0.9]))
    image = Image.open(tmp_path / "seq" / "00003.png")
    assert image.mode == "P"
    labels = np.asarray(image)
    assert np.array_equal(labels == 2, b) and np.array_equal(labels == 1, a & ~b)  # the smaller one on top
    palette = image.getpalette()[:12]
    assert palette == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]  # DAVIS: black, red, green, olive
    with pytest.raises(ValueError, match="1-255"):
        id_map(np.array([300]), result_of([a], [0.9]))
