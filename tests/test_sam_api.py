"""fastsam.sam's predictors: segment-anything's and SAM 2's notebook calls, run unchanged against FastSAM.

The calls, shapes and dtypes are those of segment-anything's ``predictor_example.ipynb`` (truck.jpg) and SAM 2's
``image_predictor_example.ipynb``; segment-anything itself (PyPI, test-only) supplies the signatures and
``ResizeLongestSide`` to compare with. The network is the tiny random one: masks are not meaningful, the contract
and the selection rules are checked on a real photo.
"""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

segment_anything = pytest.importorskip("segment_anything")

from fastsam.engine import FastSAM
from fastsam.errors import CheckpointError
from fastsam.io import load_image
from fastsam.predictor import FastSAMPredictor
from fastsam.sam import (
    FastSAMCompatibilityWarning,
    NotApplicableError,
    ResizeLongestSide,
    SAM2AutomaticMaskGenerator,
    SAM2ImagePredictor,
    SamAutomaticMaskGenerator,
    SamPredictor,
    build_sam2,
    sam_model_registry,
)
from fastsam.sam.regions import remove_small_regions

SETTINGS = {"device": "cpu", "precision": "fp32", "imgsz": 320, "max_det": 30}


@pytest.fixture(scope="module")
def sam(tiny_weights):
    model = sam_model_registry["vit_b"](checkpoint=str(tiny_weights), **SETTINGS)
    return model.to(device="cpu")


@pytest.fixture(scope="module")
def truck(shared_images_dir):
    return load_image(shared_images_dir / "segment-anything" / "truck.jpg")  # 1200 x 1800, the notebook's photo


@pytest.fixture(scope="module")
def predictor(sam, truck):
    p = SamPredictor(sam)
    p.set_image(truck)
    return p


