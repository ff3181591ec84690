"""Network forward time on CPU: ONNX Runtime vs our PyTorch network, batch 1, float32.

For each scale, imgsz and thread count: random weights of that scale (timing does not depend on the values),
fused; the ONNX is a static export at that size. Both runtimes use the same number of threads. PyTorch runs
channels-last, as fastsam.engine.FastSAM does on CPU. After warm-up the runs alternate (PyTorch, ONNX Runtime,
PyTorch, ...) so that load from other processes hits both alike; medians are reported.
Prints a markdown table and writes JSON to bench/results/backends.json.

    python bench/backends.py [--scales n s] [--sizes 640 1024] [--runs 15] [--warmup 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def end_to_end_runners(net, onnx_path: Path, imgsz: int, threads: int, image: str):
    """Two callables: PyTorch and ONNX Runtime ``FastSAM.predict`` + RLE on one photo (same pre/post-processing)."""
    from fastsam.engine import FastSAM
    from fastsam.export import export_onnx
    from fastsam.io import load_image

    if not onnx_path.exists():
        export_onnx(net, onnx_path, imgsz=imgsz, dynamic=True)
    array = load_image(image)
    ours = FastSAM(net, device="cpu", precision="fp32")  # ONNX Runtime runs the fp32 export
    ort = FastSAM(onnx_path, device="cpu", backend="onnxruntime", threads=threads)
    [a], [b] = ours.predict(array, imgsz=imgsz), ort.predict(array, imgsz=imgsz)
    print(f"  masks torch {len(a)} / onnxruntime {len(b)}", file=sys.stderr)
    return (lambda: [r.to_rle() for r in ours.predict(array, imgsz=imgsz)],
            lambda: [r.to_rle() for r in ort.predict(array, imgsz=imgsz)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["n", "s"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[640, 1024])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per runtime (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", nargs="+", type=int, default=sorted({1, os.cpu_count() or 1}),
                        help="thread counts, each used by both runtimes (default: 1 and all CPUs)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="time FastSAM.predict + COCO RLE on --image (dynamic ONNX export) instead of the forward")
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "data" / "images" / "segment-anything" / "truck.jpg"))
    parser.add_argument("--output", default="backends", help="JSON name under bench/results/ (default: %(default)s)")
    args = parser.parse_args()

    import onnx
    import onnxruntime

    from fastsam.backends import OnnxRuntimeNetwork
    from fastsam.export import export_onnx
    from model_factory import random_network

    tmp = Path(tempfile.mkdtemp())
    rows = []
    load_before = load_average()
    for scale in args.scales:
        net = random_network(scale).fuse().eval()
        for imgsz, threads in [(i, t) for i in args.sizes for t in args.threads]:
            path = tmp / f"{scale}-{imgsz}.onnx"
            if not path.exists() and not args.end_to_end:
                export_onnx(net, path, imgsz=imgsz)
            torch.set_num_threads(threads)
            if args.end_to_end:
                run_torch, run_ort = end_to_end_runners(net, tmp / f"{scale}-dynamic.onnx", imgsz, threads, args.image)
            else:
                runner = OnnxRuntimeNetwork(path, device="cpu", threads=threads)
                x = torch.rand(1, 3, imgsz, imgsz)
                x_cl = x.contiguous(memory_format=torch.channels_last)
                torch_net = net.to(memory_format=torch.channels_last)  # as fastsam.engine.FastSAM runs on CPU

                def run_torch() -> None:
                    with torch.inference_mode():
                        torch_net(x_cl)

                def run_ort() -> None:
                    runner(x)

            for _ in range(args.warmup):
                run_torch()
                run_ort()
            times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            for _ in range(args.runs):
                for name, fn in (("torch", run_torch), ("onnxruntime", run_ort)):
                    start = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - start) * 1000)
            row = {
                "scale": scale,
                "imgsz": imgsz,
                "threads": threads,
                "torch_ms": statistics.median(times["torch"]),
                "onnxruntime_ms": statistics.median(times["onnxruntime"]),
                "torch_ms_all": [round(t, 1) for t in times["torch"]],
                "onnxruntime_ms_all": [round(t, 1) for t in times["onnxruntime"]],
            }
            row["speedup"] = row["torch_ms"] / row["onnxruntime_ms"]
            rows.append(row)
            print(f"{scale} {imgsz} {threads} threads: torch {row['torch_ms']:.0f} ms, "
                  f"onnxruntime {row['onnxruntime_ms']:.0f} ms", file=sys.stderr, flush=True)  # fmt: skip

    what = f"end to end on {Path(args.image).name} (predict + RLE)" if args.end_to_end else "forward"
    print(f"CPU {what}, batch 1, float32, same thread count for both, median of {args.runs} interleaved runs "
          f"after {args.warmup} warm-up (load average before {load_before}, after {load_average()})\n")  # fmt: skip
    print("| scale | imgsz | threads | PyTorch ms | ONNX Runtime ms | PyTorch / ORT |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scale']} | {r['imgsz']} | {r['threads']} | {r['torch_ms']:.0f} | {r['onnxruntime_ms']:.0f} "
              f"| {r['speedup']:.2f} |")  # fmt: skip
    out = ROOT / "bench" / "results" / f"{args.output}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "machine": platform.platform(), "processor": cpu_model(),
        "cpus": os.cpu_count(), "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
        "load_average_before": load_before, "load_average_after": load_average(),
        "note": "shared machine: other processes ran concurrently; runs interleaved, medians reported",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
        "results": rows,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
