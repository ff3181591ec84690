"""The FastSAM paper's speed table on this machine: SAM (ViT-B / ViT-H) vs FastSAM-s/x, ms per image by prompt count.

Columns as in the paper: 1, 10 and 100 point prompts, and 16x16 and 32x32 point grids ("everything").

* SAM (PyPI ``segment-anything``, random weights: speed does not depend on weight values), built with
  ``sam_model_registry[name](checkpoint=None)``:
  - N points: ``SamPredictor.set_image(image)`` once, then N ``predict`` calls with one foreground point each
    (``multimask_output=True``, SAM's default). The 1/10/100 columns come from one ``set_image`` and the first
    1/10/100 of the 100 timed ``predict`` calls (time = set_image + their sum; one untimed ``predict`` after
    ``set_image`` absorbs the decoder's first-call initialisation).
  - G x G grid: ``SamAutomaticMaskGenerator(sam, points_per_side=G).generate(image)``, default settings, timed
    end to end (it runs its own ``set_image``). With random weights almost no mask passes SAM's quality filters
    (``pred_iou_thresh`` 0.88, ``stability_score_thresh`` 0.95), so the work done on kept masks (RLE, NMS) is
    missing: a lower bound for a trained SAM. ``--sam-keep-all`` sets both thresholds to 0 (every mask kept: an
    upper bound).
* FastSAM (ours; random weights in the shape of FastSAM-s/x, the same checkpoints as bench/vs_ultralytics.py,
  or real ones with ``--weights-s/--weights-x``): everything mode at imgsz 1024 (conf 0.4, iou 0.9, max_det 300,
  full-resolution masks), then ``SegmentedImage(result).points(coords)`` with the same N points as SAM in one call
  (one mask per point; a fresh ``SegmentedImage`` each time, so building its mask index is included); for a
  G x G column the G*G points of SAM's grid. The "everything" column is the predict alone.

* The same API (``--api``, on by default): segment-anything's generator is the G x G grid column above
  (``SamAutomaticMaskGenerator(sam)``, default settings are its 32x32 grid). Ours through that API:
  ``fastsam.sam.SamAutomaticMaskGenerator(model).generate(image)`` with its default settings (FastSAM's conf 0.4,
  iou 0.9, max_det 300, imgsz as above; records with SAM's stability score), in SAM's default ``binary_mask`` output
  and in ``coco_rle``, interleaved with the work it must match: ``FastSAM.predict`` + ``result.to_rle()`` (for
  ``coco_rle``) and ``FastSAM.predict`` + the ``(N, H, W)`` mask array (for ``binary_mask``).

Each model runs in its own subprocess (peak memory per model; an out-of-memory ViT-H does not take the run down),
with ``torch.set_num_threads(--threads)``. Measurements listed in ``--skip`` (``vit_h:32x32``, ``vit_h``,
``32x32``, ``fastsam-x:100``, ...) or estimated to take longer than ``--max-seconds`` are skipped and reported as
such. Prints the table last; writes bench/results/vs_sam.json.

    python bench/vs_sam.py [--sam vit_b,vit_h] [--fastsam s,x] [--points 1,10,100] [--grids 16,32]
        [--images dog.jpg] [--repeats 3] [--sam-repeats 1] [--threads N] [--skip vit_h:32x32] [--max-seconds S]
        [--sam-keep-all] [--quick] [--no-api]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_ultralytics import (  # noqa: E402  (bench/ is not a package)
    ROOT,
    command_line,
    git_state,
    machine_info,
    package_versions,
    peak_rss_mb,
    resolve_images,
    write_json,
)

# published, RTX 3090, ms/image (FastSAM paper, Table 1)
PAPER = {
    "SAM-H": {"1": 446, "10": 464, "100": 627, "16x16": 852, "32x32": 2099},
    "SAM-B": {"1": 110, "10": 125, "100": 230, "16x16": 432, "32x32": 1383},
    "FastSAM": {"1": 40, "10": 40, "100": 40, "16x16": 40, "32x32": 40},
}
SAM_NAMES = {"vit_b": "SAM-B", "vit_h": "SAM-H", "vit_l": "SAM-L"}
SETTINGS = dict(conf=0.4, iou=0.9, max_det=300)


def grid_points(n: int, w: int, h: int):
    """SAM's point grid (cell centres of an n x n grid) in pixels."""
    import numpy as np

    offset = 1 / (2 * n)
    side = np.linspace(offset, 1 - offset, n)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel() * w, ys.ravel() * h], axis=1)


