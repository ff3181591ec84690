"""``fastsam eval tracking``: HOTA / MOTA / IDF1 equal hand-derived values and TrackEval's own run on its
MOTSChallenge layout; DAVIS J&F equals a direct computation from the definitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

trackeval = pytest.importorskip("trackeval", reason="tracking metrics need TrackEval (the `eval` extra)")
pytest.importorskip("skimage", reason="TrackEval's J&F needs scikit-image (the `eval` extra)")

from fastsam.cli.main import main
from fastsam.evaluation.tracking import evaluate_davis, evaluate_mots
from fastsam.video.davis import save_id_map

H, W = 48, 64


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


def line(frame: int, obj: int, mask: np.ndarray) -> str:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return f"{frame} {obj} 2 {H} {W} {rle['counts'].decode()}"


def hand_case() -> tuple[list[str], list[str]]:
    """Two objects over 10 frames, masks exact. The prediction follows A as id 7 throughout, B as id 8 for frames 1-5
    and id 9 for frames 6-10 (one ID switch), and adds a false blob (id 99) on frame 3."""
    a, b, blob = rect(2, 2, 20, 20), rect(30, 10, 50, 40), rect(55, 40, 60, 45)
    gt = [line(t, 1, a) for t in range(1, 11)] + [line(t, 2, b) for t in range(1, 11)]
    pred = [line(t, 7, a) for t in range(1, 11)] + [line(t, 8 if t <= 5 else 9, b) for t in range(1, 11)]
    return gt, pred + [line(3, 99, blob)]


def test_metrics_equal_the_values_derived_by_hand(tmp_path: Path):
    gt, pred = hand_case()
    (tmp_path / "gt.txt").write_text("\n".join(gt) + "\n")
    (tmp_path / "pred.txt").write_text("\n".join(pred) + "\n")
    m = evaluate_mots(tmp_path / "pred.txt", tmp_path / "gt.txt")["combined"]
    # Detection: 20 true matches, no miss, 1 false positive, all at IoU 1 (so at every HOTA threshold).
    assert m["DetA"] == pytest.approx(20 / 21) and m["LocA"] == pytest.approx(1.0)
    # Association: A's 10 matches score 10/10; B's 10 matches score 5 / (5 + 5 other-id frames) = 0.5.
    assert m["AssA"] == pytest.approx((10 * 1.0 + 10 * 0.5) / 20)
    assert m["HOTA"] == pytest.approx(np.sqrt(20 / 21 * 0.75))
    # CLEAR: MOTA = 1 - (FN + FP + IDSW) / GT = 1 - (0 + 1 + 1) / 20.
    assert (m["IDSW"], m["FP"], m["FN"]) == (1, 1, 0) and m["MOTA"] == pytest.approx(0.9)
    # Identity: best one-to-one ids A-7 (10), B-8 (5): IDTP 15, IDFN 5, IDFP 5 (id 9) + 1 (id 99).
    assert (m["IDTP"], m["IDFN"], m["IDFP"]) == (15, 5, 6) and m["IDF1"] == pytest.approx(30 / 41)


def test_metrics_equal_trackevals_own_run_on_its_mots_challenge_layout(tmp_path: Path):
    """Two sequences laid out as TrackEval's MOTSChallenge example data (seqmaps, seqinfo.ini, MOTS-train split)
    and evaluated by TrackEval's Evaluator with that layout, against ``fastsam eval tracking`` on the same files."""
    gt_root, trackers = tmp_path / "gt" / "mot_challenge", tmp_path / "trackers" / "mot_challenge"
    rng = np.random.default_rng(3)
    sequences = {"MOTS20-91": hand_case()}
    gt2, pred2 = [], []
    for t in range(1, 16):  # moving boxes; the prediction is shifted (partial IoU) and loses one object for a while
        a, b = rect(t, 5, t + 16, 25), rect(60 - 2 * t, 24, 64 - 2 * t + 10 if t < 5 else 60 - 2 * t + 12, 44)
        gt2 += [line(t, 2001, a), line(t, 2002, b & ~a)]
        dx = int(rng.integers(0, 3))
        pred2.append(line(t, 1, np.roll(a, dx, axis=1)))
        if not 6 <= t <= 8:
            pred2.append(line(t, 2 if t < 6 else 3, b & ~np.roll(a, dx, axis=1)))
    sequences["MOTS20-92"] = (gt2, pred2)
    (gt_root / "seqmaps").mkdir(parents=True)
    (gt_root / "seqmaps" / "MOTS-train.txt").write_text("name\n" + "\n".join(sequences) + "\n")
    for seq, (gt, pred) in sequences.items():
        folder = gt_root / "MOTS-train" / seq
        (folder / "gt").mkdir(parents=True)
        (folder / "gt" / "gt.txt").write_text("\n".join(gt) + "\n")
        length = max(int(x.split()[0]) for x in gt)
        (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={seq}\nseqLength={length}\nimWidth={W}\nimHeight={H}\n")
        data = trackers / "MOTS-train" / "mine" / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / f"{seq}.txt").write_text("\n".join(pred) + "\n")
    eval_config = {"PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False,
                   "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "LOG_ON_ERROR": None}  # fmt: skip
    dataset = trackeval.datasets.MOTSChallenge(
        {"GT_FOLDER": str(gt_root), "TRACKERS_FOLDER": str(trackers), "PRINT_CONFIG": False}
    )
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()]
    results, _ = trackeval.Evaluator(eval_config).evaluate([dataset], metrics)
    theirs = results["MOTSChallenge"]["mine"]
    code = main(["eval", "tracking", "--pred", str(data), "--gt", str(gt_root / "MOTS-train"), "--out", str(tmp_path / "ev")])
    assert code == 0
    ours = json.loads((tmp_path / "ev" / "tracking.json").read_text())
    for seq in [*sequences, "COMBINED_SEQ"]:
        mine = ours["combined"] if seq == "COMBINED_SEQ" else ours["sequences"][seq]
        their = theirs[seq]["pedestrian"]
        assert mine["HOTA"] == pytest.approx(float(np.mean(their["HOTA"]["HOTA"])))
        assert mine["AssA"] == pytest.approx(float(np.mean(their["HOTA"]["AssA"])))
        assert mine["MOTA"] == pytest.approx(their["CLEAR"]["MOTA"])
        assert mine["IDSW"] == their["CLEAR"]["IDSW"]
        assert mine["IDF1"] == pytest.approx(their["Identity"]["IDF1"])
    assert 0.3 < ours["sequences"]["MOTS20-92"]["HOTA"] < 0.95  # a case that is neither perfect nor empty
    assert "HOTA" in (tmp_path / "ev" / "tracking.md").read_text()


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """DAVIS's boundary map (Martin et al.): a pixel is on the boundary if it differs from its right, lower or
    lower-right neighbour (only the right one on the last row, the lower one on the last column)."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1], s[:-1, :], se[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def direct_f(pred: np.ndarray, gt: np.ndarray) -> float:
    """Boundary F-measure with the DAVIS tolerance: ceil(0.008 x image diagonal) pixels, a disk."""
    r = int(np.ceil(0.008 * np.hypot(*gt.shape)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx**2 + yy**2 <= r * r
    fb, gb = seg2bmap(pred), seg2bmap(gt)
    if not fb.any() and not gb.any():
        return 1.0
    if not fb.any() or not gb.any():
        return 0.0
    precision = (fb & ndimage.binary_dilation(gb, disk)).sum() / fb.sum()
    recall = (gb & ndimage.binary_dilation(fb, disk)).sum() / gb.sum()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def direct_j(pred: np.ndarray, gt: np.ndarray) -> float:
    union = (pred | gt).sum()
    return 1.0 if union == 0 else float((pred & gt).sum() / union)


def test_davis_j_and_f_equal_a_direct_computation(tmp_path: Path):
    h, w = 90, 120
    yy, xx = np.mgrid[:h, :w]
    truth, guess = [], []
    for t in range(6):
        a = (xx - 30 - 4 * t) ** 2 + (yy - 40) ** 2 < 15**2
        b = (np.abs(xx - 90) < 12) & (np.abs(yy - 30 - 3 * t) < 18) if t != 4 else np.zeros((h, w), bool)
        truth.append({1: a & ~b, 2: b})
        pa = np.roll(a, t % 3, axis=1)  # a little off
        pb = ndimage.binary_erosion(b, iterations=2) if t != 2 else np.zeros((h, w), bool)  # missed on frame 2
        guess.append({1: pa & ~pb, 2: pb})
    for t, (objects, predicted) in enumerate(zip(truth, guess)):
        for folder, masks in ((tmp_path / "davis" / "Annotations" / "480p" / "walk", objects),
                              (tmp_path / "pred" / "walk", predicted)):  # fmt: skip
            labels = np.zeros((h, w), np.uint8)
            for k, m in masks.items():
                labels[m] = k
            save_id_map(labels, folder / f"{t:05d}.png")
    (tmp_path / "davis" / "JPEGImages" / "480p" / "walk").mkdir(parents=True)
    got = evaluate_davis(tmp_path / "pred", tmp_path / "davis")["combined"]
    j = [np.mean([direct_j(g[k], o[k]) for g, o in zip(guess, truth)]) for k in (1, 2)]
    f = [np.mean([direct_f(g[k], o[k]) for g, o in zip(guess, truth)]) for k in (1, 2)]
    assert got["J-Mean"] == pytest.approx(np.mean(j), abs=1e-9)
    assert got["F-Mean"] == pytest.approx(np.mean(f), abs=1e-9)
    assert got["J&F"] == pytest.approx((np.mean(j) + np.mean(f)) / 2, abs=1e-9)
    assert 0.5 < got["J&F"] < 0.99
    code = main(["eval", "tracking", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "davis"),
                 "--out", str(tmp_path / "ev")])  # fmt: skip
    assert code == 0 and json.loads((tmp_path / "ev" / "tracking.json").read_text())["benchmark"] == "davis"
    assert np.asarray(Image.open(tmp_path / "pred" / "walk" / "00000.png")).max() == 2


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys):
    gt, pred = hand_case()
    (tmp_path / "gt.txt").write_text("\n".join(gt) + "\n")
    overlapping = pred + [line(1, 50, rect(0, 0, 10, 10))]  # overlaps id 7 on frame 1: not valid MOTS
    (tmp_path / "pred.txt").write_text("\n".join(overlapping) + "\n")
    assert main(["eval", "tracking", "--pred", str(tmp_path / "pred.txt"), "--gt", str(tmp_path / "gt.txt"),
                 "--out", str(tmp_path / "ev")]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "overlapping masks" in err and err.count("\n") == 1
    assert main(["eval", "tracking", "--pred", str(tmp_path / "nope.txt"), "--gt", str(tmp_path / "gt.txt")]) == 2
    (tmp_path / "junk.txt").write_text("not a mots line\n")
    assert main(["eval", "tracking", "--pred", str(tmp_path / "junk.txt"), "--gt", str(tmp_path / "gt.txt"),
                 "--out", str(tmp_path / "ev")]) == 1  # fmt: skip
    assert "not a MOTS line" in capsys.readouterr().err
