"""Big photos (issue 18): peak memory and time of ``fastsam segment`` per megapixel, and what tiling costs and gains.

Sections (``--sections``, all by default):

* ``segment``: the issue's case: a 6000 x 6000 JPEG (an SA-1B photo scaled up), the random-weight FastSAM-s
  checkpoint of ``vs_ultralytics.py``, imgsz 1024, 300 masks, ``fastsam segment --format json``. Every run is a
  fresh process: peak RSS is its ``VmHWM``, time is its wall clock (imports and model loading included) and its
  CPU time. ``--before REF`` also runs the package as of git ``REF`` (its ``src/`` extracted with ``git archive``,
  first on ``PYTHONPATH``) on the same photo and checks that every mask (COCO RLE), box and area of the JSON is
  the same.
* ``scaling``: 9, 36 and 100 MP photos, the random-weight FastSAM-s and the trained reference network of
  ``train_reference.py`` (``--reference-conf``: its scores top out near 0.1): peak memory and time, and the
  per-megapixel slopes fitted over the sizes.
* ``tiling``: a 6000 x 4000 scene with known masks: an SA-1B photo scaled up, coco128-seg objects pasted in
  (``--small`` of them 16-64 px long, which a 1024 input sees at 3-11 px, and 4 large ones across tile edges), the
  reference network without tiles, with ``--tiles`` and with ``auto``: recall of the small objects (a mask with
  IoU >= 0.5), masks out, time and peak memory; for each large object, how many masks cover it (IoU >= 0.5) and
  the IoU of the tiled mask with the untiled one.

    python bench/big_images.py --before HEAD            # everything (about 6 minutes on 2 cores)
    python bench/big_images.py --sections segment --before HEAD
Writes bench/results/big_images.json (or --output NAME) and prints markdown tables last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import vs_ultralytics as vu
from train_reference import reference_weights

ROOT = BENCH.parent
PHOTO = vu.IMAGES_DIR / "fastsam" / "examples" / "sa_192.jpg"
SCENE_PHOTO = vu.IMAGES_DIR / "fastsam" / "examples" / "sa_1309.jpg"
SIZES = {9: (3000, 3000), 36: (6000, 6000), 100: (10000, 10000)}  # MP -> (H, W)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default="segment,scaling,tiling")
    p.add_argument("--before", metavar="REF", help="also run the package as of this git ref (segment section)")
    p.add_argument("--sizes", default="9,36,100", help="megapixels for the scaling section (default: %(default)s)")
    p.add_argument("--networks", default="s,reference", help="scaling section networks (default: %(default)s)")
    p.add_argument("--imgsz", type=int, default=1024)
    p.add_argument("--precision", default="fp32", help="network precision (default: %(default)s, deterministic)")
    p.add_argument("--reference-conf", type=float, default=0.05)
    p.add_argument("--small", type=int, default=150, help="small objects pasted in the tiling scene")
    p.add_argument("--tiles", default="4", help="a fixed tile count for the tiling section, besides auto")
    p.add_argument("--output", default="big_images")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args()


# ----------------------------------------------------------------------------------------------------------
# child processes: one measured run each
# ----------------------------------------------------------------------------------------------------------
def child(spec: dict) -> None:
    """Run one CLI command or one tiled predict, then print its wall and CPU time and the process's peak RSS."""
    start, cpu = time.perf_counter(), time.process_time()
    if spec["kind"] == "cli":
        from fastsam.cli.main import main

        rc = main(spec["argv"])
    else:
        from fastsam import FastSAM

        model = FastSAM(spec["model"], device="cpu", precision=spec["precision"])
        tiles = spec["tiles"]
        [result] = model.predict(spec["image"], imgsz=spec["imgsz"], conf=spec["conf"], batch_size=2,
                                 tiles=None if tiles == "none" else (tiles if tiles == "auto" else int(tiles)))  # fmt: skip
        result.save_json(spec["out"])
        rc = 0
    print(json.dumps({"rc": rc, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                      "peak_mb": vu.peak_rss_mb()}))  # fmt: skip


def run_child(spec: dict, src: Path | None = None) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True, check=False,
                          text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_seconds"] = wall
    return out


