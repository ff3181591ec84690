"""COCO / LVIS class-agnostic proposals (AR), instance segmentation from box prompts (mask AP) and the speed
command, on the shared tiny-coco data."""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from fastsam.evaluation.coco_data import image_paths, load_coco
from fastsam.evaluation.coco_metrics import average_precision, average_recall
from fastsam.evaluation.instances import detector_boxes, ground_truth_boxes, masks_for_boxes
from fastsam.predictor import SegmentedImage
from fastsam.results import SegmentationResult

pytest.importorskip("pycocotools")


def _cli(argv: list[str]) -> int:
    """Run ``fastsam eval ...`` through the module's own parser (main.py is wired separately)."""
    from fastsam.cli import evaluate

    parser = argparse.ArgumentParser(prog="fastsam")
    evaluate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


@pytest.fixture(scope="module")
def tiny_coco(shared_dir: Path) -> tuple[Path, Path]:
    root = shared_dir / "data" / "tiny-coco" / "small_coco"
    ann, images = root / "instances_train2017_small.json", root / "train_2017_small"
    if not ann.is_file() or not images.is_dir():
        pytest.skip(f"tiny-coco not found at {root}")
    return ann, images


@pytest.fixture(scope="module")
def coco(tiny_coco):
    return load_coco(tiny_coco[0])


def _gt_as_results(coco, with_masks: bool) -> list[dict]:
    out = []
    for ann in coco.dataset["annotations"]:
        if ann["iscrowd"]:
            continue
        entry = {"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"], "score": 1.0}
        if with_masks:
            rle = coco.annToRLE(ann)
            entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        out.append(entry)
    return out


def _pycocotools_ar(coco, results: list[dict], iou_type: str) -> list[float]:
    """AR@10, AR@100, AR@1000 and AR small/medium/large @1000 straight from COCOeval.summarize (stats[6:12])."""
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco, dt, iou_type)
        ev.params.useCats = 0
        ev.params.maxDets = [10, 100, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[6:12]]


def test_ground_truth_as_proposals_has_recall_one(coco) -> None:
    for iou_type, with_masks in (("bbox", False), ("segm", True)):
        ar = average_recall(coco, _gt_as_results(coco, with_masks), iou_type)
        for key in ("AR@100", "AR@1000", "AR_small@1000", "AR_medium@1000", "AR_large@1000"):
            assert ar[key] == pytest.approx(1.0), (iou_type, key)
        assert 0.5 < ar["AR@10"] < 1.0  # some images have more than 10 objects


def test_shifted_boxes_match_pycocotools(coco) -> None:
    rng = np.random.default_rng(0)
    results = _gt_as_results(coco, with_masks=False)
    for r in results:
        x, y, w, h = r["bbox"]
        r["bbox"] = [x + rng.uniform(-0.3, 0.3) * w, y + rng.uniform(-0.3, 0.3) * h, w, h]
        r["score"] = float(rng.random())
    ours = average_recall(coco, results, "bbox")
    expected = _pycocotools_ar(coco, results, "bbox")
    got = [ours[k] for k in ("AR@10", "AR@100", "AR@1000", "AR_small@1000", "AR_medium@1000", "AR_large@1000")]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert 0.05 < ours["AR@1000"] < 0.95  # shifted boxes: partial recall


def test_lvis_style_annotations(tiny_coco, tmp_path: Path) -> None:
    """LVIS v1 has no iscrowd, no file_name (coco_url instead): it loads and evaluates like COCO."""
    data = json.loads(tiny_coco[0].read_text())
    data["annotations"] = [a for a in data["annotations"] if not a["iscrowd"]]
    for a in data["annotations"]:
        del a["iscrowd"]
    for im in data["images"]:
        im.pop("file_name")
        im["neg_category_ids"], im["not_exhaustive_category_ids"] = [], []
    path = tmp_path / "lvis_like.json"
    path.write_text(json.dumps(data))
    lvis = load_coco(path)
    found, missing = image_paths(lvis, tiny_coco[1])
    assert len(found) == 16 and not missing
    ar = average_recall(lvis, _gt_as_results(lvis, with_masks=False), "bbox")
    assert ar["AR@1000"] == pytest.approx(1.0)


