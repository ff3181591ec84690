"""fastsam annotate: class assignment, overlap resolution, COCO / YOLO-seg datasets on real photos, resuming."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam.cli.main import main
from fastsam.labelling.annotate import AnnotateSettings, annotate_images
from fastsam.labelling.classes import (
    BACKGROUND_PROMPTS,
    TEMPLATE,
    assign_classes,
    parse_classes,
)
from fastsam.labelling.overlaps import resolve_overlaps
from fastsam.predictor import FastSAMPredictor
from fastsam.prompts.text import mask_crops

INFER = ["--device", "cpu", "--precision", "fp32", "--imgsz", "256", "--max-det", "20", "--quiet"]


class RecordingScorer:
    """Answers from a fixed ``(T, C)`` matrix and records what it was asked."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.calls: list[tuple[list[np.ndarray], list[str]]] = []

    def __call__(self, crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        self.calls.append((crops, texts))
        return self.matrix


class ShapeScorer:
    """Known answers: a crop wider than tall is "wide", taller than wide "tall", a square one background."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        self.calls += 1
        sim = np.zeros((len(texts), len(crops)), np.float32)
        for c, crop in enumerate(crops):
            h, w = crop.shape[:2]
            row = texts.index(TEMPLATE.format("wide")) if w > h else texts.index(TEMPLATE.format("tall")) if h > w else 2
            sim[row, c] = 0.3
        return sim


@pytest.fixture(scope="module")
def predictor(tiny_model) -> FastSAMPredictor:
    return FastSAMPredictor(tiny_model, imgsz=256, max_det=20)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, shared_images_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("dog.jpg", "groceries.jpg"):
        shutil.copy(shared_images_dir / "segment-anything" / name, folder / name)
    return folder


def _expected(predictor: FastSAMPredictor, path: Path, min_area: int = 100) -> np.ndarray:
    """The predictor's everything-mode masks of at least ``min_area`` pixels, best score first."""
    result = predictor.set_image(path).everything()
    masks = result.masks[result.masks.reshape(len(result), -1).sum(1) >= min_area]
    return masks


# ---------------------------------------------------------------------------------------------------------- classes


def test_assign_classes_known_scores() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 0] = np.arange(30, dtype=np.uint8)[None] * 8
    masks = np.zeros((4, 20, 30), bool)
    masks[0, 2:10, 3:12] = masks[1, 5:15, 10:20] = masks[2, 0:4, 0:30] = masks[3, 10:20, 20:30] = True
    boxes = np.array([[3, 2, 12, 10], [10, 5, 20, 15], [0, 0, 30, 4], [20, 10, 30, 20]], np.float32)
    k, b = 2, len(BACKGROUND_PROMPTS)
    sim = np.zeros((k + b, 4))
    sim[0, 0], sim[1, 0] = 0.30, 0.20  # mask 0: cat by 0.10 (a factor e^10 after CLIP's scale): p ~ 1
    sim[k + 3, 1] = 0.30  # mask 1: a background prompt wins
    sim[0, 2] = sim[1, 2] = 0.25  # mask 2: cat and dog tie: p = 0.5 each (the background far below), cat first
    sim[1, 3] = 0.02  # mask 3: dog wins by 0.02 over 11 prompts at 0: p = e^2 / (e^2 + 10)
    scorer = RecordingScorer(sim)
    out = assign_classes(image, masks, boxes, ["cat", "dog"], scorer, threshold=0.4)
    p3 = np.exp(2.0) / (np.exp(2.0) + 10)  # 0.42: above the threshold
    assert out.class_ids.tolist() == [0, -1, 0, 1]
    assert out.scores[0] == pytest.approx(1 / (1 + np.exp(-10) + 9 * np.exp(-30)), rel=1e-5)
    assert out.scores[2] == pytest.approx(0.5, abs=1e-6) and out.scores[1] == 0.0
    assert out.scores[3] == pytest.approx(p3, rel=1e-5)
    # one scorer call per image: every crop against the class prompts then the background prompts
    [(crops, texts)] = scorer.calls
    assert texts == ["a photo of a cat.", "a photo of a dog.", *BACKGROUND_PROMPTS]
    for crop, expected in zip(crops, mask_crops(image, masks, boxes)):
        np.testing.assert_array_equal(crop, expected)
    assert crops[0].shape == (8, 9, 3)  # mask 0's box, black outside the mask
    # a stricter threshold drops the tie
    assert assign_classes(image, masks, boxes, ["cat", "dog"], scorer, threshold=0.6).class_ids.tolist()[:3] == [0, -1, -1]