@pytest.fixture(scope="module")
def fast_model(tiny_weights):
    return FastSAM(tiny_weights, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def dog(shared_images_dir):
    return load_image(shared_images_dir / "segment-anything" / "dog.jpg")


@pytest.fixture(scope="module")
def dog_predictor(sam, dog):
    p = SamPredictor(sam)
    p.set_image(dog)
    return p


@pytest.fixture(scope="module")
def everything(fast_model, truck):
    """FastSAM.predict's masks and scores for the truck, same settings."""
    [result] = fast_model.predict(truck, imgsz=SETTINGS["imgsz"], max_det=SETTINGS["max_det"])
    return result.materialize_masks()


@pytest.fixture(scope="module")
def reference(fast_model, everything):
    """FastSAMPredictor on the same masks."""
    predictor = FastSAMPredictor(fast_model)
    predictor.set_result(everything)
    return predictor


def _find(masks: np.ndarray, mask: np.ndarray) -> int:
    """Index of the everything-mode mask equal to ``mask`` (-1 if none)."""
    hits = np.flatnonzero((masks == mask[None]).all((1, 2)))
    return int(hits[0]) if hits.size else -1


def test_signatures_match_segment_anything():
    from segment_anything import SamAutomaticMaskGenerator as SamGenerator
    from segment_anything import SamPredictor as SamSamPredictor

    def names(fn):
        return [p for p in inspect.signature(fn).parameters if p != "self"]

    for ours, theirs in [(SamPredictor.predict, SamSamPredictor.predict),
                         (SamPredictor.predict_torch, SamSamPredictor.predict_torch),
                         (SamPredictor.set_image, SamSamPredictor.set_image),
                         (SamPredictor.set_torch_image, SamSamPredictor.set_torch_image)]:  # fmt: skip
        assert names(ours) == names(theirs)
    assert names(SamAutomaticMaskGenerator.__init__)[: len(names(SamGenerator.__init__))] == names(SamGenerator.__init__)
    assert set(sam_model_registry) >= set(segment_anything.sam_model_registry)


def test_predictor_notebook_points(predictor, everything, reference):
    # predictor_example.ipynb: one point, multimask
    input_point, input_label = np.array([[500, 375]]), np.array([1])
    masks, scores, logits = predictor.predict(point_coords=input_point, point_labels=input_label, multimask_output=True)
    assert masks.shape == (3, 1200, 1800) and masks.dtype == np.bool_
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert logits.shape == (3, 256, 256) and logits.dtype == np.float32
    all_masks = everything.masks
    areas = masks.reshape(3, -1).sum(1)
    assert (np.diff(areas) >= 0).all()  # part -> whole
    for mask, score in zip(masks, scores):
        if mask.any():  # each answer is one of FastSAM's masks, holding the point, with its score
            k = _find(all_masks, mask)
            assert k >= 0 and mask[375, 500] and score == pytest.approx(everything.scores[k])
    # one mask per point: the highest-scoring mask holding it, as FastSAMPredictor's "best" mode
    single, _, _ = predictor.predict(point_coords=input_point, point_labels=input_label, multimask_output=False)
    np.testing.assert_array_equal(single[0], reference.points(input_point).masks[0])

    # two points and the best earlier answer as mask_input
    mask_input = logits[np.argmax(scores), :, :]
    input_point, input_label = np.array([[500, 375], [1125, 625]]), np.array([1, 1])
    masks, _, _ = predictor.predict(point_coords=input_point, point_labels=input_label,
                                    mask_input=mask_input[None, :, :], multimask_output=False)  # fmt: skip
    assert masks.shape == (1, 1200, 1800)
    for x, y in input_point:  # one mask holding both points, else the union of each point's best mask
        assert masks[0][y, x] == all_masks[:, y, x].any()
    # a background point excludes the masks that hold it
    masks, _, _ = predictor.predict(point_coords=input_point, point_labels=np.array([1, 0]),
                                    mask_input=mask_input[None, :, :], multimask_output=False)  # fmt: skip
    assert masks.shape == (1, 1200, 1800) and not masks[0][625, 1125]


def test_predictor_notebook_boxes(predictor, truck, reference):
    input_box = np.array([425, 600, 700, 875])
    masks, scores, _ = predictor.predict(point_coords=None, point_labels=None, box=input_box[None, :],
                                         multimask_output=False)  # fmt: skip
    assert masks.shape == (1, 1200, 1800) and scores.shape == (1,)
    np.testing.assert_array_equal(masks[0], reference.boxes(input_box[None]).masks[0])  # the references' box rule
    # box and a background point
    masks, _, _ = predictor.predict(point_coords=np.array([[575, 750]]), point_labels=np.array([0]), box=input_box,
                                    multimask_output=False)  # fmt: skip
    assert masks.shape == (1, 1200, 1800) and not masks[0][750, 575]
    # batched boxes through predict_torch, in SAM's resized frame
    input_boxes = torch.tensor([[75, 275, 1725, 850], [425, 600, 700, 875], [1375, 550, 1650, 800],
                                [1240, 675, 1400, 750]], device=predictor.device)  # fmt: skip
    transformed_boxes = predictor.transform.apply_boxes_torch(input_boxes, truck.shape[:2])
    masks, scores, low = predictor.predict_torch(point_coords=None, point_labels=None, boxes=transformed_boxes,
                                                 multimask_output=False)  # fmt: skip
    assert masks.shape == (4, 1, 1200, 1800) and masks.dtype == torch.bool and masks.device == predictor.device
    assert scores.shape == (4, 1) and low.shape == (4, 1, 256, 256)
    for mask, box in zip(masks, input_boxes.numpy()):
        one, _, _ = predictor.predict(box=box, multimask_output=False)
        np.testing.assert_array_equal(mask[0].numpy(), one[0])


def test_logits_and_low_res_round_trip(predictor):
    point, label = np.array([[900, 600]]), np.array([1])
    masks, scores, low = predictor.predict(point_coords=point, point_labels=label)
    logits, _, _ = predictor.predict(point_coords=point, point_labels=label, return_logits=True)
    assert logits.dtype == np.float32 and logits.shape == masks.shape
    assert ((logits > predictor.model.mask_threshold) == masks).mean() > 0.9999
    # the same point through predict_torch, in SAM's resized frame
    coords = predictor.transform.apply_coords_torch(torch.tensor([[[900.0, 600.0]]]), predictor.original_size)
    batched, batched_scores, _ = predictor.predict_torch(coords, torch.tensor([[1]]))
    assert batched.shape == (1, 3, 1200, 1800)
    np.testing.assert_array_equal(batched[0].numpy(), masks)
    np.testing.assert_array_equal(batched_scores[0].numpy(), scores)
    # SAM's low-resolution logits, fed back alone, ask for the same mask again
    best = int(np.argmax(scores))
    again, _, _ = predictor.predict(mask_input=low[best][None], multimask_output=False)
    inter = (again[0] & masks[best]).sum()
    assert inter / max(1, (again[0] | masks[best]).sum()) > 0.98


def test_not_applicable_and_errors(sam, predictor, tmp_path, truck):
    with pytest.raises(NotImplementedError, match="not applicable to FastSAM"):
        predictor.get_image_embedding()
    with pytest.raises(NotApplicableError):
        predictor.get_image_embedding()
    fresh = SamPredictor(sam)
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="point_labels"):
        predictor.predict(point_coords=np.array([[1, 1]]))
    with pytest.raises(ValueError, match="outside"):
        predictor.predict(point_coords=np.array([[5000, 1]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="image_format"):
        fresh.set_image(truck, image_format="RGBA")
    sam_checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(2, 3, 16, 16)}, sam_checkpoint)
    with pytest.raises(CheckpointError, match="FastSAM weights, not segment-anything's"):
        sam_model_registry["vit_b"](checkpoint=str(sam_checkpoint), device="cpu")


