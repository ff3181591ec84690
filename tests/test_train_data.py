"""Training data loading for `fastsam train`: COCO (polygons + RLE), SA-1B and YOLO-seg; corrupt data is counted."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from fastsam.training.data import Augment, SegmentationDataset, collate, load_records
from train_synth import make_image, write_synthetic_coco


@pytest.fixture(scope="module")
def synth_coco(tmp_path_factory) -> Path:
    return write_synthetic_coco(tmp_path_factory.mktemp("synth"), 8, 96, seed=3)


def _box_of(mask: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_coco_masks_and_boxes_agree(synth_coco: Path):
    records, report = load_records(synth_coco, "coco")
    assert report.images == 8 and not report.skipped_images and not report.skipped_annotations
    kinds = {a[0] for r in records for a in r.annotations}
    assert kinds == {"rle", "poly"}
    ds = SegmentationDataset(records, 96, Augment.off())
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (3, 96, 96) and item["image"].dtype == torch.uint8
        assert item["masks"].shape[1:] == (24, 24)
        assert len(item["masks"]) == len(item["boxes"]) == len(records[i].annotations)
        for m, b in zip(item["masks"], item["boxes"]):
            assert _box_of(m) == pytest.approx((b / 4).tolist(), abs=1.01)


def test_augmentation_deterministic_and_flips(synth_coco: Path):
    records, _ = load_records(synth_coco, "coco")
    ds = SegmentationDataset(records, 96, Augment(mosaic=0.0, scale=0.0, translate=0.0, fliplr=1.0, hsv_h=0, hsv_s=0, hsv_v=0))
    plain = SegmentationDataset(records, 96, Augment.off())
    a, b = ds[0], plain[0]
    assert torch.equal(a["image"], b["image"].flip(-1))
    assert torch.equal(a["masks"], b["masks"].flip(-1))
    rand = SegmentationDataset(records, 96, Augment(), seed=5)
    x, y = rand[1], rand[1]
    assert torch.equal(x["image"], y["image"]) and torch.equal(x["boxes"], y["boxes"])
    rand.set_epoch(1)
    assert not torch.equal(rand[1]["image"], x["image"])
    batch = collate([rand[0], rand[1]])
    assert batch["image"].shape == (2, 3, 96, 96) and len(batch["masks"]) == 2


def test_coco_corrupt_data_is_counted_not_fatal(tmp_path: Path, synth_coco: Path):
    data = json.loads(synth_coco.read_text())
    images_dir = synth_coco.parent / "images"
    folder = tmp_path / "bad"
    (folder / "images").mkdir(parents=True)
    for info in data["images"]:
        (folder / "images" / info["file_name"]).write_bytes((images_dir / info["file_name"]).read_bytes())
    (folder / "images" / "00000.png").write_bytes(b"not a png at all")  # corrupt image
    data["images"].append({"id": 999, "file_name": "missing.png", "height": 96, "width": 96})  # missing image
    anns = [a for a in data["annotations"] if a["image_id"] == 2]
    anns[0]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]  # two points: not a polygon
    if len(anns) > 1:
        anns[1]["segmentation"] = {"size": [10, 10], "counts": "abc"}  # RLE of another size
    path = folder / "instances.json"
    path.write_text(json.dumps(data))
    records, report = load_records(path, "coco")
    assert report.images == 7
    assert sum(report.skipped_images.values()) == 2
    assert sum(report.skipped_annotations.values()) == min(len(anns), 2)
    assert "skipped" in report.summary()


def test_runtime_decode_failure_is_replaced_and_counted(tmp_path: Path):
    path = write_synthetic_coco(tmp_path, 3, 64, seed=1)
    records, report = load_records(path, "coco")
    records[1].path.write_bytes(records[1].path.read_bytes()[:60])  # truncated after indexing
    ds = SegmentationDataset(records, 64, Augment.off(), report=report)
    item = ds[1]
    assert item["index"] == 2
    assert sum(report.skipped_images.values()) == 1


def test_sa1b_folder(tmp_path: Path):
    rng = np.random.default_rng(0)
    for k in range(3):
        image, instances = make_image(rng, 80)
        cv2.imwrite(str(tmp_path / f"sa_{k}.jpg"), image[:, :, ::-1])
        anns = []
        for m, _ in instances:
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": len(anns), "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                         "bbox": mask_utils.toBbox(rle).tolist(), "area": int(m.sum()), "predicted_iou": 0.9})
        if k == 2:
            anns.append({"id": 99, "bbox": [0, 0, 1, 1]})  # no segmentation
        (tmp_path / f"sa_{k}.json").write_text(json.dumps({"image": {"image_id": k, "width": 80, "height": 80, "file_name": f"sa_{k}.jpg"}, "annotations": anns}))
    cv2.imwrite(str(tmp_path / "sa_9.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "sa_9.json").write_text("{broken")
    records, report = load_records(tmp_path, "sa1b")
    assert report.images == 3 and sum(report.skipped_images.values()) == 1
    assert sum(report.skipped_annotations.values()) == 1
    item = SegmentationDataset(records, 64, Augment())[0]
    assert item["masks"].shape[1:] == (16, 16) and len(item["boxes"]) >= 1


def test_yolo_folder(tmp_path: Path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "train" / "a.jpg"), np.full((60, 100, 3), 90, np.uint8))
    (tmp_path / "labels" / "train" / "a.txt").write_text("3 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6\n7 0.2 0.2\n0 0.1 x 0.3 0.4 0.5 0.5\n")
    cv2.imwrite(str(tmp_path / "images" / "train" / "b.jpg"), np.full((60, 100, 3), 90, np.uint8))  # no labels
    records, report = load_records(tmp_path, "yolo")
    assert report.images == 2 and report.annotations == 1
    assert sum(report.skipped_annotations.values()) == 2
    item = SegmentationDataset(records, 64, Augment.off())[0]
    # polygon 0.1..0.5 x 0.1..0.6 of a 100x60 image, letterboxed to 64x64 (scale 0.64, 12.8 px padding on top)
    assert item["boxes"][0].tolist() == pytest.approx([6.4, 12.8 + 3.84, 32.0, 12.8 + 23.04], abs=0.05)


def test_shared_tiny_coco_and_coco128(shared_dir: Path):
    tiny = shared_dir / "data" / "tiny-coco" / "small_coco" / "instances_train2017_small.json"
    coco128 = shared_dir / "data" / "coco128-seg"
    if not tiny.is_file() or not coco128.is_dir():
        pytest.skip("tiny-coco / coco128-seg not in the shared folder")
    records, report = load_records(tiny, "coco")
    assert report.images == 16 and report.annotations == 196 and report.ignored_crowd == 1
    kinds = {a[0] for r in records for a in r.annotations}
    assert kinds == {"poly", "rle"}
    records, report = load_records(coco128, "yolo")
    assert report.images == 128 and report.annotations > 900 and not report.skipped_annotations
