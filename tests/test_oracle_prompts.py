"""Differential tests of prompt selection against ultralytics 8.4.190 (``FastSAMPredictor.prompt``).

ultralytics is a test-only oracle: it runs only in its own subprocess (``tests/oracle/ultralytics_prompt_oracle.py``,
with ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False``, a private ``YOLO_CONFIG_DIR`` and one torch thread); this
process never imports it.

Set-up: ``tests/oracle/ultralytics_oracle.py make-checkpoint`` builds a random-weight FastSAM-s-shaped checkpoint
(scale s, reg_max 16, calibrated on the test photos). The prompt oracle runs everything mode on two photos at
imgsz 640 (conf 0.4, iou 0.9, max_det 300, retina masks) and writes the masks; prompts are chosen from those
masks (boxes around a few masks' tight boxes, slightly enlarged; points inside masks, on the pixel covered by
the most masks, on an uncovered pixel, on the image edge), then the oracle runs everything mode again and calls
``prompt`` for every case, writing both the everything-mode masks it prompted on and the selected masks.

Checks:
* selection alone: our :class:`SegmentedImage` is built from the ORACLE's own everything-mode masks, boxes and
  scores, so any difference is in prompt selection. Single box: ``boxes([box])`` picks the same mask
  (same index, pixel-identical). Several boxes: ultralytics returns the union of the picks, ours one mask per
  box: the sets must be equal. Points (``mode="ultralytics"``) and box + points together
  (``prompt(..., mode="ultralytics")``): the same masks, same order.
* end to end: our own pipeline (our checkpoint loading, network, post-processing) on the same checkpoint and
  photo (cat.jpg: both pre-processings give the same letterboxed input there), prompted with the same cases,
  gives the oracle's answers: same number of masks, paired one-to-one with mask IoU >= 0.99.
  On dog.jpg OpenCV's fixed-point resize and ours differ by a grey level on some pixels, which a random-weight
  network amplifies into different masks (see test_oracle.py), so the end-to-end check does not use it.
By design ours answers a box overlapping no mask with an empty mask (index -1) where ultralytics returns an
arbitrary mask: every box here contains a mask.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.oracle

REPO = Path(__file__).resolve().parents[1]
ORACLE_DIR = Path(__file__).resolve().parent / "oracle"
CHECKPOINT_SCRIPT = ORACLE_DIR / "ultralytics_oracle.py"
PROMPT_SCRIPT = ORACLE_DIR / "ultralytics_prompt_oracle.py"
SHARED_DIR = Path(os.environ.get("FASTSAM_SHARED", REPO / ".." / "shared")).resolve()

IMAGES = ("segment-anything/dog.jpg", "fastsam/cat.jpg")
E2E_IMAGE = 1  # cat.jpg: see the module docstring
IMGSZ = 640
SETTINGS = dict(conf=0.4, iou=0.9, max_det=300)  # official FastSAM CLI settings
SCALE, REG_MAX, SEED = "s", 16, 1
E2E_MASK_IOU = 0.99
TIMEOUT = 600


# ----------------------------------------------------------------------------------------------------------
# oracle subprocesses
# ----------------------------------------------------------------------------------------------------------
class Oracle:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        cfg = tmp / "yolo_config"
        cfg.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_CONFIG_DIR=str(cfg), YOLO_VERBOSE="False")
        env["OMP_NUM_THREADS"] = "1"
        env["FASTSAM_SHARED"] = str(SHARED_DIR)
        self.env = env

    def run(self, script: Path, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, str(script), *args], env=self.env, capture_output=True, text=True, timeout=TIMEOUT
        )
        if proc.returncode != 0:
            raise AssertionError(f"{script.name} {args[:1]} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc.stdout

    def prompt(self, weights: Path, images: tuple[Path, ...], out: Path, cases: Path | None = None) -> Path:
        self.run(
            PROMPT_SCRIPT, "--weights", str(weights), "--images", *map(str, images), "--imgsz", str(IMGSZ),
            "--conf", str(SETTINGS["conf"]), "--iou", str(SETTINGS["iou"]), "--max-det", str(SETTINGS["max_det"]),
            "--retina", "1", "--out", str(out), *(["--cases", str(cases)] if cases else []),
        )  # fmt: skip
        return out


def unpack(data, prefix: str) -> np.ndarray:
    shape = tuple(int(v) for v in data[prefix + "_shape"])
    return np.unpackbits(data[prefix + "_packed"], count=int(np.prod(shape))).reshape(shape).astype(bool)


def report(label: str, stats) -> None:
    print(f"[oracle-prompts] {label}: {stats}")


# ----------------------------------------------------------------------------------------------------------
# choosing prompts from the everything-mode masks
# ----------------------------------------------------------------------------------------------------------
def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _inner_point(mask: np.ndarray) -> list[float]:
    """The mask pixel nearest the mask's centroid, as x, y at the pixel centre."""
    ys, xs = np.nonzero(mask)
    j = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return [float(xs[j]) + 0.5, float(ys[j]) + 0.5]


