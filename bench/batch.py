"""Batch throughput: `fastsam batch --engine local` vs `--engine ray` over the shared photos, same model, same images,
same Parquet records. Ray runs on a local instance started here (its start-up is timed apart from the runs).

    python bench/batch.py [--images 16] [--imgsz 640] [--model PATH] [--batch-size 4] [--max-det 300]

Runs: the local engine with torch's default threads and with 1 thread (what one 1-CPU Ray actor gets), and the Ray
engine with its defaults (CPU actors of 1 CPU each: as many as the machine's CPUs minus one). Each run starts from an
empty output folder; its time is the whole command (model loading and, for Ray, the Ray Data job and the actors'
start-up included). Prints a markdown table and writes JSON to bench/results/batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from workspace import SHARED, photo_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-det", type=int, default=300)
    parser.add_argument("--model", default=None, help="weights (default: random FastSAM-s-shaped weights)")
    args = parser.parse_args()

    import pyarrow
    import pyarrow.compute
    import pyarrow.parquet
    import ray
    import torch

    import fastsam
    from fastsam.cli.main import main as cli

    work, folder, model_path, photos = photo_workspace(args.images, args.model)
    common = ["--model", model_path, "--device", "cpu", "--imgsz", str(args.imgsz), "--max-det", str(args.max_det),
              "--batch-size", str(args.batch_size), "--quiet"]  # fmt: skip
    default_threads = torch.get_num_threads()

    def run(name: str, extra: list[str], cores: float) -> dict:
        out = work / name.replace(" ", "_")
        command = ["batch", str(folder), "--output", str(out), *extra, *common]
        start = time.perf_counter()
        code = cli(command)
        seconds = time.perf_counter() - start
        torch.set_num_threads(default_threads)
        assert code == 0, f"{name}: exit code {code}"
        files = list(out.glob("*.parquet"))
        rows = sum(pyarrow.parquet.read_metadata(f).num_rows for f in files)
        assert rows == args.images, f"{name}: {rows} records for {args.images} images"
        masks = sum(pyarrow.compute.sum(pyarrow.compute.list_value_length(
            pyarrow.parquet.read_table(f, columns=["annotations"]).column("annotations"))).as_py() or 0 for f in files)
        per_s = args.images / seconds
        return {"command": "fastsam " + " ".join(command), "seconds": seconds, "images_per_s": per_s, "masks": masks,
                "parquet_bytes_per_image": sum(f.stat().st_size for f in files) / args.images,
                "cores": cores, "images_per_s_per_core": per_s / cores,
                "core_hours_per_million": 1e6 / per_s * cores / 3600}  # fmt: skip

    runs = {}
    runs["local (torch threads %d)" % default_threads] = run("local", ["--engine", "local"], default_threads)
    runs["local (1 thread)"] = run("local 1", ["--engine", "local", "--threads", "1"], 1)
    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    actors = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    try:
        runs[f"ray ({actors} actor(s) x 1 CPU)"] = run("ray", ["--engine", "ray"], actors)
    finally:
        ray.shutdown()

    print(f"{args.images} photos of {SHARED / 'data' / 'images'}, imgsz {args.imgsz}, max_det {args.max_det}, "
          f"batch {args.batch_size}, {os.cpu_count()} CPUs; ray.init {ray_start:.1f} s (not in the times)\n",
          )  # fmt: skip
    print("| engine | s | images/s | cores | images/s per core | core-hours per million images | masks | "
          "Parquet KB/image |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for name, r in runs.items():
        print(f"| {name} | {r['seconds']:.1f} | {r['images_per_s']:.2f} | {r['cores']} | "
              f"{r['images_per_s_per_core']:.2f} | {r['core_hours_per_million']:.0f} | {r['masks']} | "
              f"{r['parquet_bytes_per_image'] / 1e3:.0f} |")  # fmt: skip
    out = ROOT / "bench" / "results" / "batch.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "machine": platform.platform(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "versions": {"python": platform.python_version(), "fastsam": fastsam.__version__, "torch": torch.__version__,
                     "ray": ray.__version__, "pyarrow": pyarrow.__version__},
        "images": args.images, "imgsz": args.imgsz, "max_det": args.max_det, "batch_size": args.batch_size,
        "model": args.model or "random FastSAM-s-shaped weights", "ray_init_seconds": ray_start, "runs": runs,
    }, indent=2))  # fmt: skip
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
