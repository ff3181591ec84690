"""Tracker cost per frame: ``MaskTracker.update`` with 300 masks of a 1280x720 video (target: <= 5 ms a frame).

The masks are real object shapes (coco128-seg polygons, ``$FASTSAM_SHARED/data/coco128-seg``; random ellipses
without it) at sizes spread like an everything-mode result (long side log-uniform in 12-320 px, a fifth of them
parts of another mask), held as box windows as ``FastSAM.predict`` returns them on a CPU, each moving at its own
constant speed (up to 6 px a frame, bouncing off the borders) with a pixel of jitter, and scores spread over [0.1, 1]. Timed: one
``update(boxes, scores, windows)`` per frame (``--repeats`` passes, fresh trackers), grid sampling of the masks included;
with ``--best-of N`` each frame's update is also run on N copies of the tracker and the fastest kept (on a machine
shared with other jobs, the median of those is the estimate least inflated by the others) (the network and RLE encoding
are not: the RLE time is reported beside it for scale). Also reported: how many masks keep their id from one frame
to the next, for masks of at least 400 pixels and for smaller ones (those moving about their own size a frame are
matched by box IoU alone, as in ByteTrack, and some change ids). Prints a markdown table and writes JSON to bench/results/tracker.json.

    python bench/tracker.py [--masks 300] [--width 1280 --height 720] [--frames 60]
    chrt -f 50 python bench/tracker.py   # on a machine busy with other jobs: not time-sliced with them (root)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fastsam.masks import WindowedMasks
from fastsam.ops.rle import windows_to_rle
from fastsam.video.tracking import MaskTracker, TrackerConfig


def shapes(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` object outlines as ``(K, 2)`` polygons in [0, 1]^2 (coco128-seg if found, else ellipses)."""
    root = Path(os.environ.get("FASTSAM_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))
    labels = sorted((root / "data" / "coco128-seg" / "labels" / "train2017").glob("*.txt"))
    polygons = []
    for path in labels:
        for line in path.read_text().splitlines():
            values = np.array(line.split()[1:], dtype=np.float64)
            if len(values) >= 12:
                poly = values.reshape(-1, 2)
                span = poly.max(0) - poly.min(0)
                if span.min() > 0.02:
                    polygons.append((poly - poly.min(0)) / span.max())
    if not polygons:
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        polygons = [np.stack([0.5 + 0.5 * np.cos(t), 0.5 + 0.3 * np.sin(t)], 1)]
    return [polygons[i] for i in rng.integers(0, len(polygons), count)]


def rasterize(poly: np.ndarray, size: int) -> np.ndarray:
    canvas = Image.new("L", (size + 2, size + 2), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in (poly * size + 1).tolist()], fill=1)
    mask = np.asarray(canvas).astype(bool)
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if ys.size else np.ones((1, 1), bool)


def make_scene(n: int, height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sprites, origin, velocity = [], [], []
    parents = int(n * 0.8)
    for poly in shapes(parents, rng):
        size = int(np.exp(rng.uniform(np.log(12), np.log(320))))
        sprite = rasterize(poly, size)
        sprites.append(sprite)
        origin.append([rng.uniform(0, width - sprite.shape[1]), rng.uniform(0, height - sprite.shape[0])])
        velocity.append(rng.uniform(-6, 6, 2))
    for _ in range(n - parents):  # parts: the upper-left quarter-ish of a parent, moving with it
        k = int(rng.integers(0, parents))
        h, w = sprites[k].shape
        part = sprites[k][: max(1, h // 2), : max(1, w // 2)].copy()
        sprites.append(part if part.any() else sprites[k])
        origin.append(list(origin[k]))
        velocity.append(velocity[k])
    return sprites, np.array(origin), np.array(velocity), rng.uniform(0.1, 1.0, n)


def _bounce(position: float, span: int) -> int:
    """``position`` folded back into ``[0, span]``: objects bounce off the image borders and stay in view."""
    if span <= 0:
        return 0
    folded = position % (2 * span)
    return round(span - abs(folded - span))


def frame_masks(sprites, origin, velocity, t: int, height: int, width: int, rng) -> tuple[WindowedMasks, np.ndarray]:
    windows, bounds = [], []
    for sprite, (x, y), (vx, vy) in zip(sprites, origin.tolist(), velocity.tolist()):
        h, w = sprite.shape
        x = _bounce(x + vx * t, width - w) + int(rng.integers(-1, 2))
        y = _bounce(y + vy * t, height - h) + int(rng.integers(-1, 2))
        x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        windows.append(sprite[y1 - y : y2 - y, x1 - x : x2 - x])
        bounds.append([x1, y1, x2, y2])
    bounds = np.array(bounds, np.int64)
    return WindowedMasks(windows, bounds, (height, width)), bounds.astype(np.float32)


def _policy() -> str:
    """This process's scheduling policy: SCHED_FIFO when run under ``chrt -f`` (not time-sliced with other jobs)."""
    names = {getattr(os, n): n for n in ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH") if hasattr(os, n)}
    return names.get(os.sched_getscheduler(0), "other") if hasattr(os, "sched_getscheduler") else "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=300)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--grid-cells", type=int, default=TrackerConfig.grid_cells,
                        help="TrackerConfig.grid_cells (default: %(default)s)")  # fmt: skip
    parser.add_argument("--track-cells", type=int, default=TrackerConfig.track_cells,
                        help="TrackerConfig.track_cells (default: %(default)s)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="passes over the frames (default: %(default)s)")
    parser.add_argument("--best-of", type=int, default=5,
                        help="also time each frame's update on this many copies of the tracker and keep the fastest "
                        "(a load-robust estimate on a shared machine) (default: %(default)s)")  # fmt: skip
    parser.add_argument("--output", default="tracker", help="JSON name in bench/results/ (default: %(default)s)")
    args = parser.parse_args()
    h, w = args.height, args.width
    sprites, origin, velocity, scores = make_scene(args.masks, h, w)
    rng = np.random.default_rng(1)
    frames = [frame_masks(sprites, origin, velocity, t, h, w, rng) for t in range(args.frames)]
    wall, cpu, best, kept, rle_ms = [], [], [], [], []
    small = np.array([sprite.sum() < 400 for sprite in sprites])  # under 20x20 pixels
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):  # fresh trackers over the same frames: the median is over every timed frame
        tracker = MaskTracker((h, w), TrackerConfig(grid_cells=args.grid_cells, track_cells=args.track_cells))
        previous = None
        twin_source = copy.deepcopy(tracker)
        for t, (masks, boxes) in enumerate(frames):
            start, start_cpu = time.perf_counter(), time.thread_time()
            update = tracker.update(boxes, scores, masks)
            if t >= 2:  # the first frames start the tracks
                wall.append((time.perf_counter() - start) * 1000)
                cpu.append((time.thread_time() - start_cpu) * 1000)
            if t >= 2 and args.best_of > 1:  # the same update on copies of the tracker: the fastest of them
                fastest = []
                for twin in [copy.deepcopy(twin_source) for _ in range(args.best_of)]:
                    start = time.perf_counter()
                    twin.update(boxes, scores, masks)
                    fastest.append((time.perf_counter() - start) * 1000)
                best.append(min(fastest + [wall[-1]]))
            twin_source = copy.deepcopy(tracker)
            if previous is not None:
                both = (previous > 0) & (update.track_ids > 0)
                kept.append([float(np.mean((previous == update.track_ids)[both & size])) for size in (small, ~small)])
            previous = update.track_ids
            if t % 10 == 0:
                start = time.perf_counter()
                windows_to_rle(masks.windows, masks.bounds, (h, w))
                rle_ms.append((time.perf_counter() - start) * 1000)
    timed = wall
    grid = tracker._masks.grid
    areas = np.array([int(win.sum()) for win in frames[0][0].windows])
    out = {
        "command": "python " + " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "scheduler": _policy(),
                    "load_average_before_after": [load_before, os.getloadavg()[0]]},
        "repeats": args.repeats,
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "masks": args.masks, "size": [h, w], "frames": args.frames, "grid": list(grid), "stride": tracker.stride,
        "mask_coverage": float(areas.sum() / (h * w)), "median_mask_area": float(np.median(areas)),
        "ms_per_frame": {"median": statistics.median(timed), "p90": float(np.percentile(timed, 90)),
                         "max": max(timed), "cpu_median": statistics.median(cpu),
                         "best_of_median": statistics.median(best) if best else None},
        "ids_kept_frame_to_frame": {"masks under 400 px": float(np.mean([k[0] for k in kept])),
                                    "masks of 400 px or more": float(np.mean([k[1] for k in kept]))},
        "small_masks": int(small.sum()), "tracks_started_last_pass": tracker.started,
        "rle_encode_ms_for_scale": statistics.median(rle_ms),
    }  # fmt: skip
    path = Path(__file__).resolve().parent / "results" / f"{args.output}.json"
    path.write_text(json.dumps(out, indent=2))
    ms = out["ms_per_frame"]
    kept = out["ids_kept_frame_to_frame"]
    print("| masks | frame | ms/frame median | p90 | CPU ms median | best-of median | ids kept (>= 400 px / smaller) "
          "| RLE ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    best_ms = "n/a" if ms["best_of_median"] is None else f"{ms['best_of_median']:.2f}"
    print(f"| {args.masks} | {w}x{h} | {ms['median']:.2f} | {ms['p90']:.2f} | {ms['cpu_median']:.2f} | {best_ms} | "
          f"{100 * kept['masks of 400 px or more']:.1f} % / {100 * kept['masks under 400 px']:.1f} % | {out['rle_encode_ms_for_scale']:.1f} |")  # fmt: skip
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
