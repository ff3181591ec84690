"""Every CPU path side by side: precision x backend, ours and ultralytics', time and mask agreement with fp32.

For each network (``reference``: the trained FastSAM-s-shaped network of ``bench/train_reference.py``; ``s``,
``x``: the random-weight FastSAM-s/-x checkpoints of ``bench/vs_ultralytics.py``, in ultralytics' format) and
each path:

* ``ours fp32``       ``FastSAM(w, precision="fp32")``: the reference masks of every agreement figure
* ``ours bf16``       ``FastSAM(w, precision="bf16")`` (mixed: the head's outputs stay float32)
* ``ours ov-fp32``    our OpenVINO export, ``precision="fp32"``
* ``ours ov-bf16``    the same IR, ``precision="bf16"``
* ``ours ov-int8``    ``fastsam export --int8``: NNCF on ``--calibration`` images (coco128-seg, none of the
                      measured photos), then ``precision="int8"``
* ``ours ort-int8``   ONNX Runtime static INT8 (``bench/ort_int8.py``: QDQ, MinMax on the same calibration images,
                      the same layers kept in float), run by our onnxruntime backend: a comparison, not a product path
* ``ultralytics``     ``ultralytics.FastSAM(w)`` (PyTorch, the anchor), s and x only
* ``ultralytics ov``  ultralytics' own OpenVINO export of the same checkpoint (``export(format="openvino")``,
                      loaded back with ``ultralytics.FastSAM(folder)``): the anchor's fastest CPU path

the same work as ``vs_ultralytics.py``: image path in, every mask out as COCO RLE, everything mode, conf 0.4,
iou 0.9 (conf --reference-conf for the weakly trained reference network), max_det 300, full-resolution masks. Timing: each path runs in a worker process of its own (loaded once,
then idle, blocked on its pipe, while the others run), so that no path's thread pools (PyTorch's OpenMP,
OpenVINO's TBB) or global settings (importing ultralytics resets torch's thread count) touch another's; the paths
are interleaved
(each repetition and photo runs every path, in an order rotated per repetition), a warm-up pass excluded;
ms/image = mean over the timed photos of each photo's median, timed inside the worker from the image path to
the list of RLEs; "best" = the same mean of each photo's fastest run (this shared 2-core machine's noise is
bimodal: for seconds at a time the same forward pass takes twice as long, so medians of a few runs move by 10-20 %
between runs; noise only adds time, and the fastest run is the steadier estimate of a path's own cost). Agreement: on every
photo (the timed ones and ``--extra-images`` BSDS500 test photos), each path's masks against ``ours fp32``'s:
fraction of fp32 masks matched one-to-one at IoU >= 0.9, and the mean IoU of the matches
(:func:`fastsam.evaluation.agreement.mask_agreement`). Ultralytics' paths are compared with ``ours fp32`` too (its
PyTorch path gives our fp32 masks, checked by the differential tests).

    python bench/precision.py --networks reference,s,x --imgsz 1024 --repeats 3
    python bench/precision.py --quick      # s only, 640, 1 repetition, no extra photos
Writes bench/results/precision.json (or --output NAME) and prints a markdown table last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import vs_ultralytics as vu  # noqa: E402  (sets ultralytics' offline environment first)
from train_reference import reference_weights  # noqa: E402

SHARED = vu.SHARED


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", default="reference,s,x", help="comma list of reference,s,x (default: %(default)s)")
    p.add_argument("--imgsz", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions per photo (default: %(default)s)")
    p.add_argument("--images", nargs="+", default=list(vu.DEFAULT_IMAGES), help="timed photos (default: 4)")
    p.add_argument("--extra-images", type=int, default=8, help="BSDS500 test photos for agreement only (default: 8)")
    p.add_argument("--calibration", default=str(SHARED / "data" / "coco128-seg" / "images"))
    p.add_argument("--calibration-size", type=int, default=32)
    p.add_argument("--paths", default=None, help="comma list of paths to run (default: all)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--reference-conf", type=float, default=0.05,
                   help="conf for the trained reference network, whose scores top out at 0.08-0.14 (default: %(default)s)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default="precision")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return a
    if a.quick:
        a.networks, a.imgsz, a.repeats, a.extra_images, a.images = "s", 640, 1, 0, ["dog.jpg", "cat.jpg"]
    a.networks = a.networks.split(",")
    a.paths = a.paths.split(",") if a.paths else None
    return a


SPEC_HELP = "run one path as a worker: a JSON spec {kind, model, precision, threads}; reads image paths on stdin"


def load_path(spec: dict):
    """The callable ``(image path, imgsz) -> list of COCO RLEs`` a worker spec describes."""
    import numpy as np

    if spec["kind"] == "ours":
        from fastsam.engine import FastSAM

        model = FastSAM(spec["model"], device="cpu", precision=spec["precision"])

        settings = dict(vu.SETTINGS, conf=spec.get("conf", vu.SETTINGS["conf"]))

        def run(image: str, imgsz: int) -> list[dict]:
            [r] = model.predict(image, imgsz=imgsz, retina=True, **settings)
            return r.to_rle()

        return run
    import ultralytics
    from pycocotools import mask as mask_utils

    model = ultralytics.FastSAM(spec["model"])

    def run(image: str, imgsz: int) -> list[dict]:
        [r] = model.predict(image, imgsz=imgsz, retina_masks=True, verbose=False, **vu.SETTINGS)
        masks = r.masks.data.cpu().numpy() if r.masks is not None else np.zeros((0, 1, 1), np.uint8)
        rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8, copy=False))) for m in masks]
        return [{"size": x["size"], "counts": x["counts"].decode()} for x in rles]

    return run


def worker(spec: dict) -> None:
    """Serve one path: a line ``{"image", "imgsz", "rles"}`` in, ``{"ms", "n", "rles"?}`` out."""
    import json

    import torch

    torch.set_num_threads(spec["threads"])
    run = load_path(spec)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        torch.set_num_threads(spec["threads"])  # importing ultralytics resets it
        start = time.perf_counter()
        rles = run(job["image"], job["imgsz"])
        ms = (time.perf_counter() - start) * 1000
        print(json.dumps({"ms": ms, "n": len(rles), **({"rles": rles} if job["rles"] else {})}), flush=True)


class Worker:
    """A path's worker process, driven over its pipes."""

    def __init__(self, name: str, spec: dict) -> None:
        import json
        import subprocess

        self.name, self._json = name, json
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)  # fmt: skip
        self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (see its stderr above)")
        return self._json.loads(line)

    def __call__(self, image: Path, imgsz: int, rles: bool = False) -> dict:
        self.process.stdin.write(self._json.dumps({"image": str(image), "imgsz": imgsz, "rles": rles}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def build_paths(network: str, weights: Path, a: argparse.Namespace, workdir: Path) -> list[Worker]:
    from fastsam.engine import load_model
    from fastsam.export.openvino import export_openvino

    wanted = lambda name: a.paths is None or name in a.paths or name == "ours fp32"  # noqa: E731
    specs: dict[str, dict] = {"ours fp32": dict(kind="ours", model=str(weights), precision="fp32")}
    if wanted("ours bf16"):
        specs["ours bf16"] = dict(kind="ours", model=str(weights), precision="bf16")
    net = load_model(str(weights), "cpu")
    if wanted("ours ov-fp32") or wanted("ours ov-bf16"):
        ir = workdir / f"{network}_openvino"
        if not ir.exists():
            export_openvino(net, ir, imgsz=a.imgsz)
        for precision in ("fp32", "bf16"):
            if wanted(f"ours ov-{precision}"):
                specs[f"ours ov-{precision}"] = dict(kind="ours", model=str(ir), precision=precision)
    if wanted("ours ov-int8"):
        ir8 = workdir / f"{network}_openvino_int8_{a.imgsz}_{a.calibration_size}"
        if not ir8.exists():
            print(f"[{network}] INT8 calibration on {a.calibration_size} images ...", file=sys.stderr, flush=True)
            export_openvino(net, ir8, imgsz=a.imgsz, int8=True, data=a.calibration, calibration_size=a.calibration_size)
        specs["ours ov-int8"] = dict(kind="ours", model=str(ir8), precision="int8")
    if wanted("ours ort-int8") and network == "x" and a.paths is None:
        print("[x] ours ort-int8 left out: MinMax calibration of FastSAM-x holds ~18 GB of activations (ask for it "
              "with --paths)", file=sys.stderr, flush=True)  # fmt: skip
    elif wanted("ours ort-int8"):
        from ort_int8 import quantize_onnx_int8

        onnx8 = workdir / f"{network}_ort_int8_{a.imgsz}_{a.calibration_size}.onnx"
        if not onnx8.exists():
            print(f"[{network}] ONNX Runtime INT8 calibration on {a.calibration_size} images ...", file=sys.stderr,
                  flush=True)  # fmt: skip
            quantize_onnx_int8(net, onnx8, a.imgsz, a.calibration, a.calibration_size)
        specs["ours ort-int8"] = dict(kind="ours", model=str(onnx8), precision="auto")
    if network != "reference":
        if wanted("ultralytics"):
            specs["ultralytics"] = dict(kind="ultralytics", model=str(weights), precision="fp32")
        if wanted("ultralytics ov"):
            import ultralytics

            folder = weights.parent / f"{weights.stem}_{a.imgsz}_openvino_model"  # ultralytics wants the suffix
            if not folder.exists():
                exported = ultralytics.FastSAM(str(weights)).export(format="openvino", imgsz=a.imgsz, verbose=False)
                Path(exported).rename(folder)
            specs["ultralytics ov"] = dict(kind="ultralytics", model=str(folder), precision="auto")
    del net
    conf = a.reference_conf if network == "reference" else vu.SETTINGS["conf"]
    return [Worker(name, dict(spec, threads=a.threads, conf=conf)) for name, spec in specs.items()]


def main() -> None:
    import json

    from fastsam.evaluation.agreement import Agreement, mask_agreement

    a = parse_args()
    if a.worker:
        worker(json.loads(a.worker))
        return
    machine = vu.machine_info(a.threads)
    timed = vu.resolve_images(a.images)
    extra = sorted((SHARED / "data" / "bsds500" / "images" / "test").glob("*.jpg"))[: a.extra_images]
    workdir = vu.CACHE / "precision"
    workdir.mkdir(parents=True, exist_ok=True)
    summary, runs = [], []
    for network in a.networks:
        if network == "reference":
            weights = reference_weights()
            if weights is None:
                print("no trained reference network yet: run python bench/train_reference.py", file=sys.stderr)
                continue
        else:
            weights = vu.ensure_checkpoint(network)
        paths = build_paths(network, weights, a, workdir)
        agree: dict[str, Agreement] = defaultdict(lambda: Agreement(0, 0, 0, 0.0))
        per_image: dict[str, dict[str, float]] = defaultdict(dict)
        print(f"[{network}] warm-up and agreement on {len(timed) + len(extra)} photos ...", file=sys.stderr, flush=True)
        for image in [*timed, *extra]:
            outs = {path.name: path(image, a.imgsz, rles=True)["rles"] for path in paths}
            for name, rles in outs.items():
                one = mask_agreement(outs["ours fp32"], rles)
                agree[name] = agree[name] + one
                per_image[name][image.name] = one.matched_fraction
        times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for rep in range(a.repeats):
            order = paths[rep % len(paths):] + paths[: rep % len(paths)]
            for image in timed:
                for path in order:
                    ms = path(image, a.imgsz)["ms"]
                    times[path.name][image.name].append(ms)
                    runs.append(dict(network=network, path=path.name, image=image.name, rep=rep, ms=ms))
            print(f"[{network}] repetition {rep + 1}/{a.repeats}", file=sys.stderr, flush=True)
        for path in paths:
            ms = statistics.fmean(statistics.median(v) for v in times[path.name].values()) if a.repeats else None
            best = statistics.fmean(min(v) for v in times[path.name].values()) if a.repeats else None
            g = agree[path.name]
            summary.append(dict(network=network, path=path.name, ms_per_image=ms, ms_best=best, masks_fp32=g.reference,
                                masks=g.candidate, matched=g.matched_fraction, mean_iou=g.mean_iou,
                                matched_by_image=per_image[path.name]))  # fmt: skip
            path.close()

    payload = {
        "command": vu.command_line(),
        "machine": machine,
        "git": vu.git_state(),
        "versions": vu.package_versions("fastsam", "torch", "openvino", "nncf", "onnxruntime", "ultralytics", "numpy"),
        "settings": dict(vu.SETTINGS, imgsz=a.imgsz, repeats=a.repeats, threads=a.threads, timed=[p.name for p in timed],
                         agreement_extra=[p.name for p in extra], calibration=a.calibration,
                         calibration_size=a.calibration_size, iou_threshold=0.9,
                         reference_conf=a.reference_conf),
        "summary": summary,
        "runs": runs,
    }  # fmt: skip
    out = vu.write_json(a.output, payload)
    print(f"\nCPU paths, everything + COCO RLE, imgsz {a.imgsz}, {a.threads} threads, {len(timed)} timed photos x "
          f"{a.repeats}, agreement on {len(timed) + len(extra)} photos vs ours fp32; JSON: {os.path.relpath(out, vu.ROOT)}\n")
    print("| network | path | ms/image | vs ultralytics | vs ultralytics ov | best ms (vs ultralytics) | masks fp32 / path "
          "| matched @0.9 | mean IoU |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for row in summary:
        mine = [r for r in summary if r["network"] == row["network"]]

        def ratio(key: str, stat: str = "ms_per_image", row: dict = row, mine: list = mine) -> str:
            base = {r["path"]: r[stat] for r in mine}
            return f"{base[key] / row[stat]:.2f}x" if key in base and row[stat] else "–"

        ms = f"{row['ms_per_image']:,.0f}" if row["ms_per_image"] else "–"
        best = f"{row['ms_best']:,.0f} ({ratio('ultralytics', 'ms_best')})" if row["ms_best"] else "–"
        print(f"| {row['network']} | {row['path']} | {ms} | {ratio('ultralytics')} | {ratio('ultralytics ov')} | {best} | "
              f"{row['masks_fp32']} / {row['masks']} | {100 * row['matched']:.1f} % | {row['mean_iou']:.4f} |")


if __name__ == "__main__":
    main()
