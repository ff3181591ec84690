"""SegmentationResult.to_supervision(): supervision's Detections, its annotators and its tracker."""

from __future__ import annotations

import sys

import numpy as np
import pytest

sv = pytest.importorskip("supervision")

from fastsam.predictor import FastSAMPredictor
from fastsam.results import SegmentationResult


@pytest.fixture(scope="module")
def segmented(tiny_model, photo_path):
    return FastSAMPredictor(tiny_model, imgsz=256, max_det=20).set_image(photo_path)


def test_detections_hold_the_result(segmented) -> None:
    result = segmented.everything()
    det = result.to_supervision()
    assert isinstance(det, sv.Detections) and len(det) == len(result) > 0
    np.testing.assert_array_equal(det.xyxy, result.boxes)
    np.testing.assert_array_equal(det.mask, result.masks)
    np.testing.assert_array_equal(det.confidence, result.scores)
    assert det.mask.dtype == bool and det.class_id.tolist() == [0] * len(result)
    assert list(det.data["class_name"]) == ["object"] * len(result)
    np.testing.assert_array_equal(det.area, result.masks.reshape(len(result), -1).sum(1))  # supervision's mask area
    # supervision's own filtering keeps masks and boxes together
    strong = det[det.confidence > np.median(det.confidence)]
    np.testing.assert_array_equal(strong.mask, result.masks[result.scores > np.median(result.scores)])


def test_annotators_paint_the_masks(segmented) -> None:
    from PIL import Image

    result = segmented.everything().select([0])
    det = result.to_supervision()
    mask = result.masks[0]
    red = sv.Color(255, 0, 0)
    # a PIL image (RGB): supervision paints the colour as given
    painted = np.asarray(sv.MaskAnnotator(color=red, opacity=1.0).annotate(Image.fromarray(result.image), det))
    np.testing.assert_array_equal(painted[~mask], result.image[~mask])  # nothing outside the mask changes
    assert (painted[mask] == [255, 0, 0]).all()
    # a numpy image is BGR to supervision (OpenCV's order): flip ours first
    bgr = sv.MaskAnnotator(color=red, opacity=1.0).annotate(np.ascontiguousarray(result.image[..., ::-1]), det)
    assert (bgr[..., ::-1][mask] == [255, 0, 0]).all()
    image = np.ascontiguousarray(result.image[..., ::-1])
    assert (sv.BoxAnnotator().annotate(image.copy(), det) != image).any()
    labelled = sv.LabelAnnotator().annotate(image.copy(), det, labels=list(det.data["class_name"]))
    assert (labelled != image).any()


def test_supervision_utilities_use_the_masks(segmented) -> None:
    det = segmented.everything().to_supervision(class_id=np.arange(len(segmented)) % 3)
    assert det.class_id.tolist() == (np.arange(len(det)) % 3).tolist()
    doubled = sv.Detections.merge([det, det])
    assert len(doubled) == 2 * len(det)
    kept = doubled.with_nms(threshold=0.99, class_agnostic=False)  # mask NMS drops each exact duplicate
    assert len(kept) == len(det)
    assert sorted(map(tuple, kept.xyxy.tolist())) == sorted(map(tuple, det.xyxy.tolist()))


def test_prompt_results_and_empty(segmented) -> None:
    h, w = segmented.image_size
    answer = segmented.points([[w / 2, h / 2], [1, 1]])
    det = answer.to_supervision()
    assert det.data["prompt_id"].tolist() == answer.prompt_ids.tolist()
    assert det.data["mask_index"].tolist() == answer.indices.tolist()
    empty = SegmentationResult.empty((h, w)).to_supervision()
    assert len(empty) == 0 and empty.mask.shape == (0, h, w)
    with pytest.raises(ValueError, match="one integer per mask"):
        segmented.everything().to_supervision(class_id=[1, 2])


def test_missing_supervision_says_how_to_install(segmented, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "supervision", None)
    with pytest.raises(ImportError, match=r"pip install 'fastsam\[supervision\]'"):
        segmented.everything().to_supervision()