def test_assign_classes_rejects_bad_scorer_and_input() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    masks = np.ones((2, 8, 8), bool)
    boxes = np.array([[0, 0, 8, 8]] * 2, np.float32)
    with pytest.raises(ValueError, match=r"\(11, 2\)"):
        assign_classes(image, masks, boxes, ["a", "b"], RecordingScorer(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="probability"):
        assign_classes(image, masks, boxes, ["a"], RecordingScorer(np.zeros((10, 2))), threshold=1.5)
    empty = assign_classes(image, masks[:0], boxes[:0], ["a"], RecordingScorer(np.zeros((0, 0))))
    assert empty.class_ids.shape == (0,)


@pytest.mark.parametrize("text, error", [(",", "empty"), ("a,,b", "empty name"), ("Dog,dog", "twice")])
def test_parse_classes_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_classes(text)
    assert parse_classes(" person, car ,dog") == ["person", "car", "dog"]


# --------------------------------------------------------------------------------------------------------- overlaps


def test_resolve_overlaps_parts_partial_and_other_classes() -> None:
    masks = np.zeros((5, 10, 10), bool)
    masks[0, 0:8, 0:8] = True  # whole, best
    masks[1, 1:4, 1:4] = True  # a part of the whole: dropped
    masks[2, 6:10, 6:10] = True  # overlaps the whole by 4 of 16 pixels: keeps its 12 own pixels
    masks[3, 0:8, 0:8] = True  # same pixels as the whole but another class: untouched
    masks[4, 7:10, 0:2] = True  # 6 pixels, 2 taken -> 4 own pixels, below min_area 5: dropped
    class_ids = np.array([0, 0, 0, 1, 0])
    ranking = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    kept, resolved = resolve_overlaps(masks, class_ids, ranking, max_overlap=0.5, min_area=5)
    assert kept.tolist() == [0, 2, 3]
    np.testing.assert_array_equal(resolved[0], masks[0])
    own = masks[2].copy()
    own[6:8, 6:8] = False
    np.testing.assert_array_equal(resolved[1], own)
    np.testing.assert_array_equal(resolved[2], masks[3])
    # the better ranked mask wins whatever the order given
    kept, _ = resolve_overlaps(masks[[1, 0]], np.array([0, 0]), np.array([0.8, 0.9]))
    assert kept.tolist() == [1]


# ------------------------------------------------------------------------------------------------ COCO on real photos


def test_annotate_coco_equals_predictor(tmp_path: Path, photos: Path, tiny_weights: Path, predictor) -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    out = tmp_path / "ds"
    code = main(["annotate", str(photos), "--out", str(out), "--model", str(tiny_weights), *INFER])
    assert code == 0
    coco = COCO(str(out / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["object"]
    images = {img["file_name"]: img for img in coco.loadImgs(coco.getImgIds())}
    assert set(images) == {"dog.jpg", "groceries.jpg"}
    total = 0
    for name, info in images.items():
        assert (out / "images" / name).read_bytes() == (photos / name).read_bytes()  # copied as is
        expected = _expected(predictor, photos / name)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]]))
        assert len(anns) == len(expected) > 0
        for ann, mask in zip(anns, expected):
            decoded = coco.annToMask(ann).astype(bool)
            np.testing.assert_array_equal(decoded, mask)
            assert ann["area"] == int(mask.sum()) and ann["iscrowd"] == 0 and 0 < ann["score"] <= 1
            assert ann["bbox"] == pytest.approx(mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))).tolist())
        total += len(anns)
    assert total == len(coco.getAnnIds())
    assert not (out / "errors.jsonl").exists()


