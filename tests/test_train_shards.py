"""`fastsam data convert`: real COCO / YOLO-seg data -> shards with the same instances; training reads the shards;
corrupt images and annotations are counted and reported, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fastsam.cli.main import main as cli_main
from fastsam.training.augment import Augment
from fastsam.training.data import detect_format, load_records
from fastsam.training.dataset import SegmentationDataset
from fastsam.training.records import annotation_rle, read_image, record_annotations
from fastsam.training.trainer import TrainConfig, train
from train_synth import write_synthetic_coco


def _masks(rec) -> tuple[np.ndarray, list[bool]]:
    anns = record_annotations(rec)
    rles = [annotation_rle(kind, data, rec.height, rec.width) for kind, data, _ in anns]
    masks = np.stack([mask_utils.decode(r) for r in rles]) if rles else np.zeros((0, rec.height, rec.width), np.uint8)
    return masks.astype(bool), [crowd for _, _, crowd in anns]


def _assert_same_instances(src_records, dst_records) -> None:
    assert len(src_records) == len(dst_records)
    for a, b in zip(src_records, dst_records):
        assert (a.height, a.width, a.image_id) == (b.height, b.width, b.image_id)
        assert np.array_equal(read_image(a), read_image(b))  # stored as the original bytes: same pixels
        ma, ca = _masks(a)
        mb, cb = _masks(b)
        keep = ma.reshape(len(ma), a.height * a.width).any(1)  # sources may hold empty (degenerate) polygons; convert drops them
        assert ma[keep].shape == mb.shape and np.array_equal(ma[keep], mb), a.path
        assert [c for c, k in zip(ca, keep) if k] == cb


@pytest.fixture(scope="module")
def real_data(shared_dir: Path) -> tuple[Path, Path]:
    tiny = shared_dir / "data" / "tiny-coco" / "small_coco" / "instances_train2017_small.json"
    coco128 = shared_dir / "data" / "coco128-seg"
    if not tiny.is_file() or not coco128.is_dir():
        pytest.skip("tiny-coco / coco128-seg not in the shared folder")
    return tiny, coco128


def test_convert_real_data_keeps_every_instance_and_trains(real_data, tmp_path: Path, capsys):
    tiny, coco128 = real_data
    for src, fmt, workers in ((tiny, "coco", "0"), (coco128, "yolo", "2")):
        out = tmp_path / fmt
        assert cli_main(["data", "convert", str(src), str(out), "--workers", workers, "--shard-size", "50", "--no-progress"]) == 0
        printed = capsys.readouterr().out
        src_records, src_report = load_records(src, fmt)
        assert detect_format(out) == "shards" and detect_format(src) == fmt
        dst_records, dst_report = load_records(out)
        assert dst_report.images == src_report.images and dst_report.annotations == src_report.annotations
        assert dst_report.ignored_crowd == src_report.ignored_crowd
        assert f"{src_report.images} images, {src_report.annotations} instances" in printed
        index = json.loads((out / "fastsam-data.json").read_text())
        assert len(index["shards"]) == -(-src_report.images // 50)
        _assert_same_instances(src_records, dst_records)

    tiny_records, _ = load_records(tiny, "coco")
    assert sum(crowd for r in tiny_records for *_, crowd in r.annotations) == 1  # the crowd region is kept, flagged
    # training from the converted format (auto-detected), validating on it too
    cfg = TrainConfig(data=str(tmp_path / "coco"), val=str(tmp_path / "coco"), scale="n", imgsz=128, epochs=1,
                      max_steps=2, batch=2, nominal_batch=4, workers=0, device="cpu", out=str(tmp_path / "run"),
                      progress=False, plots=False)
    summary = train(cfg)
    assert len(summary["history"]) == 2 and all(np.isfinite(summary["history"]))
    assert summary["rows"][-1]["mask_ap"] != ""
    item = SegmentationDataset(load_records(tmp_path / "yolo")[0], 64, Augment(), seed=1)[3]  # a mosaic from shards
    assert item["image"].shape == (3, 64, 64) and len(item["boxes"]) == len(item["masks"]) > 0


def test_convert_downscales_images_and_masks(tmp_path: Path):
    src = write_synthetic_coco(tmp_path / "src", 4, 96, seed=5)
    out = tmp_path / "small"
    assert cli_main(["data", "convert", str(src), str(out), "--max-side", "48", "--workers", "0", "--no-progress"]) == 0
    src_records, _ = load_records(src)
    dst_records, report = load_records(out)
    assert not report.skipped_annotations
    for a, b in zip(src_records, dst_records):
        assert (b.height, b.width) == (48, 48) and read_image(b).shape == (48, 48, 3)
        ma, _ = _masks(a)
        mb, _ = _masks(b)
        assert len(ma) == len(mb)
        for big, small in zip(ma, mb):
            half = big.reshape(48, 2, 48, 2).mean((1, 3)) >= 0.5
            assert (half & small).sum() / (half | small).sum() > 0.9
    with pytest.raises(FileExistsError, match="already holds"):
        from fastsam.training.shards import convert_dataset

        convert_dataset(src_records, out, report, progress=False)


def test_corrupt_images_and_annotations_are_counted_and_reported(tmp_path: Path, capsys):
    src = write_synthetic_coco(tmp_path / "src", 6, 64, seed=9)
    data = json.loads(src.read_text())
    images = src.parent / "images"
    (images / "00001.png").write_bytes((images / "00001.png").read_bytes()[:70])  # header fine, pixels truncated
    (images / "00002.png").write_bytes(b"garbage")  # not an image at all
    anns = [a for a in data["annotations"] if a["image_id"] == 4]
    anns[0]["segmentation"] = {"size": [64, 64], "counts": "abc"}  # right size, undecodable counts
    anns[-1]["segmentation"] = [[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]]  # polygon with NaN
    src.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert cli_main(["data", "convert", str(src), str(out), "--workers", "0", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 image(s) and 2 annotation(s)" in captured.out
    index = json.loads((out / "fastsam-data.json").read_text())
    assert index["images"] == 4
    assert sum(index["report"]["skipped_images"].values()) == 2
    assert sum(index["report"]["skipped_annotations"].values()) == 2
    assert any("undecodable" in k for k in index["report"]["skipped_annotations"])
    records, report = load_records(out)
    assert report.images == 4 and len(records) == 4


def test_unfinished_or_foreign_folders_are_refused(tmp_path: Path):
    (tmp_path / "shard-00000.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="data convert"):
        load_records(tmp_path, "shards")
    (tmp_path / "fastsam-data.json").write_text(json.dumps({"format": "fastsam-shards", "version": 99, "shards": []}))
    with pytest.raises(ValueError, match="convert the data again"):
        load_records(tmp_path)
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="--format"):
        detect_format(other)


def test_convert_sa1b_folder(tmp_path: Path):
    import cv2

    from train_synth import make_image

    rng = np.random.default_rng(4)
    src = tmp_path / "sa1b"
    src.mkdir()
    for k in range(3):
        image, instances = make_image(rng, 80)
        cv2.imwrite(str(src / f"sa_{k}.jpg"), image[:, :, ::-1])
        anns = []
        for m, _ in instances:
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append({"id": len(anns), "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}, "area": int(m.sum())})
        (src / f"sa_{k}.json").write_text(json.dumps({"image": {"image_id": k, "width": 80, "height": 80}, "annotations": anns}))
    assert detect_format(src) == "sa1b"
    assert cli_main(["data", "convert", str(src), str(tmp_path / "out"), "--workers", "0", "--no-progress"]) == 0
    _assert_same_instances(load_records(src)[0], load_records(tmp_path / "out")[0])