def random_points(n: int, w: int, h: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)], axis=1)


def load_rgb(path: str):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def skipped(skips: set[str], model: str, column: str) -> bool:
    return bool({model, column, f"{model}:{column}"} & skips)


# ----------------------------------------------------------------------------------------------------------
# workers (one model per subprocess); each prints one JSON line
# ----------------------------------------------------------------------------------------------------------
def sam_worker(plan: dict) -> dict:
    import numpy as np
    import torch
    from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry

    torch.set_num_threads(plan["threads"])
    name, skips, limit = plan["model"], set(plan["skip"]), plan["max_seconds"]
    start = time.perf_counter()
    sam = sam_model_registry[name](checkpoint=None).eval()
    out = {"build_s": time.perf_counter() - start, "params": sum(p.numel() for p in sam.parameters()), "images": {},
           "skipped": {}}  # fmt: skip
    max_points = max(plan["points"], default=0)
    with torch.inference_mode():
        for path in plan["images"]:
            image = load_rgb(path)
            h, w = image.shape[:2]
            res = out["images"][Path(path).name] = {"embed_ms": [], "predict_ms": [], "grids": {}}
            predictor = SamPredictor(sam)
            for _ in range(plan["warmup"]):
                predictor.set_image(image)
            coords = random_points(max_points, w, h)
            if plan["points"] and not all(skipped(skips, name, str(n)) for n in plan["points"]):
                for rep in range(plan["repeats"]):
                    t0 = time.perf_counter()
                    predictor.set_image(image)
                    res["embed_ms"].append((time.perf_counter() - t0) * 1000)
                    # one untimed decoder call first: its one-off initialisation is not a per-prompt cost
                    predictor.predict(point_coords=coords[:1], point_labels=np.array([1]), multimask_output=True)
                    calls = []
                    for x, y in coords:
                        t0 = time.perf_counter()
                        predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]), multimask_output=True)
                        calls.append((time.perf_counter() - t0) * 1000)
                    res["predict_ms"].append(calls)
                    print(f"  {name} {Path(path).name}: set_image + {len(calls)} predicts, repetition {rep + 1}",
                          file=sys.stderr, flush=True)  # fmt: skip
            predictor.reset_image()
            embed = statistics.median(res["embed_ms"]) if res["embed_ms"] else None
            per_point = statistics.median(sum(res["predict_ms"], [])) if res["predict_ms"] else None
            previous = None  # (points, ms) of the last grid measured
            for g in plan["grids"]:
                column = f"{g}x{g}"
                if skipped(skips, name, column):
                    out["skipped"][column] = "--skip"
                    continue
                estimate = None
                if previous is not None and embed is not None:
                    estimate = embed + (previous[1] - embed) * g * g / previous[0]
                elif previous is not None:
                    estimate = previous[1] * g * g / previous[0]
                elif embed is not None and per_point is not None:
                    estimate = embed + per_point * g * g
                if limit and estimate is not None and estimate / 1000 > limit:
                    out["skipped"][column] = f"estimated {estimate / 1000:.0f} s > --max-seconds {limit:g}"
                    continue
                generator = SamAutomaticMaskGenerator(
                    sam, points_per_side=g, **({"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
                                               if plan["keep_all"] else {}),
                )  # fmt: skip
                times, kept = [], None
                for rep in range(plan["repeats"]):
                    t0 = time.perf_counter()
                    masks = generator.generate(image)
                    times.append((time.perf_counter() - t0) * 1000)
                    kept = len(masks)
                    print(f"  {name} {Path(path).name}: {column} grid {times[-1] / 1000:.0f} s, repetition {rep + 1}",
                          file=sys.stderr, flush=True)  # fmt: skip
                res["grids"][column] = {"ms": times, "masks_kept": kept, "estimate_ms": estimate}
                previous = (g * g, statistics.median(times))
    for n in plan["points"]:
        if skipped(skips, name, str(n)):
            out["skipped"][str(n)] = "--skip"
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def fastsam_worker(plan: dict) -> dict:
    import torch

    from fastsam.engine import FastSAM
    from fastsam.predictor import SegmentedImage

    torch.set_num_threads(plan["threads"])
    name, skips = plan["model"], set(plan["skip"])
    model = FastSAM(plan["weights"], device="cpu", precision="fp32")  # as measured before bf16 existed
    out = {"images": {}, "skipped": {}}
    columns = [(str(n), "points", n) for n in plan["points"]] + [(f"{g}x{g}", "grid", g) for g in plan["grids"]]
    columns = [c for c in columns if not skipped(skips, name, c[0])]
    for path in plan["images"]:
        image = load_rgb(path)
        h, w = image.shape[:2]
        prompts = {
            col: random_points(n, w, h) if kind == "points" else grid_points(n, w, h) for col, kind, n in columns
        }  # fmt: skip
        res = out["images"][Path(path).name] = {"everything_ms": [], "prompt_ms": {c: [] for c in prompts}, "masks": 0}
        for _ in range(plan["warmup"]):
            [result] = model.predict(image, imgsz=plan["imgsz"], retina=True, **SETTINGS)
            for coords in prompts.values():
                SegmentedImage(result).points(coords)
        for _ in range(plan["repeats"]):
            torch.set_num_threads(plan["threads"])
            t0 = time.perf_counter()
            [result] = model.predict(image, imgsz=plan["imgsz"], retina=True, **SETTINGS)
            res["everything_ms"].append((time.perf_counter() - t0) * 1000)
            res["masks"] = len(result)
            for col, coords in prompts.items():
                t0 = time.perf_counter()
                SegmentedImage(result).points(coords)
                res["prompt_ms"][col].append((time.perf_counter() - t0) * 1000)
    for col, _, _ in [(str(n), "points", n) for n in plan["points"]] + [(f"{g}x{g}", "grid", g) for g in plan["grids"]]:
        if skipped(skips, name, col):
            out["skipped"][col] = "--skip"
    if plan.get("api"):
        out["api"] = api_measurements(model, plan)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def api_measurements(model, plan: dict) -> dict:
    """ms of fastsam.sam's generator (defaults; binary_mask and coco_rle) and of the FastSAM.predict work it must
    match, interleaved, per image."""
    import torch

    from fastsam.sam import SamAutomaticMaskGenerator, SamModel

    sam = SamModel(model, imgsz=plan["imgsz"], **SETTINGS)
    generators = {"generate_binary_mask": SamAutomaticMaskGenerator(sam),
                  "generate_coco_rle": SamAutomaticMaskGenerator(sam, output_mode="coco_rle")}  # fmt: skip

    def predict(image, layout: bool):
        [result] = model.predict(image, imgsz=plan["imgsz"], retina=True, **SETTINGS)
        return result.masks if layout else result.to_rle()

    steps = {
        "predict_rle": lambda image: predict(image, False),
        "generate_coco_rle": generators["generate_coco_rle"].generate,
        "predict_masks": lambda image: predict(image, True),
        "generate_binary_mask": generators["generate_binary_mask"].generate,
    }
    out = {}
    for path in plan["images"]:
        image = load_rgb(path)
        times: dict[str, list[float]] = {k: [] for k in steps}
        cpu: dict[str, list[float]] = {k: [] for k in steps}  # process CPU time: less sensitive to a shared machine
        masks = {}
        for step in steps.values():  # warm-up
            step(image)
        for _ in range(plan["repeats"]):
            for key, step in steps.items():
                torch.set_num_threads(plan["threads"])
                t0, c0 = time.perf_counter(), time.process_time()
                made = step(image)
                times[key].append((time.perf_counter() - t0) * 1000)
                cpu[key].append((time.process_time() - c0) * 1000)
                masks[key] = len(made)
        out[Path(path).name] = {"ms": times, "cpu_ms": cpu, "masks": masks}
        print(f"  api {Path(path).name}: " + ", ".join(f"{k} {statistics.median(v):.0f} ms" for k, v in times.items()),
              file=sys.stderr, flush=True)  # fmt: skip
    return out


def run_worker(plan: dict, timeout: float | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(plan)]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout,
                              env=dict(os.environ, OMP_NUM_THREADS=str(plan["threads"])))  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if proc.returncode != 0:
        why = "killed (out of memory?)" if proc.returncode < 0 else f"exit code {proc.returncode}"
        return {"error": why}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()] if text and text.lower() != "none" else []


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sam", default=None, help="comma list of vit_b,vit_h,vit_l or none (default vit_b,vit_h; --quick: vit_b)")
    p.add_argument("--fastsam", default=None, help="comma list of s,x or none (default s,x; --quick: s)")
    p.add_argument("--points", default=None, help="point-prompt counts (default 1,10,100; --quick: 1,10)")
    p.add_argument("--grids", default=None, help="grid sides, e.g. 16,32, or none (default 16,32; --quick: 16)")
    p.add_argument("--images", nargs="+", default=["dog.jpg"], help="paths or names under $FASTSAM_SHARED/data/images")
    p.add_argument("--imgsz", type=int, default=1024, help="FastSAM input size (default 1024)")
    p.add_argument("--repeats", type=int, default=None, help="FastSAM timed repetitions (default 3; --quick: 1)")
    p.add_argument("--sam-repeats", type=int, default=1, help="SAM timed repetitions (default 1)")
    p.add_argument("--warmup", type=int, default=1, help="FastSAM untimed passes (default 1)")
    p.add_argument("--sam-warmup", type=int, default=0, help="SAM untimed set_image calls (default 0)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: cores)")
    p.add_argument("--skip", default="", help="comma list: model (vit_h, fastsam-x), column (32x32, 100) or model:column")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="skip a SAM grid whose estimated time (from the measurements before it) exceeds this")
    p.add_argument("--timeout", type=float, default=None, help="kill a model's subprocess after this many seconds")
    p.add_argument("--sam-keep-all", action="store_true", help="SAM grids: keep every mask (upper bound)")
    p.add_argument("--weights-s", help="FastSAM-s checkpoint (default: random weights, as bench/vs_ultralytics.py)")
    p.add_argument("--weights-x", help="FastSAM-x checkpoint (default: random weights, as bench/vs_ultralytics.py)")
    p.add_argument("--quick", action="store_true", help="short smoke run (vit_b, FastSAM-s, 1 and 10 points, 16x16)")
    p.add_argument("--api", action=argparse.BooleanOptionalAction, default=True,
                   help="also time fastsam.sam's SamAutomaticMaskGenerator against FastSAM.predict + RLE (default: on)")
    p.add_argument("--output", default="vs_sam", help="name of the JSON under bench/results/")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.sam = [v for v in (a.sam or ("vit_b" if a.quick else "vit_b,vit_h")).split(",") if v and v != "none"]
    a.fastsam = [v for v in (a.fastsam or ("s" if a.quick else "s,x")).split(",") if v and v != "none"]
    a.points = int_list(a.points or ("1,10" if a.quick else "1,10,100"))
    a.grids = int_list(a.grids or ("16" if a.quick else "16,32"))
    a.repeats = a.repeats if a.repeats is not None else (1 if a.quick else 3)
    a.skip = [v.strip() for v in a.skip.split(",") if v.strip()]
    for s in a.sam:
        if s not in SAM_NAMES:
            p.error(f"unknown SAM model {s!r}")
    for s in a.fastsam:
        if s not in ("s", "x"):
            p.error(f"unknown FastSAM scale {s!r}")
    return a


