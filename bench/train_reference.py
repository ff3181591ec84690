"""Train the reference network used for every mask-agreement figure (precision, backends, INT8).

Random-weight networks exaggerate reduced-precision errors (their features are noise, so a small rounding moves
scores and masks a lot). This script trains a FastSAM-s-shaped network with ``fastsam train`` on real data from
``$FASTSAM_SHARED`` (coco128-seg for training, tiny-coco for validation) with a fixed seed and recipe, and caches
the EMA weights outside the repository:

    python bench/train_reference.py                     # ~30-45 minutes on this project's 2-core CPU
    python bench/train_reference.py --print-path        # where the weights are (or will be)

The weights go to ``$FASTSAM_BENCH_CACHE`` (default ``~/.cache/fastsam-bench``) as
``reference-s-coco128-<recipe hash>.safetensors``; a run whose file exists does nothing. The benchmarks find the
file with :func:`reference_weights` (``None`` when it has not been trained yet).

The recipe (scale s, reg_max 16, imgsz 320, 60 epochs, batch 8 with one optimiser step per batch, SGD lr 0.01,
cosine decay, mosaic off for the last 10 epochs, seed 0) is small because the machine is: the result is far from
the official FastSAM-s, but its masks are smooth and its scores come from learned features, which is what a
precision study needs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTSAM_SHARED", ROOT.parent / "shared"))
CACHE = Path(os.environ.get("FASTSAM_BENCH_CACHE", Path.home() / ".cache" / "fastsam-bench"))

RECIPE = {
    "scale": "s",
    "reg-max": 16,
    "imgsz": 320,
    "epochs": 60,
    "batch": 8,
    "nominal-batch": 8,
    "optimizer": "sgd",
    "lr": 0.01,
    "close-mosaic": 10,
    "seed": 0,
    "val-interval": 10,
}


def recipe_tag() -> str:
    """A short hash of the recipe: a changed recipe trains (and caches) a new file."""
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:8]


def weights_path() -> Path:
    return CACHE / f"reference-s-coco128-{recipe_tag()}.safetensors"


def reference_weights() -> Path | None:
    """The trained reference weights if this recipe has been trained here, else ``None``."""
    path = weights_path()
    return path if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-path", action="store_true", help="print the weights' path and exit")
    parser.add_argument("--force", action="store_true", help="train again even if the weights exist")
    parser.add_argument("--workers", type=int, default=1, help="data-loading processes (default: %(default)s)")
    args = parser.parse_args()
    target = weights_path()
    if args.print_path:
        print(target)
        return
    if target.is_file() and not args.force:
        print(f"already trained: {target}")
        return
    train = SHARED / "data" / "coco128-seg"
    val = SHARED / "data" / "tiny-coco" / "small_coco"
    if not train.is_dir():
        raise SystemExit(f"no training data at {train} (set FASTSAM_SHARED)")
    run = Path(tempfile.mkdtemp(prefix="fastsam-reference-"))
    command = [sys.executable, "-m", "fastsam.cli.main", "train", "--data", str(train), "--val", str(val),
               "--cos-lr", "--device", "cpu", "--workers", str(args.workers), "--out", str(run), "--no-progress"]
    for key, value in RECIPE.items():
        command += [f"--{key}", str(value)]
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    minutes = (time.perf_counter() - start) / 60
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "weights" / "last.safetensors", target.with_suffix(".tmp"))
    os.replace(target.with_suffix(".tmp"), target)
    log = {"recipe": RECIPE, "command": command, "minutes": round(minutes, 1), "weights": str(target)}
    for name in ("results.csv",):
        if (run / name).is_file():
            log["log"] = (run / name).read_text()
    (target.with_suffix(".json")).write_text(json.dumps(log, indent=2))
    print(f"trained in {minutes:.1f} min: {target}")


if __name__ == "__main__":
    main()
