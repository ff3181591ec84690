"""Prompt selection: the mask index, point/box semantics, validation, the predictor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastsam.io import load_image
from fastsam.ops.mask_index import MaskIndex
from fastsam.predictor import FastSAMPredictor, SegmentedImage
from fastsam.prompts.points import merge_official
from fastsam.results import SegmentationResult

H, W = 23, 70  # odd sizes: bit packing crosses 64-bit words


def _result(masks: np.ndarray, scores: np.ndarray | None = None) -> SegmentationResult:
    n = masks.shape[0]
    from fastsam.ops.rle import mask_to_box

    scores = np.linspace(0.9, 0.5, n).astype(np.float32) if scores is None else scores.astype(np.float32)
    return SegmentationResult(masks, mask_to_box(masks), scores, masks.shape[1:])


def _blobs(seed: int, n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, H, W), dtype=bool)
    for i in range(n):
        x1, y1 = rng.integers(0, W - 2), rng.integers(0, H - 2)
        masks[i, y1 : rng.integers(y1 + 1, H + 1), x1 : rng.integers(x1 + 1, W + 1)] = True
        masks[i] &= rng.random((H, W)) > 0.2 * (i % 3)
    return masks


mask_stacks = arrays(bool, st.tuples(st.integers(0, 6), st.just(H), st.just(W)))
points_st = st.lists(st.tuples(st.integers(0, W - 1), st.integers(0, H - 1)), min_size=1, max_size=5)
boxes_st = st.lists(
    st.tuples(st.integers(0, W - 1), st.integers(0, H - 1), st.integers(1, W), st.integers(1, H)).map(
        lambda b: (min(b[0], b[2] - 1), min(b[1], b[3] - 1), b[2], b[3])
    ),
    min_size=1,
    max_size=4,
)


@given(masks=mask_stacks, points=points_st, boxes=boxes_st)
@settings(max_examples=60, deadline=None)
def test_mask_index_matches_brute_force(masks, points, boxes) -> None:
    index = MaskIndex(masks)
    pts = np.array(points)
    assert np.array_equal(index.contains(pts), masks[:, pts[:, 1], pts[:, 0]].T)
    counts = index.box_counts(np.array(boxes))
    for b, (x1, y1, x2, y2) in enumerate(boxes):
        assert np.array_equal(counts[b], masks[:, y1:y2, x1:x2].sum((1, 2)))
    assert np.array_equal(index.areas, masks.sum((1, 2)))


@given(seed=st.integers(0, 10_000), points=points_st, labels=st.lists(st.integers(0, 1), min_size=5, max_size=5))
@settings(max_examples=60, deadline=None)
def test_point_invariants(seed, points, labels) -> None:
    masks = _blobs(seed)
    labels = labels[: len(points)]
    session = SegmentedImage(_result(masks))
    out = session.points(points, labels)
    foreground = [p for p, lab in zip(points, labels) if lab == 1]
    background = [p for p, lab in zip(points, labels) if lab == 0]
    assert len(out) == len(foreground)  # one answer per foreground point
    for (x, y), mask, idx in zip(foreground, out.masks, out.indices):
        if idx < 0:
            assert not mask.any()
            assert not any(m[y, x] and not any(m[by, bx] for bx, by in background) for m in masks)
            continue
        assert mask[y, x]  # contains its point
        assert not any(mask[by, bx] for bx, by in background)  # and no background point
        # and no eligible mask scores higher
        eligible = [i for i, m in enumerate(masks) if m[y, x] and not any(m[by, bx] for bx, by in background)]
        assert session.result.scores[idx] == max(session.result.scores[eligible])
    # independent of mask order
    perm = np.random.default_rng(seed).permutation(len(masks))
    shuffled = SegmentedImage(_result(masks[perm], session.result.scores[perm]))
    assert np.array_equal(shuffled.points(points, labels).masks, out.masks)


@given(seed=st.integers(0, 10_000), point=st.tuples(st.integers(0, W - 1), st.integers(0, H - 1)))
@settings(max_examples=40, deadline=None)
def test_multimask_is_part_to_whole(seed, point) -> None:
    session = SegmentedImage(_result(_blobs(seed)))
    out = session.points([point], multimask=True)
    if out.indices[0] < 0:
        return
    areas = out.masks.sum((1, 2))
    assert 1 <= len(out) <= 3 and np.all(np.diff(areas) >= 0)
    assert all(m[point[1], point[0]] for m in out.masks)
    containing = [m.sum() for m in session.result.masks if m[point[1], point[0]]]
    assert areas[0] == min(containing) and areas[-1] == max(containing)


@given(seed=st.integers(0, 10_000), boxes=boxes_st)
@settings(max_examples=60, deadline=None)
def test_box_selection(seed, boxes) -> None:
    masks = _blobs(seed)
    session = SegmentedImage(_result(masks))
    out = session.boxes(boxes)
    assert len(out) == len(boxes)  # one result per box
    for (x1, y1, x2, y2), idx in zip(boxes, out.indices):
        inter = masks[:, y1:y2, x1:x2].sum((1, 2))
        iou = inter / ((x2 - x1) * (y2 - y1) + masks.sum((1, 2)) - inter)
        if idx < 0:
            assert iou.max() == 0
        else:
            assert iou[idx] == iou.max() and idx == int(np.argmax(iou))
    perm = np.random.default_rng(seed).permutation(len(masks))
    shuffled = SegmentedImage(_result(masks[perm])).boxes(boxes)
    ious = lambda res: [  # noqa: E731
        (m[y1:y2, x1:x2].sum() / ((x2 - x1) * (y2 - y1) + m.sum() - m[y1:y2, x1:x2].sum())) if m.any() else 0
        for m, (x1, y1, x2, y2) in zip(res.masks, boxes)
    ]
    assert np.allclose(ious(shuffled), ious(out))


def _official_reference(masks: np.ndarray, points, labels) -> np.ndarray:
    """The documented official semantics, written the slow obvious way."""
    canvas = np.zeros(masks.shape[1:], dtype=float)
    order = sorted(range(len(masks)), key=lambda i: -masks[i].sum())
    for i in order:
        for (x, y), lab in zip(points, labels):
            if masks[i][y, x] and lab == 1:
                canvas[masks[i]] = 1
            if masks[i][y, x] and lab == 0:
                canvas[masks[i]] = 0
    return canvas >= 1


@given(seed=st.integers(0, 10_000), points=points_st, labels=st.lists(st.integers(0, 1), min_size=5, max_size=5))
@settings(max_examples=60, deadline=None)
def test_official_mode(seed, points, labels) -> None:
    masks = _blobs(seed)
    labels = labels[: len(points)]
    # distinct areas: the documented order is then unambiguous
    areas = masks.sum((1, 2))
    if len(set(areas.tolist())) < len(areas):
        return
    out = SegmentedImage(_result(masks)).points(points, labels, mode="official")
    assert len(out) == 1
    assert np.array_equal(out.masks[0], _official_reference(masks, points, labels))


def test_ultralytics_mode_on_constructed_masks() -> None:
    masks = np.zeros((3, H, W), dtype=bool)
    masks[0, :, :] = True  # background-ish whole image
    masks[1, 2:10, 2:10] = True
    masks[2, 5:20, 30:60] = True
    session = SegmentedImage(_result(masks))
    assert session.points([[3, 3]], [1], mode="ultralytics").indices.tolist() == [0, 1]
    assert session.points([[3, 3], [40, 10]], [1, 0], mode="ultralytics").indices.tolist() == [1]
    # all background: everything not containing a background point
    assert session.points([[40, 10]], [0], mode="ultralytics").indices.tolist() == [1]


def test_validation_errors_name_the_prompt() -> None:
    session = SegmentedImage(_result(_blobs(0)))
    with pytest.raises(ValueError, match="point 1 .* outside"):
        session.points([[1, 1], [W + 5, 1]])
    with pytest.raises(ValueError, match="point 0 .* not a finite"):
        session.points([[np.nan, 1]])
    with pytest.raises(ValueError, match="label"):
        session.points([[1, 1]], [2])
    with pytest.raises(ValueError, match="2 point.*1 label"):
        session.points([[1, 1], [2, 2]], [1])
    with pytest.raises(ValueError, match="box 0 .* inverted"):
        session.boxes([[10, 10, 5, 20]])
    with pytest.raises(ValueError, match="box 1 .* outside"):
        session.boxes([[1, 1, 5, 5], [W + 1, 0, W + 9, 5]])
    with pytest.raises(ValueError, match="not a finite"):
        session.boxes([[0, 0, np.inf, 5]])
    with pytest.raises(ValueError, match="unknown point mode"):
        session.points([[1, 1]], mode="merge")
    assert len(session.points([])) == 0 and len(session.boxes([])) == 0
    # a box partly outside the image is clipped, not refused; a point on the far edge is the last pixel
    assert len(session.boxes([[-10, -10, W + 10, H + 10]])) == 1
    assert len(session.points([[W, H]])) == 1


def test_point_in_no_mask_gives_empty_mask() -> None:
    masks = np.zeros((1, H, W), dtype=bool)
    masks[0, :5, :5] = True
    out = SegmentedImage(_result(masks)).points([[60, 20], [1, 1]])
    assert out.indices.tolist() == [-1, 0] and not out.masks[0].any() and out.masks[1].any()


def test_combined_prompt_concatenates() -> None:
    session = SegmentedImage(_result(_blobs(3)))
    out = session.prompt(points=[[5, 5], [30, 10]], labels=[1, 1], boxes=[[0, 0, 20, 20]])
    assert len(out) == 3 and out.prompt_ids.tolist() == [0, 1, 2]
    assert len(session.prompt()) == len(session.result)


def test_predictor_runs_the_network_once(tiny_model, photo_path) -> None:
    calls = []
    original = tiny_model.infer
    tiny_model.infer = lambda batch: calls.append(1) or original(batch)
    try:
        predictor = FastSAMPredictor(tiny_model, imgsz=256)
        predictor.set_image(photo_path)
        result = predictor.everything()
        assert len(result) > 0
        y, x = np.argwhere(result.masks[0])[0]
        for _ in range(5):
            out = predictor.points([[x, y]])
            assert out.masks[0][y, x]
            predictor.boxes([[10, 10, 300, 300]])
            predictor.points([[x, y]], multimask=True)
        assert len(calls) == 1
    finally:
        tiny_model.infer = original


def test_predictor_with_several_images_needs_to_be_told_which(tiny_model, photo_path) -> None:
    photo = load_image(photo_path)
    crop = np.ascontiguousarray(photo[100:400, 200:600])  # another size: answers cannot be mixed up
    predictor = FastSAMPredictor(tiny_model, imgsz=256)
    sessions = predictor.set_images([photo, crop])
    assert len(sessions) == 2 and predictor.current is None
    for prompt in (lambda: predictor.points([[50, 50]]), lambda: predictor.boxes([[0, 0, 100, 100]]),
                   lambda: predictor.everything(), lambda: predictor.prompt(points=[[50, 50]]),
                   lambda: predictor.text("a dog")):  # fmt: skip
        with pytest.raises(ValueError, match=r"holds 2 images .*image=0\.\.1"):
            prompt()
    for i, session in enumerate(sessions):
        out = predictor.points([[50, 50]], image=i)
        assert out.image_size == session.image_size
        np.testing.assert_array_equal(out.masks, session.points([[50, 50]]).masks)
        np.testing.assert_array_equal(predictor.boxes([[0, 0, 100, 100]], image=i).indices,
                                      session.boxes([[0, 0, 100, 100]]).indices)  # fmt: skip
        assert len(predictor.everything(image=i)) == len(session)
        assert predictor.prompt(image=i, boxes=[[0, 0, 100, 100]]).image_size == session.image_size
    assert predictor.points([[50, 50]], image=-1).image_size == (300, 400)
    for bad in (2, -3, 1.0, True, "1"):
        with pytest.raises(ValueError, match=r"image=.* use 0\.\.1"):
            predictor.points([[50, 50]], image=bad)
    # one image again: no need to say which
    predictor.set_image(crop)
    assert predictor.current is not None and predictor.points([[50, 50]]).image_size == (300, 400)
    assert predictor.points([[50, 50]], image=0).image_size == (300, 400)


def test_predictor_before_any_image(tiny_model) -> None:
    predictor = FastSAMPredictor(tiny_model)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.points([[1, 1]])