def fastsam_weights(scale: str, given: str | None) -> str:
    if given:
        return given
    try:
        import ultralytics  # noqa: F401  (the oracle that makes the checkpoint needs it)

        from vs_ultralytics import ensure_checkpoint

        return str(ensure_checkpoint(scale))
    except ImportError:  # no ultralytics: our own random weights (scores not calibrated on photos)
        sys.path.insert(0, str(ROOT / "tests"))
        from model_factory import save_random_weights

        out = Path.home() / ".cache" / "fastsam-bench" / f"model-factory-{scale}.safetensors"
        out.parent.mkdir(parents=True, exist_ok=True)
        return str(out if out.is_file() else save_random_weights(out, scale, {"s": 16, "x": 26}[scale], seed=0))


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.worker:
        plan = json.loads(a.worker)
        result = sam_worker(plan) if plan["kind"] == "sam" else fastsam_worker(plan)
        print(json.dumps(result))
        return

    machine = machine_info(a.threads)  # load average at the start
    images = [str(p) for p in resolve_images(a.images)]
    base = dict(images=images, points=a.points, grids=a.grids, threads=a.threads, skip=a.skip)
    results: dict[str, dict] = {}
    for scale in a.fastsam:
        name = f"fastsam-{scale}"
        if name in a.skip:
            results[name] = {"skipped_model": "--skip"}
            continue
        print(f"FastSAM-{scale} (imgsz {a.imgsz}) ...", file=sys.stderr, flush=True)
        plan = dict(base, kind="fastsam", model=name, weights=fastsam_weights(scale, getattr(a, f"weights_{scale}")),
                    imgsz=a.imgsz, repeats=a.repeats, warmup=a.warmup, api=a.api)  # fmt: skip
        results[name] = dict(run_worker(plan, a.timeout), weights=plan["weights"])
    for sam in a.sam:
        if sam in a.skip:
            results[sam] = {"skipped_model": "--skip"}
            continue
        print(f"SAM {sam} ...", file=sys.stderr, flush=True)
        plan = dict(base, kind="sam", model=sam, repeats=a.sam_repeats, warmup=a.sam_warmup, max_seconds=a.max_seconds,
                    keep_all=a.sam_keep_all)  # fmt: skip
        results[sam] = run_worker(plan, a.timeout)

    # ---- ms/image per column: mean over images of per-image medians ----
    columns = [str(n) for n in a.points] + [f"{g}x{g}" for g in a.grids]
    table: dict[str, dict] = {}
    for key, res in results.items():
        row: dict = {}
        if "images" not in res:
            table[key] = {"note": res.get("error") or res.get("skipped_model")}
            continue
        per_col: dict[str, list[float]] = {c: [] for c in columns + ["base"]}
        for img in res["images"].values():
            if key.startswith("fastsam"):
                everything = statistics.median(img["everything_ms"])
                per_col["base"].append(everything)
                for col, values in img["prompt_ms"].items():
                    per_col[col].append(everything + statistics.median(values))
            else:
                if img["embed_ms"]:
                    per_col["base"].append(statistics.median(img["embed_ms"]))
                    for n in a.points:
                        if str(n) not in res["skipped"]:
                            totals = [e + sum(calls[:n]) for e, calls in zip(img["embed_ms"], img["predict_ms"])]
                            per_col[str(n)].append(statistics.median(totals))
                for col, g in img["grids"].items():
                    per_col[col].append(statistics.median(g["ms"]))
        for col, values in per_col.items():
            row[col] = statistics.fmean(values) if values else None
        row["skipped"] = res.get("skipped", {})
        row["peak_rss_mb"] = res.get("peak_rss_mb")
        table[key] = row

    payload = {
        "command": command_line(),
        "machine": machine,
        "git": git_state(),
        "versions": package_versions("fastsam", "torch", "torchvision", "numpy", "segment-anything", "pycocotools"),
        "settings": dict(vars(a), fastsam_settings=dict(SETTINGS, retina=True, imgsz=a.imgsz),
                         images=images, sam_multimask_output=True),  # fmt: skip
        "table_ms_per_image": table,
        "paper_rtx3090_ms": PAPER,
        "raw": results,
    }
    payload["settings"].pop("worker", None)
    path = write_json(a.output, payload)

    # ---- table (last) ----
    def label(key: str) -> str:
        return SAM_NAMES.get(key, key.replace("fastsam-", "FastSAM-"))

    def cell(row: dict, col: str) -> str:
        if "note" in row:
            return row["note"] or "–"
        if col in row.get("skipped", {}):
            return f"skipped ({row['skipped'][col]})"
        v = row.get(col)
        return "–" if v is None else f"{v:,.0f}"

    fast = [k for k in table if k.startswith("fastsam") and "note" not in table[k]]
    print(f"\nms per image, CPU, {a.threads} torch threads, {len(images)} photo(s) ({', '.join(Path(p).name for p in images)}); "
          f"FastSAM imgsz {a.imgsz}; SAM random weights{' (all masks kept)' if a.sam_keep_all else ''}. "
          f"'base' = SAM set_image alone / FastSAM everything alone. JSON: {os.path.relpath(path, ROOT)}\n")  # fmt: skip
    head = ["model", "base", *[f"{c} pts" if "x" not in c else c for c in columns], "peak RSS MB"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for key, row in table.items():
        rss = row.get("peak_rss_mb")
        print(f"| {label(key)} | " + " | ".join(cell(row, c) for c in ["base", *columns])
              + f" | {'–' if rss is None else f'{rss:,.0f}'} |")  # fmt: skip
    for f in fast:
        for key, row in table.items():
            if key.startswith("fastsam") or "note" in row:
                continue
            ratios = []
            for col in ["base", *columns]:
                s, q = row.get(col), table[f].get(col)
                ratios.append("–" if s is None or not q else f"{s / q:.1f}x")
            print(f"| {label(key)} / {label(f)} | " + " | ".join(ratios) + " | |")
    for name, ref in PAPER.items():
        vals = " | ".join(str(ref.get(c, "–")) for c in columns)
        print(f"| paper RTX 3090: {name} | – | {vals} | |")
    for name in ("SAM-B", "SAM-H"):
        vals = " | ".join(f"{PAPER[name][c] / PAPER['FastSAM'][c]:.1f}x" if c in PAPER[name] else "–" for c in columns)
        print(f"| paper: {name} / FastSAM | – | {vals} | |")
    print_api_table(results, table)


def print_api_table(results: dict, table: dict) -> None:
    """SAM's generator vs ours through the same API, and ours vs the FastSAM.predict work it must match."""
    rows = []
    sam_generators = {label: row.get("32x32") for key, row in table.items() if key in SAM_NAMES
                      for label in [SAM_NAMES[key]] if row.get("32x32")}  # fmt: skip
    for key, res in results.items():
        if "api" not in res:
            continue
        images = list(res["api"].values())
        med = {k: statistics.fmean(statistics.median(img["ms"][k]) for img in images) for k in images[0]["ms"]}
        # overhead: the median over repetitions of each interleaved pair's ratio (robust to the load drifting)
        for gen, base in (("generate_binary_mask", "predict_masks"), ("generate_coco_rle", "predict_rle")):
            for unit in ("ms", "cpu_ms"):
                med[f"{unit}:{gen}/{base}"] = statistics.fmean(
                    statistics.median(g / b for g, b in zip(img[unit][gen], img[unit][base])) for img in images
                )
        label = key.replace("fastsam-", "FastSAM-")
        rows.append((label, med))
    if not rows:
        return
    print("\nThe same API, default settings (ms/image; SAM: `segment_anything.SamAutomaticMaskGenerator(sam).generate`, "
          "the 32x32 column; ours: `fastsam.sam.SamAutomaticMaskGenerator(model).generate`)\n")  # fmt: skip
    print("| generator | binary_mask | coco_rle | FastSAM.predict + masks array | FastSAM.predict + RLE | "
          "overhead binary / coco (median of paired runs) |\n|---|---|---|---|---|---|")  # fmt: skip
    for name, ms in sam_generators.items():
        print(f"| segment-anything {name} | {ms:,.0f} | | | | |")
    for label, med in rows:
        over = {unit: (med[f"{unit}:generate_binary_mask/predict_masks"] - 1, med[f"{unit}:generate_coco_rle/predict_rle"] - 1)
                for unit in ("ms", "cpu_ms")}  # fmt: skip
        print(f"| fastsam.sam {label} | {med['generate_binary_mask']:,.0f} | {med['generate_coco_rle']:,.0f} | "
              f"{med['predict_masks']:,.0f} | {med['predict_rle']:,.0f} | {over['ms'][0]:+.1%} / {over['ms'][1]:+.1%} "
              f"(CPU time {over['cpu_ms'][0]:+.1%} / {over['cpu_ms'][1]:+.1%}) |")  # fmt: skip
        for name, ms in sam_generators.items():
            print(f"| {name} / fastsam.sam {label} | {ms / med['generate_binary_mask']:.1f}x | | | | |")


if __name__ == "__main__":
    main()