def photo(megapixels: int, cache: Path) -> Path:
    """The SA-1B photo scaled to a ``megapixels`` square (JPEG, quality 90), made once."""
    from PIL import Image

    h, w = SIZES[megapixels]
    path = cache / f"sa_192_{w}x{h}.jpg"
    if not path.is_file():
        Image.MAX_IMAGE_PIXELS = None
        cache.mkdir(parents=True, exist_ok=True)
        Image.open(PHOTO).convert("RGB").resize((w, h), Image.LANCZOS).save(path, quality=90)
    return path


def segment_argv(image: Path, weights: Path, out: Path, a: argparse.Namespace, conf: float) -> list[str]:
    return ["segment", str(image), "--format", "json", "--model", str(weights), "--device", "cpu", "--imgsz",
            str(a.imgsz), "--precision", a.precision, "--conf", str(conf), "--out", str(out), "--quiet"]  # fmt: skip


def same_masks(a: Path, b: Path) -> dict:
    """Whether two SA-1B JSON files hold the same masks, boxes and areas, annotation by annotation."""
    x, y = json.loads(a.read_text())["annotations"], json.loads(b.read_text())["annotations"]
    keys = ("segmentation", "bbox", "area")
    same = len(x) == len(y) and all(all(p[k] == q[k] for k in keys) for p, q in zip(x, y))
    return {"annotations": [len(x), len(y)], "identical": same}


