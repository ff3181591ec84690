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
* ``ultralytics``     ``ultralytics.FastSAM(w)`` (PyTorch, the anchor), s and x only
* ``ultralytics ov``  ultralytics' own OpenVINO export of the same checkpoint (``export(format="openvino")``,
                      loaded back with ``ultralytics.FastSAM(folder)``): the anchor's fastest CPU path

the same work as ``vs_ultralytics.py``: image path in, every mask out as COCO RLE, everything mode, conf 0.4,
iou 0.9, max_det 300, full-resolution masks. Timing: all paths loaded in this one process and interleaved (each
repetition and photo runs every path, in an order rotated per repetition), ``torch.set_num_threads`` before every
call, a warm-up pass excluded; ms/image = mean over the timed photos of each photo's median. Agreement: on every
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
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default="precision")
    a = p.parse_args()
    if a.quick:
        a.networks, a.imgsz, a.repeats, a.extra_images, a.images = "s", 640, 1, 0, ["dog.jpg", "cat.jpg"]
    a.networks = a.networks.split(",")
    a.paths = a.paths.split(",") if a.paths else None
    return a


class Path_:
    """One way of segmenting: ``__call__(image path) -> list of COCO RLEs``."""

    def __init__(self, name: str, run) -> None:
        self.name, self.run = name, run

    def __call__(self, image: Path, imgsz: int) -> list[dict]:
        return self.run(image, imgsz)


def ours(model) -> callable:
    def run(image: Path, imgsz: int) -> list[dict]:
        [r] = model.predict(str(image), imgsz=imgsz, retina=True, **vu.SETTINGS)
        return r.to_rle()

    return run


def ultralytics_run(model) -> callable:
    import numpy as np
    from pycocotools import mask as mask_utils

    def run(image: Path, imgsz: int) -> list[dict]:
        [r] = model.predict(str(image), imgsz=imgsz, retina_masks=True, verbose=False, **vu.SETTINGS)
        masks = r.masks.data.cpu().numpy() if r.masks is not None else np.zeros((0, 1, 1), np.uint8)
        return [mask_utils.encode(np.asfortranarray(m.astype(np.uint8, copy=False))) for m in masks]

    return run


def build_paths(network: str, weights: Path, a: argparse.Namespace, workdir: Path) -> list[Path_]:
    from fastsam.engine import FastSAM, load_model
    from fastsam.export.openvino import export_openvino

    wanted = lambda name: a.paths is None or name in a.paths or name == "ours fp32"  # noqa: E731
    paths = [Path_("ours fp32", ours(FastSAM(str(weights), device="cpu", precision="fp32")))]
    if wanted("ours bf16"):
        paths.append(Path_("ours bf16", ours(FastSAM(str(weights), device="cpu", precision="bf16"))))
    net = load_model(str(weights), "cpu")
    if wanted("ours ov-fp32") or wanted("ours ov-bf16"):
        ir = workdir / f"{network}_openvino"
        if not ir.exists():
            export_openvino(net, ir, imgsz=a.imgsz)
        for precision in ("fp32", "bf16"):
            if wanted(f"ours ov-{precision}"):
                paths.append(Path_(f"ours ov-{precision}", ours(FastSAM(ir, device="cpu", precision=precision))))
    if wanted("ours ov-int8"):
        ir8 = workdir / f"{network}_openvino_int8_{a.imgsz}_{a.calibration_size}"
        if not ir8.exists():
            print(f"[{network}] INT8 calibration on {a.calibration_size} images ...", file=sys.stderr, flush=True)
            export_openvino(net, ir8, imgsz=a.imgsz, int8=True, data=a.calibration, calibration_size=a.calibration_size)
        paths.append(Path_("ours ov-int8", ours(FastSAM(ir8, device="cpu", precision="int8"))))
    if network != "reference":
        import ultralytics

        if wanted("ultralytics"):
            paths.append(Path_("ultralytics", ultralytics_run(ultralytics.FastSAM(str(weights)))))
        if wanted("ultralytics ov"):
            folder = weights.parent / f"{weights.stem}_openvino_model"
            stamp = folder / f"imgsz{a.imgsz}"
            if not stamp.exists():
                exported = ultralytics.FastSAM(str(weights)).export(format="openvino", imgsz=a.imgsz, verbose=False)
                folder = Path(exported)
                stamp = folder / f"imgsz{a.imgsz}"
                stamp.touch()
            paths.append(Path_("ultralytics ov", ultralytics_run(ultralytics.FastSAM(str(folder)))))
    return paths


