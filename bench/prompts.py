"""Prompt latency after set_image: point and box selection over cached masks (no network).

Builds 300 full-resolution masks of a 1024x1024 image (random discs and rectangles, like an everything-mode
result) held as box windows, as ``FastSAM.predict`` returns them, then times the prompt calls the way an
interactive user makes them. The index build is timed from the windows and from the laid-out ``(N, H, W)`` array. Prints a markdown table and writes
JSON to bench/results/prompts.json.

    python bench/prompts.py [--masks 300] [--size 1024] [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fastsam.masks import WindowedMasks
from fastsam.ops.rle import mask_to_box, tight_windows
from fastsam.predictor import SegmentedImage
from fastsam.results import SegmentationResult


def make_result(n: int, size: int, seed: int = 0) -> SegmentationResult:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    yy, xx = np.ogrid[:size, :size]
    for i in range(n):
        cx, cy, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(8, size // 3))]
        x1, x2, y1, y2 = max(cx - r, 0), min(cx + r, size), max(cy - r, 0), min(cy + r, size)
        if i % 2:
            masks[i, y1:y2, x1:x2] = (xx[:, x1:x2] - cx) ** 2 + (yy[y1:y2] - cy) ** 2 < r * r
        else:
            masks[i, y1:y2, x1:x2] = True
    scores = np.sort(rng.random(n).astype(np.float32))[::-1]
    return SegmentationResult(masks, mask_to_box(masks), scores, (size, size))


def as_windows(result: SegmentationResult) -> SegmentationResult:
    """The same masks held as their tight-box windows (what ``FastSAM.predict`` returns on a CPU)."""
    windows, bounds = tight_windows(result.masks)
    masks = WindowedMasks([w.copy() for w in windows], bounds, result.image_size)
    return SegmentationResult(masks, result.boxes, result.scores, result.image_size)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    dense = make_result(args.masks, args.size)
    result = as_windows(dense)
    index_ms = {
        name: timed(lambda r=r: SegmentedImage(r).index, 5)  # built once per image, right after the network
        for name, r in (("windows", result), ("array", dense))
    }
    session = SegmentedImage(result)
    rng = np.random.default_rng(1)
    s = args.size
    cases = {
        "1 point": lambda: session.points([[s // 2, s // 2]]),
        "10 points (5 fg, 5 bg)": lambda: session.points(rng.integers(0, s, (10, 2)), [1, 0] * 5),
        "1 point, multimask": lambda: session.points([[s // 2, s // 2]], multimask=True),
        "1 point, official merge": lambda: session.points([[s // 2, s // 2]], mode="official"),
        "1 box (half the image)": lambda: session.boxes([[s // 4, s // 4, 3 * s // 4, 3 * s // 4]]),
        "1 box (whole image)": lambda: session.boxes([[0, 0, s, s]]),
        "10 boxes": lambda: session.boxes(
            [[x, y, x + s // 4, y + s // 4] for x, y in rng.integers(0, 3 * s // 4, (10, 2)).tolist()]
        ),
    }
    rows = [(name, timed(fn, args.repeats)) for name, fn in cases.items()]
    print(f"Prompt latency after set_image: {args.masks} masks of {s}x{s}, median of {args.repeats} runs\n")
    print("| prompt | ms |\n|---|---|")
    print(f"| (index build, once per image, from the windows) | {index_ms['windows']:.1f} |")
    print(f"| (index build from the laid-out array) | {index_ms['array']:.1f} |")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")
    out = Path(__file__).parent / "results" / "prompts.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__},
        "masks": args.masks, "size": s, "index_build_ms": index_ms,
        "median_ms": dict(rows),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