def test_box_prompts_on_ground_truth_masks_give_ap_one(coco) -> None:
    """Category and score plumbing: if FastSAM's masks were the true masks, GT-box prompts would score AP 1."""
    results = []
    image_ids = sorted(coco.imgs)[:6]
    prompts = ground_truth_boxes(coco, image_ids)
    for image_id in image_ids:
        info = coco.imgs[image_id]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])) if not a["iscrowd"]]
        masks = np.stack([coco.annToMask(a).astype(bool) for a in anns])
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        result = SegmentationResult(masks, boxes, np.ones(len(anns), np.float32), (info["height"], info["width"]))
        results.extend(masks_for_boxes(SegmentedImage(result), prompts[image_id], image_id))
    assert len(results) == sum(len(p) for p in prompts.values())
    ap = average_precision(coco, results, "segm", image_ids)
    assert ap["AP"] > 0.95  # ~1: box-IoU selection may swap a few heavily overlapping objects


def test_detector_boxes_file(tmp_path: Path) -> None:
    dets = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "score": s} for s in (0.2, 0.9, 0.5)]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    boxes = detector_boxes(path, [1, 2], max_per_image=2)
    assert [b["score"] for b in boxes[1]] == [0.9, 0.5] and boxes[2] == []
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="COCO results"):
        detector_boxes(path, [1])


@pytest.mark.slow
def test_proposals_command_end_to_end(tiny_coco, tiny_weights: Path, tmp_path: Path) -> None:
    """Random weights: the numbers mean nothing, the pipeline is the real one."""
    ann, images = tiny_coco
    code = _cli(["eval", "proposals", "--model", str(tiny_weights), "--device", "cpu", "--coco", str(ann),
                 "--images", str(images), "--imgsz", "192", "--max-det", "100", "--limit", "2",
                 "--out", str(tmp_path), "--quiet"])  # fmt: skip
    assert code == 0
    out = json.loads((tmp_path / "proposals.json").read_text())
    assert out["images"] == 2 and out["dataset"] == "coco" and out["proposals_per_image"] > 0
    for kind in ("box", "mask"):
        assert set(out[kind]) >= {"AR@10", "AR@100", "AR@1000", "AR_small@1000"}
        assert all(-1 <= v <= 1 for v in out[kind].values())
    assert "| AR@1000 |" in (tmp_path / "proposals.md").read_text()


@pytest.mark.slow
def test_instances_command_end_to_end(tiny_coco, tiny_weights: Path, tmp_path: Path) -> None:
    ann, images = tiny_coco
    coco = load_coco(ann)
    first = sorted(coco.imgs)[:2]
    dets = [{"image_id": r["image_id"], "category_id": r["category_id"], "bbox": r["bbox"], "score": 0.5}
            for r in _gt_as_results(coco, False) if r["image_id"] in first]  # fmt: skip
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    for extra in ([], ["--boxes", str(tmp_path / "dets.json")]):
        code = _cli(["eval", "instances", "--model", str(tiny_weights), "--device", "cpu", "--coco", str(ann),
                     "--images", str(images), "--imgsz", "192", "--limit", "2", "--out", str(tmp_path), "--quiet",
                     *extra])  # fmt: skip
        assert code == 0
        out = json.loads((tmp_path / "instances.json").read_text())
        assert out["images"] == 2 and out["prompts"] == len(dets)
        assert set(out["mask"]) == {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"}
        assert (tmp_path / "instances.md").is_file()


def test_speed_command(tiny_weights: Path, shared_images_dir: Path, tmp_path: Path, capsys) -> None:
    code = _cli(["eval", "speed", str(shared_images_dir / "segment-anything" / "dog.jpg"), "--model", str(tiny_weights),
                 "--device", "cpu", "--imgsz", "128", "--repeats", "1", "--warmup", "0", "--points", "1,10",
                 "--out", str(tmp_path), "--quiet"])  # fmt: skip
    assert code == 0
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert [r["prompts"] for r in rows] == ["everything", "1", "10"] and all(r["ms_per_image"] > 0 for r in rows)
    # the mask index is built once per image, then each prompt costs prompt_ms; both are inside ms_per_image
    assert rows[0]["index_ms"] == rows[0]["prompt_ms"] == 0
    assert all(0 < r["index_ms"] and 0 < r["prompt_ms"] and r["index_ms"] + r["prompt_ms"] < r["ms_per_image"]
               for r in rows[1:])  # fmt: skip
    assert "| everything |" in capsys.readouterr().out


def test_missing_inputs_fail_before_loading_the_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        _cli(
            [
                "eval",
                "proposals",
                "--model",
                "not-a-model",
                "--coco",
                str(tmp_path / "none.json"),
                "--images",
                str(tmp_path),
            ]
        )