# ----------------------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------------------
def section_segment(a: argparse.Namespace, work: Path) -> dict:
    image, weights = photo(36, vu.CACHE / "big"), vu.ensure_checkpoint("s")
    out = {"image": str(image), "weights": weights.name, "precision": a.precision}
    after = run_child({"kind": "cli", "argv": segment_argv(image, weights, work / "after", a, 0.4)})
    out["after"] = after
    if a.before:
        src = work / "before"
        src.mkdir(exist_ok=True)
        archive = subprocess.run(["git", "archive", a.before, "src"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        out["before_ref"] = subprocess.run(["git", "rev-parse", a.before], cwd=ROOT, capture_output=True, check=True,
                                           text=True).stdout.strip()  # fmt: skip
        out["before"] = run_child({"kind": "cli", "argv": segment_argv(image, weights, work / "before_out", a, 0.4)},
                                  src / "src")  # fmt: skip
        out["same_masks"] = same_masks(work / "after" / f"{image.stem}.json", work / "before_out" / f"{image.stem}.json")
    return out


def section_scaling(a: argparse.Namespace, work: Path) -> dict:
    rows = []
    for network in a.networks.split(","):
        weights, conf = vu.bench_network(network, a.reference_conf)
        if weights is None:
            continue
        for mp in (int(v) for v in a.sizes.split(",")):
            image = photo(mp, vu.CACHE / "big")
            out_dir = work / f"scaling_{network}_{mp}"
            row = run_child({"kind": "cli", "argv": segment_argv(image, weights, out_dir, a, conf)})
            row["masks"] = len(json.loads((out_dir / f"{image.stem}.json").read_text())["annotations"])
            rows.append({"network": network, "megapixels": mp, **row})
            print(rows[-1], file=sys.stderr)
    slopes = {}
    for network in {r["network"] for r in rows}:
        mine = [r for r in rows if r["network"] == network]
        if len(mine) >= 2:
            lo, hi = min(mine, key=lambda r: r["megapixels"]), max(mine, key=lambda r: r["megapixels"])
            span = hi["megapixels"] - lo["megapixels"]
            slopes[network] = {"mb_per_mp": (hi["peak_mb"] - lo["peak_mb"]) / span,
                               "seconds_per_mp": (hi["process_seconds"] - lo["process_seconds"]) / span}  # fmt: skip
    return {"rows": rows, "slopes": slopes}


def build_scene(a: argparse.Namespace, grid_tiles: int, cache: Path) -> tuple[Path, list[dict], list[dict]]:
    """The tiling scene: the photo, the small objects' and the large objects' COCO RLE masks (made once per seed)."""
    import numpy as np
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    from fastsam.ops.tiles import tile_grid

    h, w = 4000, 6000
    rng = np.random.default_rng(0)
    canvas = np.array(Image.open(SCENE_PHOTO).convert("RGB").resize((w, h), Image.BILINEAR))
    taken = np.zeros((h, w), dtype=bool)
    cutouts = []
    root = vu.SHARED / "data" / "coco128-seg"
    for label in sorted((root / "labels").rglob("*.txt")):
        image_path = next((root / "images").rglob(label.stem + ".jpg"), None)
        if image_path is None:
            continue
        img = Image.open(image_path).convert("RGB")
        for line in label.read_text().splitlines():
            xy = np.array(line.split()[1:], dtype=np.float64).reshape(-1, 2) * [img.width, img.height]
            x0, y0 = xy.min(0).astype(int)
            x1, y1 = np.ceil(xy.max(0)).astype(int)
            if min(x1 - x0, y1 - y0) < 24:
                continue
            shape = Image.new("L", img.size)
            ImageDraw.Draw(shape).polygon([tuple(p) for p in xy.tolist()], fill=255)
            cutouts.append((img.crop((x0, y0, x1, y1)), shape.crop((x0, y0, x1, y1))))
    rng.shuffle(cutouts)

    def paste(item, longest: int, at: tuple[int, int] | None) -> dict | None:
        rgb, alpha = item
        scale = longest / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb, mask = rgb.resize(size, Image.BILINEAR), np.asarray(alpha.resize(size, Image.BILINEAR)) >= 128
        if mask.sum() < 0.2 * mask.size:
            return None
        sw, sh = size
        for _ in range(50):
            x, y = at if at is not None else (int(rng.integers(8, w - sw - 8)), int(rng.integers(8, h - sh - 8)))
            if not taken[max(0, y - 8) : y + sh + 8, max(0, x - 8) : x + sw + 8].any():
                break
            if at is not None:
                return None
        else:
            return None
        region = canvas[y : y + sh, x : x + sw]
        region[mask] = np.asarray(rgb)[mask]
        taken[y : y + sh, x : x + sw] |= mask
        full = np.zeros((h, w), dtype=np.uint8, order="F")
        full[y : y + sh, x : x + sw] = mask
        rle = mask_utils.encode(full)
        return {"rle": {"size": rle["size"], "counts": rle["counts"].decode()}, "longest": longest, "box": [x, y, sw, sh]}

    grid = tile_grid((h, w), grid_tiles, 0.2)
    edges = sorted({int(v) for v in grid[:, 2] if v < w})
    large = []
    for k, item in enumerate(cutouts[:12]):
        if len(large) == 4:
            break
        edge = edges[(2 * k + 1) % len(edges)]
        obj = paste(item, 450, (edge - 225, 400 + 900 * len(large)))
        if obj is not None:
            large.append(obj)
    small = []
    for item in cutouts[12:]:
        if len(small) == a.small:
            break
        obj = paste(item, int(rng.integers(16, 65)), None)
        if obj is not None:
            small.append(obj)
    path = cache / "tiling_scene.jpg"
    Image.fromarray(canvas).save(path, quality=95)
    return path, small, large


def section_tiling(a: argparse.Namespace, work: Path) -> dict:
    import numpy as np
    from pycocotools import mask as mask_utils

    from fastsam.ops.tiles import tiles_for_detail

    weights = reference_weights()
    if weights is None:
        return {"skipped": "no reference network (run bench/train_reference.py)"}
    auto = tiles_for_detail(6000, a.imgsz, 0.2)
    scene, small, large = build_scene(a, auto, work)
    out = {"scene": {"size": [4000, 6000], "small": len(small), "large": len(large), "auto_tiles": auto},
           "conf": a.reference_conf, "runs": {}}  # fmt: skip

    def rles(objects: list[dict]) -> list[dict]:
        return [{"size": o["rle"]["size"], "counts": o["rle"]["counts"].encode()} for o in objects]

    truth_small, truth_large = rles(small), rles(large)
    untiled_best = None
    for tiles in ("none", a.tiles, "auto"):
        path = work / f"tiles_{tiles}.json"
        row = run_child({"kind": "predict", "model": str(weights), "precision": a.precision, "image": str(scene),
                         "imgsz": a.imgsz, "conf": a.reference_conf, "tiles": tiles, "out": str(path)})  # fmt: skip
        found = [{"size": m["segmentation"]["size"], "counts": m["segmentation"]["counts"].encode()}
                 for m in json.loads(path.read_text())["annotations"]]  # fmt: skip
        row["masks"] = len(found)
        iou_small = np.asarray(mask_utils.iou(truth_small, found, [0] * len(found))) if found else np.zeros((len(small), 0))
        row["small_recall"] = float((iou_small.max(1) >= 0.5).mean()) if found else 0.0
        iou_large = np.asarray(mask_utils.iou(truth_large, found, [0] * len(found))) if found else np.zeros((len(large), 0))
        best = [found[int(i)] for i in iou_large.argmax(1)] if found else []
        row["large"] = [{"masks_iou_0.5": int((r >= 0.5).sum()), "best_iou": float(r.max()) if r.size else 0.0} for r in iou_large]
        if tiles == "none":
            untiled_best = best
        elif untiled_best:
            row["large_iou_with_untiled"] = [float(mask_utils.iou([t], [u], [0])[0][0]) for t, u in zip(best, untiled_best)]
        out["runs"][str(tiles)] = row
        print(tiles, row, file=sys.stderr)
    return out


def main() -> None:
    a = parse_args()
    if a.child:
        child(json.loads(a.child))
        return
    sections = a.sections.split(",")
    payload = {"command": vu.command_line(), "machine": vu.machine_info(os.cpu_count() or 1),
               "versions": vu.package_versions("torch", "numpy", "pillow", "pycocotools"), "git": vu.git_state()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fastsam-big-") as tmp:
        work = Path(tmp)
        if "segment" in sections:
            payload["segment"] = section_segment(a, work)
            print(payload["segment"], file=sys.stderr)
        if "scaling" in sections:
            payload["scaling"] = section_scaling(a, work)
        if "tiling" in sections:
            payload["tiling"] = section_tiling(a, work)
    path = vu.write_json(a.output, payload)
    print(f"wrote {path}", file=sys.stderr)
    print_tables(payload)


def print_tables(payload: dict) -> None:
    seg = payload.get("segment")
    if seg:
        print("\n| 36 MP, FastSAM-s random, 300 masks | wall s (process) | CPU s | peak RSS MB |\n|---|---|---|---|")
        for side in ("before", "after"):
            if side in seg:
                r = seg[side]
                print(f"| {side} | {r['process_seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_mb']:.0f} |")
        if "same_masks" in seg:
            print(f"\nmasks identical: {seg['same_masks']}")
    scaling = payload.get("scaling")
    if scaling:
        print("\n| network | MP | masks | wall s | CPU s | peak RSS MB |\n|---|---|---|---|---|---|")
        for r in scaling["rows"]:
            print(f"| {r['network']} | {r['megapixels']} | {r['masks']} | {r['process_seconds']:.1f} | "
                  f"{r['cpu_seconds']:.1f} | {r['peak_mb']:.0f} |")  # fmt: skip
        for network, s in scaling["slopes"].items():
            print(f"\n{network}: {s['mb_per_mp']:.1f} MB and {s['seconds_per_mp']:.2f} s per extra megapixel")
    tiling = payload.get("tiling")
    if tiling and "runs" in tiling:
        print("\n| tiles | masks | small-object recall | wall s | peak RSS MB | large: masks at IoU>=0.5 | large: IoU with untiled |")
        print("|---|---|---|---|---|---|---|")
        for tiles, r in tiling["runs"].items():
            counts = ",".join(str(x["masks_iou_0.5"]) for x in r["large"])
            with_untiled = ",".join(f"{v:.2f}" for v in r.get("large_iou_with_untiled", []))
            print(f"| {tiles} | {r['masks']} | {r['small_recall']:.2f} | {r['process_seconds']:.1f} | {r['peak_mb']:.0f} "
                  f"| {counts} | {with_untiled} |")  # fmt: skip


if __name__ == "__main__":
    main()