def test_bgr_input_is_flipped(sam, dog, dog_predictor):
    rgb, bgr = dog_predictor, SamPredictor(sam)
    bgr.set_image(np.ascontiguousarray(dog[..., ::-1]), image_format="BGR")
    a, sa, _ = rgb.predict(point_coords=np.array([[400, 300]]), point_labels=np.array([1]))
    b, sb, _ = bgr.predict(point_coords=np.array([[400, 300]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)


def test_resize_longest_side_matches_segment_anything():
    from segment_anything.utils.transforms import ResizeLongestSide as Theirs

    rng = np.random.default_rng(0)
    ours, theirs = ResizeLongestSide(1024), Theirs(1024)
    for size in [(1200, 1800), (534, 800), (77, 1400), (1024, 1024)]:
        coords = rng.uniform(0, max(size), (5, 3, 2))
        boxes = rng.uniform(0, max(size), (7, 4))
        assert ours.get_preprocess_shape(*size, 1024) == theirs.get_preprocess_shape(*size, 1024)
        np.testing.assert_allclose(ours.apply_coords(coords, size), theirs.apply_coords(coords, size))
        np.testing.assert_allclose(ours.apply_boxes(boxes, size), theirs.apply_boxes(boxes, size))
        torch.testing.assert_close(ours.apply_boxes_torch(torch.as_tensor(boxes), size),
                                   theirs.apply_boxes_torch(torch.as_tensor(boxes), size))  # fmt: skip
        np.testing.assert_allclose(ours.to_original_coords(ours.apply_coords(coords, size), size), coords, rtol=1e-9)


def test_end_to_end_batched_call(sam, dog):
    # predictor_example.ipynb, "End-to-end batched inference" (on dog.jpg), with segment-anything's ResizeLongestSide
    from segment_anything.utils.transforms import ResizeLongestSide as Theirs

    resize_transform = Theirs(sam.image_encoder.img_size)

    def prepare_image(image, transform, device):
        image = transform.apply_image(image)
        image = torch.as_tensor(image, device=device.device)
        return image.permute(2, 0, 1).contiguous()

    image1_boxes = torch.tensor([[75, 275, 725, 450], [425, 100, 700, 375]], device=sam.device)
    batched_input = [{"image": prepare_image(dog, resize_transform, sam),
                      "boxes": resize_transform.apply_boxes_torch(image1_boxes, dog.shape[:2]),
                      "original_size": dog.shape[:2]}]  # fmt: skip
    batched_output = sam(batched_input, multimask_output=False)
    assert set(batched_output[0]) == {"masks", "iou_predictions", "low_res_logits"}
    assert batched_output[0]["masks"].shape == (2, 1, 534, 800) and batched_output[0]["masks"].dtype == torch.bool
    assert batched_output[0]["iou_predictions"].shape == (2, 1)
    assert batched_output[0]["low_res_logits"].shape == (2, 1, 256, 256)


def test_sam2_image_predictor(tiny_weights, dog, dog_predictor):
    model = build_sam2("configs/sam2.1/sam2.1_hiera_l.yaml", str(tiny_weights), **SETTINGS)
    sam2 = SAM2ImagePredictor(model)
    sam2.set_image(Image.fromarray(dog))  # SAM 2 takes PIL images too
    point, label = np.array([[400, 300]]), np.array([1])
    masks, scores, logits = sam2.predict(point_coords=point, point_labels=label, multimask_output=True)
    assert masks.dtype == np.float32 and masks.shape == (3, 534, 800) and set(np.unique(masks)) <= {0.0, 1.0}
    assert scores.dtype == np.float32 and scores.shape == (3,) and logits.shape == (3, 256, 256)
    assert logits.min() >= -32 and logits.max() <= 32
    sam_masks, sam_scores, _ = dog_predictor.predict(point_coords=point, point_labels=label)
    np.testing.assert_array_equal(masks.astype(bool), sam_masks)
    np.testing.assert_array_equal(scores, sam_scores)
    # normalize_coords=False: coordinates are fractions of the image (SAM 2's meaning)
    relative, _, _ = sam2.predict(point_coords=point / [800, 534], point_labels=label, normalize_coords=False)
    np.testing.assert_array_equal(relative, masks)
    # several boxes: (B, C, H, W)
    boxes = np.array([[75, 275, 725, 450], [425, 100, 700, 375], [10, 50, 650, 500]])
    masks, scores, _ = sam2.predict(point_coords=None, point_labels=None, box=boxes, multimask_output=False)
    assert masks.shape == (3, 1, 534, 800) and scores.shape == (3, 1)
    for mask, box in zip(masks, boxes):
        one, _, _ = dog_predictor.predict(box=box, multimask_output=False)
        np.testing.assert_array_equal(mask.astype(bool), one)
    with pytest.raises(NotImplementedError, match="not applicable"):
        sam2.get_image_embedding()


def test_sam2_batch_and_cleanup(tiny_weights, dog, shared_images_dir, dog_predictor):
    model = build_sam2("sam2_hiera_s.yaml", str(tiny_weights), **SETTINGS)
    images = [dog, load_image(shared_images_dir / "segment-anything" / "groceries.jpg")]
    sam2 = SAM2ImagePredictor(model, max_hole_area=4.0, max_sprinkle_area=4.0)
    sam2.set_image_batch(images)
    boxes = [np.array([100, 100, 500, 400]), np.array([50, 50, 300, 300])]
    masks, scores, lows = sam2.predict_batch(None, None, box_batch=boxes, multimask_output=False)
    assert [m.shape for m in masks] == [(1, *images[0].shape[:2]), (1, *images[1].shape[:2])]
    assert [s.shape for s in scores] == [(1,), (1,)] and [lo.shape for lo in lows] == [(1, 256, 256)] * 2
    raw, _, _ = dog_predictor.predict(box=boxes[0], multimask_output=False)
    # SAM 2's hole filling and speck removal, its low-resolution areas in original pixels: (longest side / 256)^2
    area = 4.0 * (max(dog.shape[:2]) / 256) ** 2
    expected, _ = remove_small_regions(raw[0], area + 1, "holes")
    expected, _ = remove_small_regions(expected, area + 1, "islands", keep_largest=False)
    np.testing.assert_array_equal(masks[0][0].astype(bool), expected)


def test_sam2_generator_options_warn_once(tiny_weights, dog):
    model = build_sam2("", str(tiny_weights), **SETTINGS)
    image = dog
    with pytest.warns(FastSAMCompatibilityWarning, match="use_m2m"):
        generator = SAM2AutomaticMaskGenerator(model, use_m2m=True, output_mode="coco_rle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SAM2AutomaticMaskGenerator(model, use_m2m=True)  # said once per process
    records = generator.generate(image)
    reference = SamAutomaticMaskGenerator(model, output_mode="coco_rle").generate(image)
    assert json.dumps(records) == json.dumps(reference)  # same defaults: the same records


def test_cli_sam_records(tiny_weights, photo_path, tmp_path):
    import pycocotools.mask as mask_utils

    from fastsam.cli.main import main

    code = main(["segment", str(photo_path), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "320",
                 "--max-det", "20", "--format", "sam", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    records = json.loads((tmp_path / "dog_sam.json").read_text())
    model = FastSAM(tiny_weights, device="cpu")
    [result] = model.predict(photo_path, imgsz=320, max_det=20)
    assert len(records) == len(result) > 0
    keys = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
    for record, mask, score in zip(records, result.masks, result.scores):
        assert set(record) == keys and record["stability_score"] is None  # the CLI keeps no logits
        decoded = mask_utils.decode({"size": record["segmentation"]["size"],
                                     "counts": record["segmentation"]["counts"].encode()})  # fmt: skip
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        assert record["area"] == int(mask.sum()) and record["predicted_iou"] == pytest.approx(float(score))
        assert record["crop_box"] == [0, 0, 800, 534]
