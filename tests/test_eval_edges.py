"""BSDS boundary benchmark (thinning, pixel matching, ODS/OIS/AP/R50), the masks -> edges recipe and ``fastsam eval
edges``. The benchmark is checked against the original MATLAB benchmark's own self-test outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from fastsam.evaluation import assignment
from fastsam.evaluation.assignment import min_cost_matching
from fastsam.evaluation.boundary_benchmark import evaluate_boundaries
from fastsam.evaluation.boundary_counts import benchmark_thresholds, boundary_counts
from fastsam.evaluation.boundary_metrics import average_precision, best_f, recall_at_precision, summarize
from fastsam.evaluation.bsds_data import find_edge_maps, list_bsds, load_boundaries, load_edge_map
from fastsam.evaluation.correspond import correspond_pixels, matching_radius
from fastsam.evaluation.edges import masks_to_edges
from fastsam.evaluation.thinning import thin

# boundaryBench(..., nthresh=5) outputs of the original MATLAB benchmark on its self-test data
MATLAB_ODS_F, MATLAB_OIS_F, MATLAB_AP = 0.704628, 0.708698, 0.307627


def _cli(argv: list[str]) -> int:
    """Run ``fastsam eval ...`` through the module's own parser (main.py is wired separately)."""
    from fastsam.cli import evaluate

    parser = argparse.ArgumentParser(prog="fastsam")
    evaluate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


@pytest.fixture(scope="module")
def bench_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "bsds500_bench"
    if not (path / "test_2" / "eval_bdry.txt").is_file():
        pytest.skip(f"BSDS benchmark self-test data not found at {path}")
    return path


@pytest.fixture(scope="module")
def bsds_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "bsds500"
    if not (path / "groundTruth" / "test").is_dir():
        pytest.skip(f"BSDS500 not found at {path}")
    return path


@pytest.fixture(scope="module")
def bench_result(bench_dir: Path):
    items = list_bsds(bench_dir)
    files = find_edge_maps(bench_dir / "png", [it.image_id for it in items])
    return evaluate_boundaries(
        {k: str(v) for k, v in files.items()}, {it.image_id: it.ground_truth for it in items}, nthresh=5, workers=1
    )


# --- the original benchmark's self-test ------------------------------------------------------------------------


def test_reproduces_matlab_summary(bench_result, bench_dir: Path) -> None:
    s = bench_result.scores
    ref = np.loadtxt(bench_dir / "test_2" / "eval_bdry.txt")  # ODS_T ODS_R ODS_P ODS_F OIS_R OIS_P OIS_F AP
    assert s.n_images == 5
    assert round(s.ods_f, 3) == round(MATLAB_ODS_F, 3) and abs(s.ods_f - MATLAB_ODS_F) < 1e-4
    assert round(s.ois_f, 3) == round(MATLAB_OIS_F, 3) and abs(s.ois_f - MATLAB_OIS_F) < 1e-4
    assert round(s.ap, 3) == round(MATLAB_AP, 3) and abs(s.ap - MATLAB_AP) < 2e-4
    assert s.ods_threshold == pytest.approx(ref[0], abs=1e-6)
    np.testing.assert_allclose(
        [s.ods_recall, s.ods_precision, s.ois_recall, s.ois_precision], ref[[1, 2, 4, 5]], atol=1e-3
    )


def test_reproduces_matlab_per_threshold_and_per_image(bench_result, bench_dir: Path) -> None:
    thr = np.loadtxt(bench_dir / "test_2" / "eval_bdry_thr.txt")  # T R P F
    curve = bench_result.curve
    np.testing.assert_allclose(curve.thresholds, thr[:, 0], atol=1e-6)
    np.testing.assert_allclose(curve.recall, thr[:, 1], atol=1e-3)
    np.testing.assert_allclose(curve.precision, thr[:, 2], atol=1e-3)
    np.testing.assert_allclose(curve.f, thr[:, 3], atol=1e-3)
    img = np.loadtxt(bench_dir / "test_2" / "eval_bdry_img.txt")  # index T R P F (best per image)
    best = np.array([bench_result.best[k] for k in sorted(bench_result.best)])
    np.testing.assert_allclose(best[:, 0], img[:, 1], atol=1e-6)  # same best threshold for every image
    np.testing.assert_allclose(best[:, 1:], img[:, 2:], atol=2e-3)


