"""End-to-end GPU throughput: images/s including COCO RLE output, for the backends available on the machine.

PyTorch fp16 eager (RLE encoded on the GPU, and ``eager-host-rle``: masks moved to the host and encoded there),
PyTorch fp16 + torch.compile, ONNX Runtime (CUDA and TensorRT providers, where installed);
FastSAM-s and -x shapes (random weights: speed does not depend on their values) at imgsz 1024, batch 1 and 8,
on the real photos of $FASTSAM_SHARED/data/images. Prints a markdown table last and writes JSON to
bench/results/gpu.json. Meant to run in one call of a few minutes (see bench/gpu.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTSAM_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT / "tests"))


def run_case(model, images, batch: int, imgsz: int, seconds: float, host_rle: bool = False) -> dict:
    """Images/s over a bounded time, batches of ``batch`` images, masks encoded as RLE (on the device the masks
    were made on; ``host_rle``: the masks moved to the host first and encoded there, the path before device RLE)."""
    from fastsam.ops.rle import mask_to_rle

    def encode(result) -> None:
        mask_to_rle(result.masks) if host_rle else result.to_rle()

    work = (images * (batch // len(images) + 1))[:batch]
    results = model.predict(work, imgsz=imgsz, batch_size=batch)  # warm-up (and compile)
    for r in results:
        encode(r)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for r in model.predict(work, imgsz=imgsz, batch_size=batch):
            encode(r)
        count += batch
    elapsed = time.perf_counter() - start
    return {"images": count, "seconds": elapsed, "images_per_s": count / elapsed}


def synthetic_photos(count: int = 8) -> list:
    """Stand-ins where the shared photos did not travel (a lent GPU machine gets the repository only): the SA-1B
    photos' size, 1500x2250, smooth gradients with rectangles. Speed depends on the size and the mask count."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        image = np.empty((1500, 2250, 3), np.uint8)
        image[:] = np.linspace(0, 255, 2250, dtype=np.uint8)[None, :, None]
        for _ in range(40):
            y, x = rng.integers(0, 1400), rng.integers(0, 2150)
            image[y : y + rng.integers(30, 600), x : x + rng.integers(30, 600)] = rng.integers(0, 256, 3)
        out.append(image)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="s,x")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per case")
    parser.add_argument("--backends", default="eager,eager-host-rle,compile,ort-cuda,ort-trt")
    args = parser.parse_args()

    from model_factory import random_network

    from fastsam.engine import FastSAM
    from fastsam.io import load_image

    paths = sorted((SHARED / "data" / "images").rglob("*.jpg"))[:8]
    images = [load_image(p) for p in paths] or synthetic_photos()
    source = f"{len(paths)} photos of {SHARED / 'data' / 'images'}" if paths else "8 synthetic 1500x2250 images"
    print(f"images: {source}", flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows, work = [], Path(tempfile.mkdtemp())
    for scale in args.scales.split(","):
        reg_max = 26 if scale == "x" else 16
        net = random_network(scale, reg_max, seed=0).fuse()
        for backend in args.backends.split(","):
            try:
                if backend in ("eager", "eager-host-rle", "compile"):
                    model = FastSAM(net, device=device, half=device == "cuda")
                    if backend == "compile":
                        model.network = torch.compile(model.network, dynamic=False)
                else:
                    from fastsam.backends import OnnxRuntimeNetwork
                    from fastsam.export import export_onnx

                    onnx_path = export_onnx(net, work / f"{scale}.onnx", imgsz=args.imgsz, dynamic=True)
                    ort_device = "tensorrt" if backend == "ort-trt" else "cuda"
                    network = OnnxRuntimeNetwork(onnx_path, device=ort_device)
                    wanted = "TensorrtExecutionProvider" if backend == "ort-trt" else "CUDAExecutionProvider"
                    if network.providers[0] != wanted:  # it fell back: a CPU number under a GPU label misleads
                        raise RuntimeError(f"{wanted} not in this onnxruntime (would run on {network.providers[0]})")
                    model = FastSAM(network)
            except Exception as err:  # a backend missing on this machine: say so, go on
                rows.append({"scale": scale, "backend": backend, "error": f"{type(err).__name__}: {err}"[:200]})
                continue
            for batch in (int(b) for b in args.batches.split(",")):
                try:
                    row = run_case(model, images, batch, args.imgsz, args.seconds, host_rle=backend == "eager-host-rle")
                except Exception as err:
                    row = {"error": f"{type(err).__name__}: {err}"[:200]}
                rows.append({"scale": scale, "backend": backend, "batch": batch, **row})
                print(rows[-1], flush=True)
    card = torch.cuda.get_device_name() if device == "cuda" else platform.processor()
    out = ROOT / "bench" / "results" / "gpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "device": card,
                               "torch": torch.__version__, "imgsz": args.imgsz, "images": source, "rows": rows}, indent=2))  # fmt: skip
    print(f"\nFastSAM end to end (network + masks + RLE), imgsz {args.imgsz}, {card}\n")
    print("| model | backend | batch | images/s |\n|---|---|---|---|")
    for r in rows:
        value = f"{r['images_per_s']:.1f}" if "images_per_s" in r else f"n/a ({r['error']})"
        print(f"| FastSAM-{r['scale']} | {r['backend']} | {r.get('batch', '-')} | {value} |")


if __name__ == "__main__":
    main()