def test_annotate_coco_polygons_load(tmp_path: Path, photos: Path, tiny_weights: Path, predictor) -> None:
    from pycocotools.coco import COCO

    out = tmp_path / "poly"
    assert main(["annotate", str(photos / "dog.jpg"), "-o", str(out), "--segmentation", "polygons",
                 "--model", str(tiny_weights), *INFER, "--max-det", "8"]) == 0  # fmt: skip
    coco = COCO(str(out / "annotations.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    expected = _expected(FastSAMPredictor(predictor.model, imgsz=256, max_det=8), photos / "dog.jpg")
    assert len(anns) == len(expected)
    for ann, mask in zip(anns, expected):
        assert isinstance(ann["segmentation"], list) and all(len(p) >= 6 for p in ann["segmentation"])
        decoded = coco.annToMask(ann).astype(bool)
        # polygons trace the boundary half-way between pixel centres and fill holes: nearly every pixel is back
        assert (decoded & mask).sum() >= 0.9 * mask.sum()


# ------------------------------------------------------------------------------------------ YOLO: oracle and training


@pytest.mark.oracle
def test_annotate_yolo_passes_ultralytics_check_and_trains(tmp_path: Path, photos: Path, tiny_weights: Path) -> None:
    pytest.importorskip("ultralytics")
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    from fastsam.training.data import load_records

    out = tmp_path / "yolo"
    assert main(["annotate", str(photos), "-o", str(out), "--format", "yolo", "--model", str(tiny_weights), *INFER]) == 0
    data = check_det_dataset(str(out / "data.yaml"))
    assert data["nc"] == 1 and data["names"] == {0: "object"}
    assert Path(data["train"]) == (out / "images").resolve()
    lines = 0
    for image in sorted((out / "images").iterdir()):
        label = out / "labels" / (image.stem + ".txt")
        # ultralytics' own per-image label check (segment task), as its dataset loader runs it
        result = verify_image_label((str(image), str(label), "", False, 1, 0, 0, False))
        *_, nm, nf, _empty, nc, msg = result
        assert (nm, nf, nc) == (0, 1, 0), msg
        lines += len(label.read_text().splitlines())
    assert lines > 0
    _, report = load_records(out)  # what fastsam train reads
    assert report.images == 2 and report.annotations == lines
    run = tmp_path / "run"
    code = main(["train", "--data", str(out), "--scale", "n", "--imgsz", "64", "--batch-size", "2", "--epochs", "1",
                 "--max-steps", "2", "--workers", "0", "--device", "cpu", "--out", str(run), "--quiet"])  # fmt: skip
    assert code == 0
    assert (run / "weights" / "last.safetensors").is_file()


# ------------------------------------------------------------------------------------------------- classes, end to end


def test_annotate_classes_with_known_scorer(tmp_path: Path, photos: Path, tiny_model, predictor) -> None:
    settings = AnnotateSettings(classes=("wide", "tall"), overlap="keep", imgsz=256, max_det=20, model="tiny")
    scorer = ShapeScorer()
    summary = annotate_images([photos / "dog.jpg"], tmp_path / "ds", tiny_model, settings, scorer=scorer, progress=False)
    assert summary.annotated == 1 and scorer.calls == 1  # one scorer call for the image
    data = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert list(names.values()) == ["wide", "tall"]
    result = predictor.set_image(photos / "dog.jpg").everything()
    keep = result.masks.reshape(len(result), -1).sum(1) >= 100
    expected = []
    for mask, box in zip(result.masks[keep], result.boxes[keep]):
        height, width = mask.shape  # the crop: the box's pixels, clipped to the image
        x1, y1 = max(0, np.floor(box[0])), max(0, np.floor(box[1]))
        x2, y2 = min(width, np.ceil(box[2])), min(height, np.ceil(box[3]))
        w, h = x2 - x1, y2 - y1
        if w != h:
            expected.append(("wide" if w > h else "tall", mask))
    assert len(data["annotations"]) == len(expected) > 0
    from fastsam.ops.rle import rle_to_mask

    for ann, (name, mask) in zip(data["annotations"], expected):
        assert names[ann["category_id"]] == name
        assert ann["class_score"] > 0.99
        np.testing.assert_array_equal(rle_to_mask([ann["segmentation"]])[0], mask)

    # resolving overlaps: masks of one class are disjoint, each inside a predictor mask of that class
    resolved = AnnotateSettings(classes=("wide", "tall"), overlap="resolve", imgsz=256, max_det=20, model="tiny")
    annotate_images([photos / "dog.jpg"], tmp_path / "res", tiny_model, resolved, scorer=ShapeScorer(), progress=False)
    data = json.loads((tmp_path / "res" / "annotations.json").read_text())
    for cid, name in names.items():
        masks = [rle_to_mask([a["segmentation"]])[0] for a in data["annotations"] if a["category_id"] == cid]
        if masks:
            assert np.stack(masks).sum(0).max() == 1
        for m in masks:
            assert any((m <= e).all() for n, e in expected if n == name)


# --------------------------------------------------------------------------------------------- resume, errors, usage


def test_annotate_resumes_and_logs_bad_images(tmp_path: Path, photos: Path, tiny_weights: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / "dog.jpg", folder / "dog.jpg")
    (folder / "broken.jpg").write_bytes((photos / "dog.jpg").read_bytes()[:2000])
    out = tmp_path / "ds"
    argv = ["annotate", str(folder), "-o", str(out), "--model", str(tiny_weights), *INFER]
    assert main(argv) == 1  # one image failed, the run went on
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [Path(e["path"]).name for e in errors] == ["broken.jpg"] and errors[0]["stage"] == "load"
    first = json.loads((out / "annotations.json").read_text())
    assert [i["file_name"] for i in first["images"]] == ["dog.jpg"]
    capsys.readouterr()

    (folder / "broken.jpg").unlink()
    Image.open(photos / "groceries.jpg").save(folder / "dog.png")  # same stem as dog.jpg
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "annotated 1 image(s)" in err and "1 already done" in err
    second = json.loads((out / "annotations.json").read_text())
    assert sorted(i["file_name"] for i in second["images"]) == ["dog.jpg", "dog_2.png"]
    assert [a for a in second["annotations"] if a["image_id"] == 1] == [a for a in first["annotations"]]
    assert not (out / "errors.jsonl").exists()

    # other settings into the same folder: refused in one line, nothing overwritten
    assert main([*argv, "--min-area", "5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "min_area" in err[0]
    assert json.loads((out / "annotations.json").read_text()) == second


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--classes", ","], "--classes is empty"),
        (["--classes", "cat,Cat"], "twice"),
        (["--text-threshold", "1.5"], "--text-threshold"),
        (["--min-area", "-1"], "--min-area"),
        (["--clip-checkpoint", "x.pt"], "--clip-checkpoint is for --classes"),
        (["--format", "yolo", "--segmentation", "polygons"], "--segmentation is for --format coco"),
        (["--imgsz", "500"], "multiple of 32"),
    ],
)
def test_annotate_usage_errors(tmp_path: Path, photos: Path, extra: list[str], message: str, capsys) -> None:
    assert main(["annotate", str(photos), "-o", str(tmp_path / "ds"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_annotate_needs_out_and_checks_clip_before_images(tmp_path: Path, photos: Path, tiny_weights: Path, capsys) -> None:
    assert main(["annotate", str(photos)]) == 2
    assert "--out DATASET is required" in capsys.readouterr().err
    code = main(["annotate", str(photos), "-o", str(tmp_path / "ds"), "--classes", "dog", "--clip-checkpoint",
                 str(tmp_path / "missing.safetensors"), "--model", str(tiny_weights), *INFER])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "missing.safetensors: no such file" in err[0]
    assert not (tmp_path / "ds").exists()


def test_exif_rotated_photo_is_stored_upright(tmp_path: Path, photos: Path, tiny_weights: Path, predictor) -> None:
    from fastsam.ops.rle import rle_to_mask

    folder = tmp_path / "in"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    with Image.open(photos / "dog.jpg") as img:
        img.save(folder / "phone.jpg", exif=exif, quality=95)
        stored_size = img.size
    out = tmp_path / "ds"
    assert main(["annotate", str(folder), "-o", str(out), "--model", str(tiny_weights), *INFER]) == 0
    data = json.loads((out / "annotations.json").read_text())
    [info] = data["images"]
    with Image.open(out / "images" / "phone.jpg") as saved:
        assert saved.getexif().get(0x0112, 1) == 1  # no rotation left for readers to apply (or to forget)
        assert saved.size == (info["width"], info["height"]) == stored_size[::-1]
    expected = _expected(predictor, folder / "phone.jpg")  # our loader applies the EXIF rotation
    assert [rle_to_mask([a["segmentation"]])[0].tobytes() for a in data["annotations"]] == [m.tobytes() for m in expected]