def test_thinned_pixel_counts_match_matlab(bench_dir: Path) -> None:
    """The thinned machine map has exactly as many pixels as MATLAB's bwmorph 'thin' left (from the reference P)."""
    img = np.loadtxt(bench_dir / "test_2" / "eval_bdry_img.txt")
    for row, stem in zip(img, ["2018", "3063", "5096", "6046", "8068"]):
        edges = load_edge_map(bench_dir / "png" / f"{stem}.png")
        counts = boundary_counts(edges, load_boundaries(bench_dir / "groundTruth" / f"{stem}.mat"), 5)
        t = int(np.argmin(np.abs(counts.thresholds - row[1])))
        sum_p = int(counts.sum_p[t])
        # the reference precision is an exact ratio cnt_p / sum_p: some integer cnt_p over our sum_p must give it
        assert abs(round(row[3] * sum_p) / sum_p - row[3]) < 1e-6, stem


# --- self-consistency on human ground truth -----------------------------------------------------------------


def test_ground_truth_self_consistency(bsds_dir: Path) -> None:
    items = list_bsds(bsds_dir, "test", limit=3)
    against_others, against_itself = [], []
    for item in items:
        humans = load_boundaries(item.ground_truth)
        against_others.append(boundary_counts(humans[0].astype(float), humans[1:], [0.5]))
        against_itself.append(boundary_counts(humans[0].astype(float), humans[:1], [0.5]))
    for c in against_itself:  # a perfect prediction: recall and precision 1 (the human maps are already thin)
        assert c.cnt_r[0] == c.sum_r[0] > 0 and c.cnt_p[0] == c.sum_p[0] == c.sum_r[0]
    s = summarize(against_others)
    assert s.ods_f > 0.65 and s.ods_precision > 0.8  # humans agree well with each other (BSDS human F ~ 0.8)


# --- building blocks ----------------------------------------------------------------------------------------


def test_thresholds_are_the_benchmarks() -> None:
    np.testing.assert_allclose(benchmark_thresholds(5), np.arange(1, 6) / 6)
    np.testing.assert_allclose(benchmark_thresholds(99), np.linspace(0.01, 0.99, 99))
    with pytest.raises(ValueError):
        benchmark_thresholds(0)


def test_thinning_gives_one_pixel_strokes() -> None:
    bar = np.zeros((12, 30), bool)
    bar[4:8, 3:27] = True
    line = thin(bar)
    assert line.sum() > 15 and (line.sum(0) <= 1).all() and line[~bar].sum() == 0
    rng = np.random.default_rng(0)
    for _ in range(10):
        blobs = ndimage.gaussian_filter(rng.random((60, 80)), 2) > 0.5
        skeleton = thin(blobs)
        assert not (skeleton & ~blobs).any()
        assert np.array_equal(thin(skeleton), skeleton)  # idempotent
        structure = np.ones((3, 3))
        assert ndimage.label(skeleton, structure)[1] == ndimage.label(blobs, structure)[1]  # connectivity kept
        # no 2x2 block of foreground survives (strokes are one pixel wide)
        assert not (skeleton[:-1, :-1] & skeleton[1:, :-1] & skeleton[:-1, 1:] & skeleton[1:, 1:]).any()