def _enlarged_box(mask: np.ndarray, hw: tuple[int, int]) -> list[float]:
    """The mask's tight box grown by 5% of its size + 2 px on each side (fractional), clipped to the image."""
    h, w = hw
    x1, y1, x2, y2 = _tight_box(mask)
    px, py = 0.05 * (x2 - x1) + 2.3, 0.05 * (y2 - y1) + 2.3
    return [max(0.0, x1 - px), max(0.0, y1 - py), min(float(w), x2 + px), min(float(h), y2 + py)]


def choose_cases(masks: np.ndarray) -> list[dict]:
    """Prompt cases that exercise the selection rules on this image's masks."""
    n, h, w = masks.shape
    assert n >= 8, f"only {n} everything-mode masks: the random checkpoint is degenerate for prompt tests"
    areas = masks.reshape(n, -1).sum(1)
    cover = masks.sum(0, dtype=np.int32)
    by_area = np.argsort(areas, kind="stable")
    picks = list(dict.fromkeys(int(by_area[int(q * (n - 1))]) for q in (0.2, 0.45, 0.7, 0.95)))

    cases: list[dict] = []
    # boxes: around a few masks, the whole image, one hanging over the image border, and several at once
    boxes = [_enlarged_box(masks[m], (h, w)) for m in picks]
    for m, box in zip(picks, boxes):
        cases.append({"name": f"box_around_mask{m}", "kind": "box", "bboxes": [box]})
    cases.append({"name": "box_whole_image", "kind": "box", "bboxes": [[0.0, 0.0, float(w), float(h)]]})
    overhang = [-15.5, -12.25, w * 0.55 + 0.4, h * 0.6 + 0.7]
    cases.append({"name": "box_over_border", "kind": "box", "bboxes": [overhang]})
    cases.append({"name": "boxes_multi", "kind": "boxes", "bboxes": [*boxes[:3], overhang]})

    # points
    py, px = np.unravel_index(int(np.argmax(cover)), cover.shape)
    dense = [float(px) + 0.5, float(py) + 0.5]  # the pixel inside the most masks
    inner = {m: _inner_point(masks[m]) for m in picks}
    for m in picks:
        cases.append({"name": f"fg_inside_mask{m}", "kind": "points", "points": [inner[m]], "labels": [1]})
    cases.append({"name": f"fg_in_{int(cover[py, px])}_masks", "kind": "points", "points": [dense], "labels": [1]})
    uncovered = np.argwhere(cover == 0)
    if len(uncovered):
        y0, x0 = uncovered[len(uncovered) // 2]
        cases.append({"name": "fg_in_no_mask", "kind": "points", "points": [[x0 + 0.5, y0 + 0.5]], "labels": [1]})
    cases.append({"name": "fg_two", "kind": "points", "points": [dense, inner[picks[0]]], "labels": [1, 1]})
    # background point inside the largest mask holding `dense` but outside the smallest one: removes the large one
    holding = np.flatnonzero(masks[:, py, px])
    large = int(holding[np.argmax(areas[holding])])
    small = int(holding[np.argmin(areas[holding])])
    assert large != small, "the densest pixel is inside a single mask: cannot build a foreground/background case"
    bg = _inner_point(masks[large] & ~masks[small])
    cases.append({"name": "fg_bg", "kind": "points", "points": [dense, bg], "labels": [1, 0]})
    cases.append({"name": "bg_then_fg", "kind": "points", "points": [bg, dense], "labels": [0, 1]})
    cases.append(
        {"name": "fg_fg_bg", "kind": "points", "points": [dense, inner[picks[-1]], bg], "labels": [1, 1, 0]}
    )
    cases.append({"name": "bg_only", "kind": "points", "points": [dense], "labels": [0]})
    cases.append({"name": "bg_only_two", "kind": "points", "points": [dense, inner[picks[1]]], "labels": [0, 0]})
    cases.append(
        {"name": "fg_on_image_edges", "kind": "points", "points": [[float(w), float(h)], [0.0, 0.0], [float(w), 0.0]],
         "labels": [1, 1, 1]}
    )  # fmt: skip
    # box and points in one call
    cases.append({"name": "box_and_points", "kind": "mixed", "bboxes": [boxes[-1]], "points": [dense, bg], "labels": [1, 0]})
    return cases


# ----------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> Oracle:
    for script in (CHECKPOINT_SCRIPT, PROMPT_SCRIPT):
        if not script.is_file():
            pytest.skip(f"oracle script missing: {script}")
    o = Oracle(tmp_path_factory.mktemp("prompt_oracle"))
    probe = subprocess.run(
        [sys.executable, "-c", "import ultralytics, cv2; print(ultralytics.__version__)"],
        env=o.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if probe.returncode != 0:
        why = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit code {probe.returncode}"
        pytest.skip(f"ultralytics (the test-only oracle: pip install -e '.[test]') is not importable in a subprocess: {why}")
    version = probe.stdout.strip().splitlines()[-1]
    if version != "8.4.190":
        pytest.skip(f"the oracle is pinned to ultralytics 8.4.190, found {version}")
    return o


@pytest.fixture(scope="module")
def photos() -> tuple[Path, ...]:
    paths = tuple(SHARED_DIR / "data" / "images" / p for p in IMAGES)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"real test photos not found: {', '.join(missing)} (set FASTSAM_SHARED to the shared folder)")
    return paths


@pytest.fixture(scope="module")
def weights(oracle: Oracle, photos) -> Path:
    out = oracle.tmp / f"fastsam-{SCALE}-release.pt"
    stdout = oracle.run(
        CHECKPOINT_SCRIPT, "make-checkpoint", "--scale", SCALE, "--reg-max", str(REG_MAX), "--seed", str(SEED),
        "--format", "release", "--out", str(out), "--calib-size", str(IMGSZ), "--calib-images", *map(str, photos),
    )  # fmt: skip
    assert stdout.strip() == str(out.resolve()), f"oracle stdout not clean: {stdout!r}"
    return out


@pytest.fixture(scope="module")
def prompted(oracle: Oracle, weights: Path, photos) -> tuple[dict, list[list[dict]]]:
    """(oracle output with the prompt answers, the cases per image)."""
    first = np.load(oracle.prompt(weights, photos, oracle.tmp / "everything.npz"))
    cases = [choose_cases(unpack(first, f"img{i}_masks")) for i in range(len(photos))]
    cases_path = oracle.tmp / "cases.json"
    cases_path.write_text(json.dumps({str(i): c for i, c in enumerate(cases)}))
    second = np.load(oracle.prompt(weights, photos, oracle.tmp / "prompted.npz", cases_path))
    data = {k: second[k] for k in second.files}
    for i in range(len(photos)):
        assert np.array_equal(first[f"img{i}_masks_packed"], data[f"img{i}_masks_packed"]), (
            "the oracle's everything mode is not deterministic: prompts were chosen on other masks"
        )
        assert int(data[f"img{i}_ncases"]) == len(cases[i])
    return data, cases


def _segmented(data: dict, i: int):
    from fastsam.predictor import SegmentedImage
    from fastsam.results import SegmentationResult

    masks = unpack(data, f"img{i}_masks")
    hw = tuple(int(v) for v in data[f"img{i}_orig_shape"])
    assert masks.shape[1:] == hw
    result = SegmentationResult(masks, data[f"img{i}_boxes"].astype(np.float32), data[f"img{i}_scores"].astype(np.float32), hw)
    return SegmentedImage(result)


@pytest.fixture(scope="module")
def oracle_sessions(prompted) -> dict:
    data, cases = prompted
    return {i: _segmented(data, i) for i in range(len(cases))}


# ----------------------------------------------------------------------------------------------------------
# our answers
# ----------------------------------------------------------------------------------------------------------
def our_answer(seg, case: dict) -> tuple[np.ndarray, np.ndarray]:
    """(indices, masks) of our selection, as a set in index order (ultralytics' form of the answer)."""
    kind = case["kind"]
    if kind == "box":
        r = seg.boxes(case["bboxes"])
        assert len(r) == 1
        return r.indices, r.masks
    if kind == "boxes":
        r = seg.boxes(case["bboxes"])
        assert len(r) == len(case["bboxes"]), "ours answers one mask per box"
        assert (r.indices >= 0).all(), f"a box got no mask: {r.indices.tolist()}"
        chosen = np.unique(r.indices)
        return chosen, seg.pick(chosen).masks
    if kind == "points":
        r = seg.points(case["points"], case["labels"], mode="ultralytics")
        return r.indices, r.masks
    if kind == "mixed":
        r = seg.prompt(points=case["points"], labels=case["labels"], boxes=case["bboxes"], mode="ultralytics")
        return r.indices, r.masks
    raise ValueError(kind)


def _near_tie_note(seg, case: dict, theirs: np.ndarray) -> str:
    """For a failing box case: the float64 box-IoU scores of both picks (float32 near-ties explain a mismatch)."""
    if case["kind"] not in ("box", "boxes"):
        return ""
    from fastsam.prompts.validation import box_pixels, validate_boxes

    px = box_pixels(validate_boxes(case["bboxes"], seg.image_size), seg.image_size)
    inter = seg.index.box_counts(px).astype(np.float64)
    area = ((px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1])).astype(np.float64)
    iou = inter / (area[:, None] + seg.index.areas[None] - inter)
    top = [np.argsort(-row, kind="stable")[:3].tolist() for row in iou]
    return f"; box IoU top-3 per box {[[(j, float(row[j])) for j in t] for t, row in zip(top, iou)]}, theirs {theirs.tolist()}"