def main() -> None:
    import torch

    from fastsam.evaluation.agreement import Agreement, mask_agreement

    a = parse_args()
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
            outs = {}
            for path in paths:
                torch.set_num_threads(a.threads)
                outs[path.name] = path(image, a.imgsz)
            for name, rles in outs.items():
                one = mask_agreement(outs["ours fp32"], rles)
                agree[name] = agree[name] + one
                per_image[name][image.name] = one.matched_fraction
        times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for rep in range(a.repeats):
            order = paths[rep % len(paths):] + paths[: rep % len(paths)]
            for image in timed:
                for path in order:
                    torch.set_num_threads(a.threads)
                    start = time.perf_counter()
                    path(image, a.imgsz)
                    ms = (time.perf_counter() - start) * 1000
                    times[path.name][image.name].append(ms)
                    runs.append(dict(network=network, path=path.name, image=image.name, rep=rep, ms=ms))
            print(f"[{network}] repetition {rep + 1}/{a.repeats}", file=sys.stderr, flush=True)
        for path in paths:
            ms = statistics.fmean(statistics.median(v) for v in times[path.name].values()) if a.repeats else None
            g = agree[path.name]
            summary.append(dict(network=network, path=path.name, ms_per_image=ms, masks_fp32=g.reference,
                                masks=g.candidate, matched=g.matched_fraction, mean_iou=g.mean_iou,
                                matched_by_image=per_image[path.name]))  # fmt: skip
        del paths

    payload = {
        "command": vu.command_line(),
        "machine": machine,
        "git": vu.git_state(),
        "versions": vu.package_versions("fastsam", "torch", "openvino", "nncf", "ultralytics", "numpy"),
        "settings": dict(vu.SETTINGS, imgsz=a.imgsz, repeats=a.repeats, threads=a.threads, timed=[p.name for p in timed],
                         agreement_extra=[p.name for p in extra], calibration=a.calibration,
                         calibration_size=a.calibration_size, iou_threshold=0.9),
        "summary": summary,
        "runs": runs,
    }  # fmt: skip
    out = vu.write_json(a.output, payload)
    print(f"\nCPU paths, everything + COCO RLE, imgsz {a.imgsz}, {a.threads} threads, {len(timed)} timed photos x "
          f"{a.repeats}, agreement on {len(timed) + len(extra)} photos vs ours fp32; JSON: {os.path.relpath(out, vu.ROOT)}\n")
    print("| network | path | ms/image | vs ultralytics | vs ultralytics ov | masks fp32 / path | matched @0.9 | mean IoU |")
    print("|---|---|---|---|---|---|---|---|")
    for row in summary:
        base = {r["path"]: r["ms_per_image"] for r in summary if r["network"] == row["network"]}
        ratio = lambda key: f"{base[key] / row['ms_per_image']:.2f}x" if key in base and row["ms_per_image"] else "–"  # noqa: E731
        ms = f"{row['ms_per_image']:,.0f}" if row["ms_per_image"] else "–"
        print(f"| {row['network']} | {row['path']} | {ms} | {ratio('ultralytics')} | {ratio('ultralytics ov')} | "
              f"{row['masks_fp32']} / {row['masks']} | {100 * row['matched']:.1f} % | {row['mean_iou']:.4f} |")


if __name__ == "__main__":
    main()