@pytest.mark.parametrize("compiled", [True, False])
def test_min_cost_matching_is_exact(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if compiled:
        pytest.importorskip("numba", reason="numba (the eval extra) not installed: the compiled kernel is optional")
    monkeypatch.setenv("FASTSAM_NO_NUMBA", "0" if compiled else "1")
    monkeypatch.setattr(assignment, "_kernel", None)
    assert assignment.numba_enabled() is compiled
    rng = np.random.default_rng(1)
    for trial in range(150):
        na, nb = rng.integers(1, 9, size=2)
        rows, cols = np.nonzero(rng.random((na, nb)) < 0.45)
        costs = rng.integers(0, 4, rows.size).astype(float) if trial % 2 else rng.random(rows.size) * 3
        unmatched = float(rng.choice([0.5, 3.0, 100.0]))
        match = min_cost_matching(rows, cols, costs, na, nb, unmatched)
        assert len(set(match[match >= 0])) == int((match >= 0).sum())
        lookup = {(r, c): d for r, c, d in zip(rows, cols, costs)}
        ours = sum(lookup[(i, j)] if j >= 0 else unmatched for i, j in enumerate(match))
        dense = np.full((na, nb + na), 1e9)
        dense[rows, cols] = costs
        dense[np.arange(na), nb + np.arange(na)] = unmatched
        r, c = linear_sum_assignment(dense)
        assert ours == pytest.approx(dense[r, c].sum()), trial


def test_correspondence_radius_and_one_to_one() -> None:
    h, w = 100, 150
    radius = matching_radius((h, w))  # 0.0075 * diagonal ~ 1.35 px
    human = np.zeros((h, w), bool)
    human[50, 10:140] = True
    assert correspond_pixels(human, human).count == 130
    shifted = np.roll(human, 1, axis=0)  # 1 px away: within the radius
    assert correspond_pixels(shifted, human).count == 130
    far = np.roll(human, int(np.ceil(radius)) + 1, axis=0)
    assert correspond_pixels(far, human).count == 0
    double = human | shifted  # two machine pixels per human pixel: one-to-one keeps 130
    corr = correspond_pixels(double, human)
    assert corr.count == 130 and len(set(corr.machine_matched)) == 130 and len(set(corr.human_matched)) == 130


def test_metrics_definitions() -> None:
    # AP samples recall 0, 0.01, ..., 1 and counts precision only inside the covered recall range
    assert average_precision(np.array([0.2, 0.6]), np.array([1.0, 1.0])) == pytest.approx(0.41)
    assert average_precision(np.array([0.5]), np.array([1.0])) == 0.0
    # best F interpolates between thresholds
    t, r, p, f = best_f(np.array([0.25, 0.75]), np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert f == pytest.approx(0.5, abs=1e-3) and t == pytest.approx(0.5, abs=0.01)
    assert recall_at_precision(np.array([0.25, 0.75]), np.array([0.9, 0.3]), np.array([0.3, 0.7])) == pytest.approx(
        0.6, abs=0.01
    )


def test_edge_map_files(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.array([[0, 255], [51, 102]], np.uint8)).save(tmp_path / "a.png")
    np.testing.assert_allclose(load_edge_map(tmp_path / "a.png"), [[0, 1], [0.2, 0.4]])
    np.save(tmp_path / "b.npy", np.array([[0.0, 0.5]], np.float32))
    np.testing.assert_allclose(load_edge_map(tmp_path / "b.npy"), [[0.0, 0.5]])
    np.save(tmp_path / "c.npy", np.array([[0.0, 2.0]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_edge_map(tmp_path / "c.npy")
    assert set(find_edge_maps(tmp_path, ["a", "b"])) == {"a", "b"}
    with pytest.raises(FileNotFoundError, match="1 of 2"):
        find_edge_maps(tmp_path, ["a", "zzz"])


def test_masks_to_edges_recipe() -> None:
    masks = np.zeros((2, 30, 40), bool)
    masks[0, 5:25, 6:34] = True
    masks[1, 10:20, 12:22] = True
    edges = masks_to_edges(masks, weights=np.array([1.0, 0.5]))
    assert edges.dtype == np.float32 and edges.max() == pytest.approx(1.0) and edges.min() == 0.0
    on = edges > 0
    assert not (on[:-1, :-1] & on[1:, :-1] & on[:-1, 1:] & on[1:, 1:]).any()  # thin
    # every edge pixel is at the boundary of a mask (within one pixel), nothing inside or outside
    boundary = np.zeros_like(on)
    for m in masks:
        boundary |= ndimage.binary_dilation(m) & ~ndimage.binary_erosion(m)
    assert not (on & ~boundary).any()
    assert edges[15, 11:13].max() > 0.3 and edges[15, 11:13].max() < 0.7  # the half-weighted inner mask
    # a smooth probability map gives one ring at its 0.5 level
    disk = 1 / (1 + np.exp(-(8 - np.hypot(*np.mgrid[-20:20, -25:25]))))
    ring = masks_to_edges(disk[None]) > 0
    assert 40 <= ring.sum() <= 60
    assert masks_to_edges(np.zeros((0, 10, 12), np.float32)).shape == (10, 12)


# --- the command ----------------------------------------------------------------------------------------------


def test_cli_scores_a_prediction_folder(bench_dir: Path, tmp_path: Path) -> None:
    code = _cli(["eval", "edges", "--pred", str(bench_dir / "png"), "--data", str(bench_dir), "--nthresh", "5",
                 "--out", str(tmp_path), "--workers", "2", "--quiet"])  # fmt: skip
    assert code == 0
    data = json.loads((tmp_path / "edges.json").read_text())
    assert round(data["scores"]["ods_f"], 3) == round(MATLAB_ODS_F, 3)
    assert round(data["scores"]["ap"], 3) == round(MATLAB_AP, 3)
    assert len(data["curve"]["recall"]) == 5 and set(data["images"]) == {"2018", "3063", "5096", "6046", "8068"}
    report = (tmp_path / "edges.md").read_text()
    assert "| ODS | 0.705 | 0.750 |" in report
    pytest.importorskip("matplotlib")
    assert (tmp_path / "edges_pr.png").stat().st_size > 1000


@pytest.mark.slow
def test_cli_runs_the_model_end_to_end(bsds_dir: Path, tiny_weights: Path, tmp_path: Path) -> None:
    """Random weights: the numbers mean nothing, the pipeline is the real one."""
    code = _cli(["eval", "edges", "--model", str(tiny_weights), "--device", "cpu", "--data", str(bsds_dir),
                 "--limit", "1", "--imgsz", "192", "--nthresh", "5", "--out", str(tmp_path), "--quiet"])  # fmt: skip
    assert code == 0
    data = json.loads((tmp_path / "edges.json").read_text())
    assert data["scores"]["n_images"] == 1 and 0 <= data["scores"]["ods_f"] <= 1
    [png] = list((tmp_path / "edge_maps").glob("*.png"))
    edges = load_edge_map(png)
    assert edges.shape in ((321, 481), (481, 321)) and edges.max() <= 1


def test_probability_maps_agree_with_everything_mode(tiny_model, bsds_dir: Path) -> None:
    """The soft masks behind the edge maps are everything mode's detections: thresholded at 0.5 they match."""
    from fastsam.evaluation.edge_pipeline import fastsam_edge_map
    from fastsam.evaluation.soft_masks import mask_probabilities

    [item] = list_bsds(bsds_dir, "test", limit=1)
    probs, scores, boxes = mask_probabilities(tiny_model, item.image, imgsz=160)
    [result] = tiny_model.predict(item.image, imgsz=160)
    assert probs.shape == result.masks.shape and probs.dtype == np.float32
    np.testing.assert_allclose(scores, result.scores, rtol=1e-5)
    np.testing.assert_allclose(boxes, result.boxes, atol=1e-3)
    binary = probs > 0.5
    inter = (binary & result.masks).sum((1, 2))
    union = (binary | result.masks).sum((1, 2))
    assert np.mean(inter / np.maximum(union, 1)) > 0.95
    for source in ("prob", "mask"):
        edges = fastsam_edge_map(tiny_model, item.image, imgsz=160, source=source, weight_by_score=True)
        assert edges.shape == result.image_size and 0 <= edges.min() and edges.max() == pytest.approx(1.0)
