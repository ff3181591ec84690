"""fastsam.sam's mask generator: SAM's records, read by SAM's real consumers, and SAM's formulas checked against
segment-anything's own functions (PyPI ``segment-anything``, test-only; never imported by the package).

* the generator notebook's calls (``automatic_mask_generator_example.ipynb``, dog.jpg) run unchanged;
* ``uncompressed_rle`` decodes with ``segment_anything.utils.amg``, ``coco_rle`` with pycocotools, and
  ``supervision.Detections.from_sam`` rebuilds our masks;
* the stability score equals ``amg.calculate_stability_score`` on the same logits, small-region removal equals
  ``amg.remove_small_regions`` and the generator's ``postprocess_small_regions``, crop boxes, point grids and the
  crop-edge filter equal SAM's.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

amg = pytest.importorskip("segment_anything.utils.amg")

from fastsam.engine import FastSAM
from fastsam.io import load_image
from fastsam.ops.sam_records import sam_boxes_xyxy, tight_bounds
from fastsam.sam import (
    FastSAMCompatibilityWarning,
    SamAutomaticMaskGenerator,
    calculate_stability_score,
    remove_small_regions,
    sam_model_registry,
)
from fastsam.sam.automatic import FoundMasks
from fastsam.sam.crops import crop_boxes, layer_point_grids, near_crop_edge
from fastsam.sam.logits import full_logits, segment_with_logits
from fastsam.sam.regions import clean_window

SETTINGS = {"device": "cpu", "precision": "fp32", "imgsz": 320, "max_det": 30}
KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}


@pytest.fixture(scope="module")
def sam(tiny_weights):
    return sam_model_registry["default"](checkpoint=str(tiny_weights), **SETTINGS)


@pytest.fixture(scope="module")
def image(photo_path):
    return load_image(photo_path)  # dog.jpg, 534 x 800, the generator notebook's photo


@pytest.fixture(scope="module")
def binary_records(sam, image):
    return SamAutomaticMaskGenerator(sam).generate(image)


@pytest.fixture(scope="module")
def binary_masks(binary_records):
    return np.stack([r["segmentation"] for r in binary_records])


def test_generator_notebook_calls(sam, image, binary_records):
    # automatic_mask_generator_example.ipynb
    mask_generator = SamAutomaticMaskGenerator(sam)
    masks = binary_records
    assert len(masks) > 0 and set(masks[0].keys()) == KEYS
    for ann in masks:
        assert ann["segmentation"].shape == (534, 800) and ann["segmentation"].dtype == np.bool_
        assert isinstance(ann["area"], int) and ann["area"] == int(ann["segmentation"].sum())
        assert len(ann["bbox"]) == 4 and all(isinstance(v, int) for v in ann["bbox"])
        assert isinstance(ann["predicted_iou"], float) and isinstance(ann["stability_score"], float)
        (x, y), = ann["point_coords"]
        assert ann["segmentation"][int(y), int(x)]  # the point lies in its mask
        assert ann["crop_box"] == [0, 0, 800, 534]
    # show_anns
    sorted_anns = sorted(masks, key=(lambda x: x["area"]), reverse=True)
    img = np.ones((*sorted_anns[0]["segmentation"].shape, 4))
    img[:, :, 3] = 0
    for ann in sorted_anns:
        img[ann["segmentation"]] = np.concatenate([np.random.random(3), [0.35]])
    assert mask_generator.predictor.model is sam
    # the notebook's second generator: crops, downscaled grids, quality filters, small regions
    mask_generator_2 = SamAutomaticMaskGenerator(
        model=sam, points_per_side=32, pred_iou_thresh=0.86, stability_score_thresh=0.92, crop_n_layers=1,
        crop_n_points_downscale_factor=2, min_mask_region_area=100,
    )  # fmt: skip
    masks2 = mask_generator_2.generate(image)
    sam_crops = [amg.box_xyxy_to_xywh(torch.tensor(b)).tolist() for b in amg.generate_crop_boxes((534, 800), 1, 512 / 1500)[0]]
    for ann in masks2:
        assert set(ann) == KEYS and ann["predicted_iou"] > 0.86 and ann["stability_score"] >= 0.92
        assert ann["crop_box"] in sam_crops


def test_default_generator_is_fastsam_predict(tiny_weights, image, binary_records, binary_masks):
    model = FastSAM(tiny_weights, device="cpu", precision="fp32")
    [result] = model.predict(image, imgsz=SETTINGS["imgsz"], max_det=SETTINGS["max_det"])
    assert len(result) == len(binary_records)
    np.testing.assert_array_equal(binary_masks, result.masks)
    np.testing.assert_array_equal([r["predicted_iou"] for r in binary_records], result.scores)
    # the records of the result (CLI: --format sam) are the generator's, stability aside
    from_result = result.to_sam_records(stability_scores=np.array([r["stability_score"] for r in binary_records]))
    for ours, theirs in zip(from_result, binary_records):
        np.testing.assert_array_equal(ours.pop("segmentation"), theirs["segmentation"])
        assert ours == {k: v for k, v in theirs.items() if k != "segmentation"}
    # SAM's box convention: batched_mask_to_box, then XYWH
    sam_boxes = [amg.box_xyxy_to_xywh(box).tolist() for box in amg.batched_mask_to_box(torch.from_numpy(binary_masks))]
    assert [r["bbox"] for r in binary_records] == sam_boxes


def test_records_read_by_segment_anything_pycocotools_and_supervision(sam, image, binary_records, binary_masks):
    import pycocotools.mask as mask_utils
    import supervision as sv

    uncompressed = SamAutomaticMaskGenerator(sam, output_mode="uncompressed_rle").generate(image)
    coco = SamAutomaticMaskGenerator(sam, output_mode="coco_rle").generate(image)
    for u, c, mask in zip(uncompressed, coco, binary_masks):
        np.testing.assert_array_equal(amg.rle_to_mask(u["segmentation"]), mask)
        assert amg.area_from_rle(u["segmentation"]) == u["area"] == int(mask.sum())
        assert amg.coco_encode_rle(u["segmentation"]) == c["segmentation"]
        decoded = mask_utils.decode({"size": c["segmentation"]["size"], "counts": c["segmentation"]["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        assert int(mask_utils.area({"size": c["segmentation"]["size"], "counts": c["segmentation"]["counts"].encode()})) == c["area"]
    # supervision sorts by area and rebuilds masks and boxes
    order = sorted(range(len(binary_records)), key=lambda i: binary_records[i]["area"], reverse=True)
    for records in (binary_records, coco):
        detections = sv.Detections.from_sam(sam_result=records)
        assert len(detections) == len(binary_records)
        np.testing.assert_array_equal(detections.mask, binary_masks[order])
        xywh = np.array([binary_records[i]["bbox"] for i in order], dtype=np.float64)
        np.testing.assert_allclose(detections.xyxy, np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))


def test_stability_score_is_sams_formula():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 40, 33) * 3
    logits[0, 0] = -10  # nothing above either threshold: 0 / 0
    for threshold, offset in [(0.0, 1.0), (0.0, 0.5), (0.3, 2.0)]:
        ours = calculate_stability_score(logits, threshold, offset)
        theirs = amg.calculate_stability_score(logits, threshold, offset)
        assert ours.dtype == theirs.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, equal_nan=True, rtol=0, atol=0)


def test_generator_stability_from_full_resolution_logits(sam, image, binary_records):
    [segmented] = segment_with_logits(sam.fastsam, [image], stability_offset=1.0, **{k: SETTINGS[k] for k in ("imgsz", "max_det")})
    logits = full_logits(segmented, np.arange(len(segmented)))
    dense = amg.calculate_stability_score(logits, 0.0, 1.0).numpy()
    np.testing.assert_allclose(segmented.stability, dense, atol=1e-4)
    np.testing.assert_allclose([r["stability_score"] for r in binary_records], dense, atol=1e-4)


def _random_masks(rng, count):
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(20, 60, 2))
        mask = np.zeros((h, w), dtype=bool)
        y1, x1 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        y2, x2 = int(rng.integers(y1 + 1, h + 1)), int(rng.integers(x1 + 1, w + 1))
        if rng.random() < 0.2:
            y1, x1, y2, x2 = 0, 0, h, w
        mask[y1:y2, x1:x2] = rng.random((y2 - y1, x2 - x1)) > rng.uniform(0.2, 0.8)
        yield mask, float(rng.choice([1, 3, 10, 50, 200, 2000]))


def test_small_regions_are_sams():
    rng = np.random.default_rng(0)
    for mask, area in _random_masks(rng, 150):
        for mode in ("holes", "islands"):
            ours, changed = remove_small_regions(mask, area, mode)
            theirs, their_changed = amg.remove_small_regions(mask, area, mode)
            np.testing.assert_array_equal(ours, theirs)
            assert changed == their_changed
        # the window version (holes then islands), as the generator runs it
        expected, c1 = amg.remove_small_regions(mask, area, "holes")
        expected, c2 = amg.remove_small_regions(expected, area, "islands")
        if not mask.any():
            continue
        bounds = tight_bounds([mask], np.array([[0, 0, mask.shape[1], mask.shape[0]]]))[0]
        x1, y1, x2, y2 = bounds.tolist()
        window, (a, b, c, d), changed = clean_window(mask[y1:y2, x1:x2], bounds, mask.shape, area)
        full = np.zeros_like(mask)
        full[b:d, a:c] = window
        np.testing.assert_array_equal(full, expected)
        assert changed == (c1 or c2)


def test_postprocess_small_regions_is_sams(sam, image, binary_masks):
    from segment_anything import SamAutomaticMaskGenerator as SamGenerator

    masks = binary_masks[:20]
    generator = SamAutomaticMaskGenerator(sam, min_mask_region_area=400)
    bounds = tight_bounds(list(masks), np.tile([[0, 0, 800, 534]], (len(masks), 1)))
    found = FoundMasks([m[y1:y2, x1:x2] for m, (x1, y1, x2, y2) in zip(masks, bounds.tolist())], bounds,
                       np.ones(len(masks), np.float32), np.ones(len(masks), np.float32), np.zeros((len(masks), 2)),
                       np.tile([[0, 0, 800, 534]], (len(masks), 1)))  # fmt: skip
    ours = generator.postprocess_small_regions(found, (534, 800))
    data = amg.MaskData(rles=amg.mask_to_rle_pytorch(torch.from_numpy(masks)),
                        boxes=amg.batched_mask_to_box(torch.from_numpy(masks)), index=torch.arange(len(masks)))  # fmt: skip
    theirs = SamGenerator.postprocess_small_regions(data, 400, max(generator.box_nms_thresh, generator.crop_nms_thresh))
    assert len(ours) == len(theirs["rles"]) and len(ours) > 0
    ours_masks = [np.zeros((534, 800), bool) for _ in range(len(ours))]
    for full, window, (x1, y1, x2, y2) in zip(ours_masks, ours.windows, ours.bounds.tolist()):
        full[y1:y2, x1:x2] = window
    their_masks = [amg.rle_to_mask(r) for r in theirs["rles"]]
    # the same set of masks (NMS order among equal scores is torchvision's business)
    assert sorted(m.tobytes() for m in ours_masks) == sorted(m.tobytes() for m in their_masks)
    np.testing.assert_array_equal(np.sort(ours.sam_boxes(), 0), np.sort(theirs["boxes"].numpy(), 0))


def test_crops_grids_and_edge_filter_are_sams():
    rng = np.random.default_rng(1)
    for size in [(534, 800), (1200, 1800), (1000, 333), (64, 64)]:
        for layers in (0, 1, 2):
            for ratio in (512 / 1500, 0.2):
                assert crop_boxes(size, layers, ratio) == amg.generate_crop_boxes(size, layers, ratio)
        for side, layers, scale in [(32, 0, 1), (32, 2, 2), (16, 1, 1), (7, 2, 2)]:
            for ours, theirs in zip(layer_point_grids(side, layers, scale), amg.build_all_layer_point_grids(side, layers, scale)):
                np.testing.assert_allclose(ours, theirs)
        boxes, _ = crop_boxes(size, 1, 512 / 1500)
        for crop in boxes:
            xy = rng.integers(0, min(size), (50, 2))
            b = np.concatenate([xy, xy + rng.integers(0, 200, (50, 2))], 1)
            local = torch.as_tensor(b - np.array(crop[:2] * 2))
            np.testing.assert_array_equal(
                near_crop_edge(b, crop, size), amg.is_box_near_crop_edge(local, crop, [0, 0, size[1], size[0]]).numpy()
            )


def test_box_convention_of_empty_and_full_masks():
    masks = np.zeros((3, 5, 7), dtype=bool)
    masks[1, 1:3, 2:6] = True
    masks[2] = True
    windows = list(masks)
    ours = sam_boxes_xyxy(tight_bounds(windows, np.tile([[0, 0, 7, 5]], (3, 1))))
    np.testing.assert_array_equal(ours, amg.batched_mask_to_box(torch.from_numpy(masks)).numpy())


def test_options(sam):
    with pytest.warns(FastSAMCompatibilityWarning, match="points_per_batch"):
        SamAutomaticMaskGenerator(sam, points_per_batch=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SamAutomaticMaskGenerator(sam, points_per_batch=16)  # once per process
    with pytest.raises(ValueError, match="output_mode"):
        SamAutomaticMaskGenerator(sam, output_mode="polygons")
    with pytest.raises(ValueError, match="exactly one of points_per_side and point_grids"):
        SamAutomaticMaskGenerator(sam, point_grids=[np.array([[0.5, 0.5]])])
    with pytest.raises(ValueError, match="pred_iou_thresh"):
        SamAutomaticMaskGenerator(sam, pred_iou_thresh=1.5)


def test_generator_speed_is_fastsam_predict_plus_rle(sam, image):
    """Loose: the generator adds no network run. CPU time of this process (the CI machine is shared), best of two
    interleaved; with the tiny network the masks dominate, which is the generator's worst case (bench/vs_sam.py
    measures the real networks)."""
    generator = SamAutomaticMaskGenerator(sam, output_mode="coco_rle")
    model = sam.fastsam

    def predict_and_rle():
        [result] = model.predict(image, imgsz=SETTINGS["imgsz"], max_det=SETTINGS["max_det"])
        return result.to_rle()

    predict_s, generate_s = [], []
    for _ in range(2):
        start = time.process_time()
        predict_and_rle()
        predict_s.append(time.process_time() - start)
        start = time.process_time()
        generator.generate(image)
        generate_s.append(time.process_time() - start)
    assert min(generate_s) < 2 * min(predict_s) + 0.1