# ----------------------------------------------------------------------------------------------------------
# 1. selection alone, on the oracle's own everything-mode masks
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image", range(len(IMAGES)), ids=[Path(p).stem for p in IMAGES])
@pytest.mark.parametrize("kind", ["box", "boxes", "points", "mixed"])
def test_selection_matches_ultralytics(prompted, oracle_sessions, image, kind):
    data, cases = prompted
    seg = oracle_sessions[image]
    everything = seg.masks
    checked = 0
    for k, case in enumerate(cases[image]):
        if case["kind"] != kind:
            continue
        assert str(data[f"img{image}_case{k}_name"]) == case["name"]
        ref_idx = data[f"img{image}_case{k}_indices"]
        ref_masks = unpack(data, f"img{image}_case{k}_masks")
        # the oracle's answer is made of its own everything-mode masks
        assert np.array_equal(ref_masks, everything[ref_idx]), f"{case['name']}: oracle output inconsistent"
        idx, masks = our_answer(seg, case)
        label = f"{IMAGES[image]} {case['name']} {case.get('bboxes', '')} {case.get('points', '')} {case.get('labels', '')}"
        assert idx.tolist() == ref_idx.tolist(), (
            f"{label}: ours selects masks {idx.tolist()}, ultralytics {ref_idx.tolist()}" + _near_tie_note(seg, case, ref_idx)
        )
        assert masks.shape == ref_masks.shape and np.array_equal(masks, ref_masks), f"{label}: selected masks differ"
        report(f"{Path(IMAGES[image]).name} {case['name']}", {"selected": len(ref_idx), "indices": ref_idx[:8].tolist()})
        checked += 1
    assert checked > 0, f"no {kind} case for {IMAGES[image]}"


