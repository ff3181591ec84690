"""CPU mask assembly: the compiled run finder against the numpy form it replaced, side by side, same masks.

For each network x photo the network runs once (bf16, as ``auto`` on this CPU); then ``masks_as_runs`` makes every
mask of the image as column-major runs, with the compiled kernel (``fastsam.ops.column_runs``) and with the numpy
form (``fastsam.ops.sign_resize.positive_transitions``), interleaved, on one thread (``--threads``), and the COCO
RLE of both is checked equal. Reports CPU milliseconds per image for each, their ratio, masks and run boundaries.

    python bench/mask_runs.py                       # s@640, x@1024 (random weights), reference@1024
    python bench/mask_runs.py --configs s:640 --repeats 5
Writes bench/results/mask_runs.json (or --output NAME) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import vs_ultralytics as vu


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="s:640,x:1024,reference:1024", help="network:imgsz list (default: %(default)s)")
    p.add_argument("--images", nargs="+", default=list(vu.DEFAULT_IMAGES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference-conf", type=float, default=0.05)
    p.add_argument("--output", default="mask_runs")
    return p.parse_args()


def main() -> None:
    a = parse_args()
    import torch

    from fastsam.engine import FastSAM
    from fastsam.io import load_image
    from fastsam.ops import column_runs, parallel
    from fastsam.postprocess import (
        masks_as_runs,
        scale_boxes_to_original,
        select_detections,
    )

    torch.set_num_threads(a.threads)
    parallel.MAX_THREADS = a.threads
    images = vu.resolve_images(a.images)
    rows = []
    for config in a.configs.split(","):
        network, imgsz = config.split(":")
        weights, conf = vu.bench_network(network, a.reference_conf)
        if weights is None:
            continue
        model = FastSAM(str(weights), device="cpu", precision="bf16")
        for image in images:
            array = load_image(image)
            [stage] = model.forward_arrays([array], int(imgsz))
            geometry = stage.geometries[0]
            boxes_in, _, _, coefficients = select_detections(stage.preds[0].float(), model.network.nc, conf,
                                                             vu.SETTINGS["iou"], vu.SETTINGS["max_det"])  # fmt: skip
            boxes = scale_boxes_to_original(boxes_in, geometry)
            times: dict[str, list[float]] = {"compiled": [], "numpy": []}
            out = {}
            for _ in range(a.repeats + 1):  # the first round warms both (and loads the compiled kernel)
                for kind in ("compiled", "numpy"):
                    column_runs.KERNEL.available = kind == "compiled"
                    start = time.process_time()
                    out[kind] = masks_as_runs(stage.protos[0], coefficients, boxes, geometry)
                    times[kind].append(time.process_time() - start)
            column_runs.KERNEL.available = True
            same = out["compiled"].to_rle() == out["numpy"].to_rle()
            row = {
                "network": network, "imgsz": int(imgsz), "image": image.name, "size": list(array.shape[:2]),
                "masks": len(out["compiled"]), "boundaries": int(sum(r.size for r in out["compiled"].runs)),
                "compiled_ms": 1000 * min(times["compiled"][1:]), "numpy_ms": 1000 * min(times["numpy"][1:]),
                "same_rle": same,
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not same:
                raise SystemExit(f"{network}@{imgsz} {image.name}: the two forms gave different masks")
    result = {"command": " ".join(sys.argv), "threads": a.threads, "repeats": a.repeats, "rows": rows,
              "versions": vu.package_versions("fastsam", "torch", "numpy", "numba")}  # fmt: skip
    path = BENCH / "results" / f"{a.output}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nCPU ms per image (min of {a.repeats}), {a.threads} thread(s); JSON: {path}\n")
    print("| network | photo | masks | run boundaries | numpy ms | compiled ms | speed-up | same RLE |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']}@{r['imgsz']} | {r['image']} | {r['masks']} | {r['boundaries']:,} | {r['numpy_ms']:,.0f} | "
              f"{r['compiled_ms']:,.0f} | {r['numpy_ms'] / max(r['compiled_ms'], 1e-9):.1f}x | {r['same_rle']} |")


if __name__ == "__main__":
    main()
