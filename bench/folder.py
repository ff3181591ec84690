"""Folder throughput: `fastsam segment` over a folder (background decoding, batching, overlapped writing) against
the naive loop (load, segment, write, one image at a time). Same model, same images, same outputs.

    python bench/folder.py [--images 12] [--imgsz 640] [--model PATH] [--batch-size N] [--precision auto]

Prints a markdown table and writes JSON to bench/results/folder.json.
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
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=None, help="default: fastsam segment's (1 on CPU)")
    parser.add_argument("--model", default=None, help="weights (default: random FastSAM-s-shaped weights)")
    parser.add_argument("--precision", default="auto", help="for both sides (default: %(default)s)")
    parser.add_argument("--output", default="folder", help="JSON name under bench/results (default: %(default)s)")
    args = parser.parse_args()

    import torch

    from fastsam.cli.main import main as cli
    from fastsam.engine import FastSAM
    from fastsam.io import load_image

    work, folder, model_path, photos = photo_workspace(args.images, args.model)

    model = FastSAM(model_path, device="cpu", precision=args.precision)
    model.predict(load_image(photos[0]), imgsz=args.imgsz)  # warm-up
    start = time.perf_counter()
    naive_out = work / "naive"
    for path in sorted(folder.iterdir()):
        [result] = model.predict(load_image(path), imgsz=args.imgsz)
        result.file_name = path.name
        result.save_overlay(naive_out / f"{path.stem}.png", contours=True)
        result.save_json(naive_out / f"{path.stem}.json")
    naive = time.perf_counter() - start

    start = time.perf_counter()
    code = cli(["segment", str(folder), "--model", model_path, "--device", "cpu", "--imgsz", str(args.imgsz),
                "--precision", args.precision, "--out", str(work / "pipeline"), "--quiet",
                *(["--batch-size", str(args.batch_size)] if args.batch_size else [])])  # fmt: skip
    pipeline = time.perf_counter() - start
    assert code == 0
    rows = {"naive loop": naive, "fastsam segment (pipeline)": pipeline}
    print(f"{args.images} photos of {SHARED / 'data' / 'images'}, imgsz {args.imgsz}, precision {model.precision}, "
          f"CPU threads {torch.get_num_threads()}\n")
    print("| method | s | images/s |\n|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.1f} | {args.images / seconds:.2f} |")
    print(f"\nspeed-up {naive / pipeline:.2f}x (the pipeline's time includes loading the model once)")
    out = ROOT / "bench" / "results" / f"{args.output}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "machine": platform.platform(), "cpus": os.cpu_count(),
        "images": args.images, "imgsz": args.imgsz, "precision": model.precision, "seconds": rows, "speedup": naive / pipeline,
    }, indent=2))  # fmt: skip
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