def test_cases_are_meaningful(prompted):
    """The chosen prompts select something, and background points change the answer."""
    data, cases = prompted
    for i, image_cases in enumerate(cases):
        n = int(data[f"img{i}_masks_shape"][0])
        got = {c["name"]: data[f"img{i}_case{k}_indices"] for k, c in enumerate(image_cases)}
        dense = next(name for name in got if name.startswith("fg_in_") and name.endswith("_masks"))
        assert len(got[dense]) >= 2, f"{IMAGES[i]}: the densest pixel selects {len(got[dense])} mask(s)"
        assert 0 < len(got["fg_bg"]) < len(got[dense]), f"{IMAGES[i]}: the background point removes nothing"
        assert 0 < len(got["bg_only"]) < n
        assert all(len(v) for name, v in got.items() if name.startswith(("box", "fg_inside")))
        report(f"{Path(IMAGES[i]).name} cases", {"masks": n, "cases": len(image_cases)})


# ----------------------------------------------------------------------------------------------------------
# 2. end to end: our own pipeline on the same checkpoint and photo, prompted the same way
# ----------------------------------------------------------------------------------------------------------
def _match(ours: np.ndarray, theirs: np.ndarray) -> list[float]:
    """One-to-one pairing (same position first, then any unused mask) by mask IoU; the pairs' IoUs."""
    ious, used = [], set()
    flat_o = ours.reshape(len(ours), int(np.prod(ours.shape[1:])))
    for j, t in enumerate(theirs.reshape(len(theirs), int(np.prod(theirs.shape[1:])))):
        order = [j] + [i for i in range(len(ours)) if i != j] if j < len(ours) else list(range(len(ours)))
        best, best_iou = None, -1.0
        for i in order:
            if i in used:
                continue
            inter = np.count_nonzero(flat_o[i] & t)
            union = np.count_nonzero(flat_o[i] | t)
            iou = inter / union if union else 1.0
            if iou > best_iou:
                best, best_iou = i, iou
            if iou >= E2E_MASK_IOU:
                break
        if best is None:
            break
        used.add(best)
        ious.append(best_iou)
    return ious


def test_end_to_end_with_our_pipeline(prompted, weights, photos):
    import torch

    from fastsam.engine import FastSAM
    from fastsam.predictor import SegmentedImage

    data, cases = prompted
    i = E2E_IMAGE
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        [ours] = FastSAM(weights, device="cpu", precision="fp32").predict(str(photos[i]), imgsz=IMGSZ, retina=True, **SETTINGS)
    finally:
        torch.set_num_threads(threads)
    hw = tuple(int(v) for v in data[f"img{i}_orig_shape"])
    assert ours.image_size == hw
    n_ref = int(data[f"img{i}_masks_shape"][0])
    seg = SegmentedImage(ours)
    stats = {"everything_masks_ours": len(ours), "everything_masks_ultralytics": n_ref}
    worst = 1.0
    for k, case in enumerate(cases[i]):
        ref_masks = unpack(data, f"img{i}_case{k}_masks")
        _, masks = our_answer(seg, case)
        label = f"end to end, {IMAGES[i]} {case['name']}"
        assert len(masks) == len(ref_masks), f"{label}: {len(masks)} masks (ours) vs {len(ref_masks)} (ultralytics); {stats}"
        ious = _match(masks, ref_masks)
        assert len(ious) == len(ref_masks) and min(ious, default=1.0) >= E2E_MASK_IOU, (
            f"{label}: answers differ, paired mask IoUs {sorted(ious)[:5]}; {stats}"
        )
        worst = min(worst, min(ious, default=1.0))
    stats.update(cases=len(cases[i]), min_answer_iou=round(worst, 6))
    report(f"end to end {Path(IMAGES[i]).name}", stats)
