"""FastSAM everything mode, ours vs ultralytics: same checkpoint, same photos, same settings, masks out as COCO RLE.

Both implementations load the same ultralytics-format checkpoint (random weights in the shape of FastSAM-s and
FastSAM-x, made by ``tests/oracle/ultralytics_oracle.py make-checkpoint`` and cached; or real ones with
``--weights-s/--weights-x``) and segment the same real photos in everything mode with full-resolution ("retina")
masks, conf 0.4, iou 0.9, max_det 300, then get every mask out as COCO RLE the way a user would:

* ours:        ``[r] = FastSAM(ckpt, device="cpu", precision="fp32").predict(path, ...); r.to_rle()``
* ultralytics: ``[r] = ultralytics.FastSAM(ckpt).predict(path, ..., retina_masks=True)``;
               ``[pycocotools.mask.encode(np.asfortranarray(m)) for m in r.masks.data.cpu().numpy()]``

Timing: both run in this one process, interleaved (per repetition and image, ours then ultralytics on even
repetitions, the other way round on odd ones), ``torch.set_num_threads(--threads)`` before every call (ultralytics
resets torch's thread count), one warm-up pass per configuration excluded. Each call is timed from the image path
to the list of RLEs (JPEG decoding included on both sides). The time per image of a configuration is the mean over
the photos of each photo's median.

Also measured: mask agreement (from the warm-up outputs: mask counts, and the mean best-match IoU of our masks
against theirs and of theirs against ours, computed on the RLEs), peak memory (each side alone in its own
subprocess: its peak resident set size, VmHWM, and the increase over the peak after imports), and where our time
goes (stage timers around the pipeline's functions during the timed runs; ultralytics' own ``Results.speed``).

Prints the breakdown table, then the main table last; writes bench/results/vs_ultralytics.json.

    python bench/vs_ultralytics.py [--scales s,x] [--imgsz 640,1024] [--repeats 5] [--threads N]
        [--images dog.jpg cat.jpg ...] [--no-memory] [--quick] [--weights-s PATH] [--weights-x PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTSAM_SHARED", ROOT.parent / "shared"))
IMAGES_DIR = SHARED / "data" / "images"
ORACLE = ROOT / "tests" / "oracle" / "ultralytics_oracle.py"
RESULTS = ROOT / "bench" / "results"
DEFAULT_IMAGES = ("dog.jpg", "cat.jpg", "truck.jpg", "sa_192.jpg")
# scale -> (reg_max, seed, calibration size): as the differential tests make them (tests/test_oracle.py)
SPECS = {"s": (16, 1, 640), "x": (26, 2, 1024)}
SETTINGS = dict(conf=0.4, iou=0.9, max_det=300)  # the official FastSAM CLI's defaults
CACHE = Path(os.environ.get("FASTSAM_BENCH_CACHE", Path.home() / ".cache" / "fastsam-bench"))

# ultralytics must not touch the network nor write settings into the home directory
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
os.environ.setdefault("YOLO_VERBOSE", "False")
if not os.environ.get("YOLO_CONFIG_DIR"):
    os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolo_cfg_")


# ----------------------------------------------------------------------------------------------------------
# shared helpers (bench/vs_sam.py imports these)
# ----------------------------------------------------------------------------------------------------------
def resolve_images(names: list[str]) -> list[Path]:
    """Paths as given, else a file of that name under $FASTSAM_SHARED/data/images (searched recursively)."""
    out = []
    for name in names:
        path = Path(name)
        if not path.is_file():
            found = sorted(IMAGES_DIR.rglob(path.name)) if IMAGES_DIR.is_dir() else []
            if not found:
                sys.exit(f"image {name!r} not found (looked under {IMAGES_DIR}; set FASTSAM_SHARED)")
            path = found[0]
        out.append(path.resolve())
    return out


def bench_network(name: str, reference_conf: float) -> tuple[Path | None, float]:
    """Weights and conf of a benchmark network: ``"s"``/``"x"`` the random-weight checkpoints (made once, conf of
    :data:`SETTINGS`), ``"reference"`` the trained network of ``train_reference.py`` (None until it is trained)."""
    if name == "reference":
        from train_reference import reference_weights

        weights = reference_weights()
        if weights is None:
            print("no reference network (run bench/train_reference.py): skipped", file=sys.stderr)
        return weights, reference_conf
    return ensure_checkpoint(name), SETTINGS["conf"]


def ensure_checkpoint(scale: str, cache: Path = CACHE) -> Path:
    """A random-weight checkpoint of FastSAM-{scale}'s shape in ultralytics' release format (made once, cached).

    Its statistics are calibrated on the default photos (so that it gives tens to hundreds of masks on photos, like
    a trained network); making FastSAM-x's takes about a minute on two cores.
    """
    reg_max, seed, calib_size = SPECS[scale]
    calib = resolve_images(list(DEFAULT_IMAGES))
    spec = json.dumps([scale, reg_max, seed, calib_size, [p.name for p in calib]]).encode()
    key = hashlib.sha256(spec + ORACLE.read_bytes()).hexdigest()[:12]  # a changed oracle makes a new one
    out = cache / f"random-fastsam-{scale}-{key}.pt"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    print(f"making a random FastSAM-{scale} checkpoint with the oracle (cached at {out}) ...", file=sys.stderr)
    tmp = out.with_suffix(".tmp.pt")
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1))
    subprocess.run(
        [sys.executable, str(ORACLE), "make-checkpoint", "--scale", scale, "--reg-max", str(reg_max), "--seed",
         str(seed), "--format", "release", "--out", str(tmp), "--calib-size", str(calib_size),
         "--calib-images", *map(str, calib)],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    tmp.replace(out)
    return out


def package_versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info(threads: int) -> dict:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gb = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    return {
        "platform": platform.platform(),
        "processor": cpu_model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "memory_gb": mem_gb,
        "torch_threads": threads,
        "load_average_at_start": os.getloadavg(),
    }


def git_state() -> dict:
    """The commit measured and whether the package's sources differ from it (others edit them concurrently)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None, "src_modified": git("status", "--porcelain", "--", "src").splitlines()}


def command_line() -> str:
    return shlex.join(["python", os.path.relpath(sys.argv[0], ROOT) if Path(sys.argv[0]).is_absolute() else sys.argv[0],
                       *sys.argv[1:]])  # fmt: skip


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload["machine"]["load_average_at_end"] = os.getloadavg()
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB) since it started.

    ``VmHWM`` from /proc (per address space, so it starts afresh at exec); ``ru_maxrss`` is not used where /proc
    exists because Linux carries it over from the parent process across fork + exec.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ----------------------------------------------------------------------------------------------------------
# the two sides
# ----------------------------------------------------------------------------------------------------------
class Ours:
    name = "ours"

    def __init__(self, weights: Path, precision: str = "fp32") -> None:
        from fastsam.engine import FastSAM

        self.model = FastSAM(str(weights), device="cpu", precision=precision)

    def __call__(self, image: Path, imgsz: int) -> tuple[list, dict]:
        [result] = self.model.predict(str(image), imgsz=imgsz, retina=True, **SETTINGS)
        return result.to_rle(), {}


class OursWithArray(Ours):
    """Ours, also laying out the ``(N, H, W)`` mask array (``result.masks``), as a user who needs it would: RLE
    alone never needs it (it comes from the box windows), ultralytics always builds it."""

    name = "ours_array"

    def __init__(self, ours: Ours) -> None:
        self.model = ours.model  # the same model object

    def __call__(self, image: Path, imgsz: int) -> tuple[list, dict]:
        [result] = self.model.predict(str(image), imgsz=imgsz, retina=True, **SETTINGS)
        assert result.masks.ndim == 3
        return result.to_rle(), {}


class Theirs:
    name = "ultralytics"

    def __init__(self, weights: Path) -> None:
        import ultralytics

        self.model = ultralytics.FastSAM(str(weights))

    def __call__(self, image: Path, imgsz: int) -> tuple[list, dict]:
        import numpy as np
        from pycocotools import mask as mask_utils

        [result] = self.model.predict(str(image), imgsz=imgsz, retina_masks=True, verbose=False, **SETTINGS)
        start = time.perf_counter()
        masks = result.masks.data.cpu().numpy() if result.masks is not None else np.zeros((0, 1, 1), np.uint8)
        rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8, copy=False))) for m in masks]
        stages = {k: float(v) for k, v in result.speed.items()}
        stages["rle"] = (time.perf_counter() - start) * 1000
        return rles, stages


# ----------------------------------------------------------------------------------------------------------
# stage timers around our pipeline (where the time goes)
# ----------------------------------------------------------------------------------------------------------
OUR_STAGES = (
    # (stage, module, attribute[, class]) -- a function that no longer exists is simply not timed
    ("decode", "fastsam.engine", "load_image", None),
    ("preprocess", "fastsam.engine", "preprocess", "FastSAM"),
    ("network", "fastsam.engine", "infer", "FastSAM"),
    ("postprocess", "fastsam.engine", "postprocess", None),
    ("nms", "fastsam.postprocess", "select_detections", None),
    ("masks", "fastsam.postprocess", "masks_full_resolution", None),
    ("masks", "fastsam.postprocess", "masks_in_windows", None),
    ("to_numpy", "fastsam.engine", "to_result", None),
    ("rle", "fastsam.results", "to_rle", "SegmentationResult"),
)
TOP_STAGES = ("decode", "preprocess", "network", "postprocess", "to_numpy", "rle")


class StageTimer:
    """Wraps pipeline functions so that each call adds its wall time (ms) to ``self.ms[stage]``."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.missing: list[str] = []
        self._undo: list = []

    def install(self) -> StageTimer:
        import importlib

        for stage, module_name, attr, cls_name in OUR_STAGES:
            owner = importlib.import_module(module_name)
            if cls_name is not None:
                owner = getattr(owner, cls_name, None)
            original = getattr(owner, attr, None) if owner is not None else None
            if original is None:
                self.missing.append(f"{stage} ({module_name}.{cls_name + '.' if cls_name else ''}{attr})")
                continue

            def wrapper(*args, __fn=original, __stage=stage, **kwargs):
                start = time.perf_counter()
                try:
                    return __fn(*args, **kwargs)
                finally:
                    self.ms[__stage] += (time.perf_counter() - start) * 1000

            functools.update_wrapper(wrapper, original)
            setattr(owner, attr, wrapper)
            self._undo.append((owner, attr, original))
        return self

    def take(self) -> dict[str, float]:
        out = dict(self.ms)
        self.ms.clear()
        return out

    def remove(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


# ----------------------------------------------------------------------------------------------------------
# agreement
# ----------------------------------------------------------------------------------------------------------
def agreement(ours: list[dict], theirs: list[dict]) -> dict:
    """Counts and mean best-match IoU both ways (1.0 = every mask has an identical partner on the other side)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    def as_bytes(rles):
        return [{"size": r["size"], "counts": r["counts"].encode() if isinstance(r["counts"], str) else r["counts"]}
                for r in rles]  # fmt: skip

    out = {"n_ours": len(ours), "n_theirs": len(theirs), "same_count": len(ours) == len(theirs)}
    if not ours or not theirs:
        both_empty = not ours and not theirs
        out.update(iou_ours_to_theirs=float(both_empty), iou_theirs_to_ours=float(both_empty), identical_fraction=float(both_empty))
        return out
    a, b = as_bytes(ours), as_bytes(theirs)
    ious = np.asarray(mask_utils.iou(a, b, [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))
    best_ours = ious.max(1)
    out.update(
        iou_ours_to_theirs=float(best_ours.mean()),
        iou_theirs_to_ours=float(ious.max(0).mean()),
        min_best_iou=float(best_ours.min()),
        identical_fraction=float((best_ours >= 1.0 - 1e-12).mean()),
    )
    return out


# ----------------------------------------------------------------------------------------------------------
# memory: each side alone in a subprocess
# ----------------------------------------------------------------------------------------------------------
def memory_worker(side: str, weights: str, imgsz: int, images: list[str], threads: int) -> None:
    """Run one side on each image once (with RLE) and print its peak RSS as JSON (the parent reads it)."""
    import torch

    after_import = None
    if side == "ours":
        import fastsam.engine  # noqa: F401
        from pycocotools import mask  # noqa: F401

        after_import = peak_rss_mb()
        runner = Ours(Path(weights))
    else:
        import ultralytics  # noqa: F401
        from pycocotools import mask  # noqa: F401

        after_import = peak_rss_mb()
        runner = Theirs(Path(weights))
    after_load = peak_rss_mb()
    for image in images:
        torch.set_num_threads(threads)
        runner(Path(image), imgsz)
    peak = peak_rss_mb()
    print(json.dumps({"after_import_mb": after_import, "after_load_mb": after_load, "peak_mb": peak,
                      "delta_mb": peak - after_import}))  # fmt: skip


def measure_memory(side: str, weights: Path, imgsz: int, images: list[Path], threads: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--memory-worker", side, "--memory-weights", str(weights), "--imgsz", str(imgsz),
         "--threads", str(threads), "--images", *map(str, images)],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)),
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", default=None, help="comma list of s,x (default s,x; --quick: s)")
    p.add_argument("--imgsz", default=None, help="comma list (default 640,1024; --quick: 640)")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions per image (default 5; --quick: 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per configuration (default 1)")
    p.add_argument("--images", nargs="+", default=None,
                   help=f"paths or names under $FASTSAM_SHARED/data/images (default {' '.join(DEFAULT_IMAGES)}; "
                        "--quick: the first two)")  # fmt: skip
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for both (default: cores)")
    p.add_argument("--weights-s", help="FastSAM-s checkpoint (default: random weights made by the oracle)")
    p.add_argument("--weights-x", help="FastSAM-x checkpoint (default: random weights made by the oracle)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-side peak-memory subprocesses")
    p.add_argument("--precision", default="fp32", help="ours: fp32 (the same masks as ultralytics, the default "
                   "here), or auto/bf16 (bench/precision.py compares every precision)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="short smoke run (s, 640, two photos, 2 repeats)")
    p.add_argument("--output", default="vs_ultralytics", help="name of the JSON under bench/results/")
    p.add_argument("--memory-worker", choices=("ours", "ultralytics"), help=argparse.SUPPRESS)
    p.add_argument("--memory-weights", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.scales = (a.scales or ("s" if a.quick else "s,x")).split(",")
    a.imgsz = [int(v) for v in (a.imgsz or ("640" if a.quick else "640,1024")).split(",")]
    a.repeats = a.repeats if a.repeats is not None else (2 if a.quick else 5)
    if a.images is None:
        a.images = list(DEFAULT_IMAGES[:2] if a.quick else DEFAULT_IMAGES)
    for s in a.scales:
        if s not in SPECS:
            p.error(f"unknown scale {s!r} (s or x)")
    return a


def fmt_ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.memory_worker:
        memory_worker(a.memory_worker, a.memory_weights, a.imgsz[0], [str(p) for p in resolve_images(a.images)], a.threads)
        return

    import torch

    machine = machine_info(a.threads)  # load average at the start
    images = resolve_images(a.images)
    weights = {s: Path(getattr(a, f"weights_{s}") or ensure_checkpoint(s)) for s in a.scales}
    timer = StageTimer()
    runs: list[dict] = []
    configs: list[dict] = []
    for scale in a.scales:
        ours, theirs = Ours(weights[scale], a.precision), Theirs(weights[scale])  # ultralytics imported here: torch threads reset
        ours_array = OursWithArray(ours)
        timer.install()
        try:
            for imgsz in a.imgsz:
                print(f"[{scale} {imgsz}] warm-up ...", file=sys.stderr, flush=True)
                agree = {}
                for image in images:
                    outs = {}
                    for _ in range(a.warmup):
                        for side in (ours, ours_array, theirs):
                            torch.set_num_threads(a.threads)
                            outs[side.name] = side(image, imgsz)[0]
                    timer.take()
                    if a.warmup:
                        agree[image.name] = agreement(outs["ours"], outs["ultralytics"])
                for rep in range(a.repeats):
                    order = (ours, ours_array, theirs) if rep % 2 == 0 else (theirs, ours_array, ours)
                    for image in images:
                        for side in order:
                            torch.set_num_threads(a.threads)
                            timer.take()
                            start = time.perf_counter()
                            rles, stages = side(image, imgsz)
                            ms = (time.perf_counter() - start) * 1000
                            if side is not theirs:
                                stages = timer.take()
                                known = sum(stages.get(k, 0.0) for k in TOP_STAGES)
                            else:  # ultralytics' Results.speed (decoding is not in it) + our RLE timing
                                known = sum(stages.get(k, 0.0) for k in ("preprocess", "inference", "postprocess", "rle"))
                            stages["other"] = ms - known
                            runs.append(dict(scale=scale, imgsz=imgsz, image=image.name, side=side.name, rep=rep,
                                             ms=ms, n_masks=len(rles), stages=stages))  # fmt: skip
                    print(f"[{scale} {imgsz}] repetition {rep + 1}/{a.repeats} done", file=sys.stderr, flush=True)
                configs.append(dict(scale=scale, imgsz=imgsz, agreement=agree))
        finally:
            timer.remove()
        del ours, ours_array, theirs

    # memory: each side alone in its own process, per configuration
    for cfg in configs:
        cfg["memory"] = {}
        if not a.no_memory:
            for side in ("ours", "ultralytics"):
                print(f"[{cfg['scale']} {cfg['imgsz']}] memory of {side} ...", file=sys.stderr, flush=True)
                cfg["memory"][side] = measure_memory(side, weights[cfg["scale"]], cfg["imgsz"], images, a.threads)

    # ---- summaries ----
    def per_image_median(rows, key=lambda r: r["ms"]):
        by_image = defaultdict(list)
        for r in rows:
            by_image[r["image"]].append(key(r))
        return {k: statistics.median(v) for k, v in by_image.items()}

    for cfg in configs:
        sel = [r for r in runs if r["scale"] == cfg["scale"] and r["imgsz"] == cfg["imgsz"]]
        for side in ("ours", "ours_array", "ultralytics"):
            rows = [r for r in sel if r["side"] == side]
            medians = per_image_median(rows)
            cfg[side] = {"ms_per_image": statistics.fmean(medians.values()), "median_ms_by_image": medians}
            stage_names = sorted({k for r in rows for k in r["stages"]})
            cfg[side]["stages_ms"] = {
                k: statistics.fmean(per_image_median(rows, key=lambda r, k=k: r["stages"].get(k, 0.0)).values())
                for k in stage_names
            }  # fmt: skip
        cfg["ratio_ultralytics_over_ours"] = cfg["ultralytics"]["ms_per_image"] / cfg["ours"]["ms_per_image"]
        cfg["ratio_ultralytics_over_ours_array"] = cfg["ultralytics"]["ms_per_image"] / cfg["ours_array"]["ms_per_image"]
        ag = list(cfg["agreement"].values())
        cfg["agreement_summary"] = {
            "same_count_images": f"{sum(x['same_count'] for x in ag)}/{len(ag)}",
            "masks_ours": sum(x["n_ours"] for x in ag),
            "masks_theirs": sum(x["n_theirs"] for x in ag),
            "mean_iou_ours_to_theirs": statistics.fmean(x["iou_ours_to_theirs"] for x in ag) if ag else None,
            "mean_iou_theirs_to_ours": statistics.fmean(x["iou_theirs_to_ours"] for x in ag) if ag else None,
        }

    # ---- breakdown table ----
    print(f"\nWhere the time goes (ms per image: mean over photos of per-photo medians of each stage, so the stages need "
          f"not add up to the total exactly; threads={a.threads})\n")  # fmt: skip
    print("| model | imgsz | side | decode | preprocess | network | postprocess (NMS / masks) | to numpy | RLE | other | total |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for cfg in configs:
        for side in ("ours", "ours_array", "ultralytics"):
            st, total = cfg[side]["stages_ms"], cfg[side]["ms_per_image"]
            if side != "ultralytics":
                post = f"{fmt_ms(st.get('postprocess'))} ({fmt_ms(st.get('nms'))} / {fmt_ms(st.get('masks'))})"
                cells = [st.get("decode"), st.get("preprocess"), st.get("network"), post, st.get("to_numpy"), st.get("rle")]
            else:  # ultralytics' Results.speed; decoding is not in it (it is in "other"); RLE includes .cpu().numpy()
                cells = [None, st.get("preprocess"), st.get("inference"), fmt_ms(st.get("postprocess")), None, st.get("rle")]
            cells = [c if isinstance(c, str) else fmt_ms(c) for c in cells]
            print(f"| FastSAM-{cfg['scale']} | {cfg['imgsz']} | {side} | " + " | ".join(cells)
                  + f" | {fmt_ms(st.get('other'))} | {fmt_ms(total)} |")  # fmt: skip
    if timer.missing:
        print(f"\n(not timed: {', '.join(timer.missing)} -- not found in the package)")

    payload = {
        "command": command_line(),
        "machine": machine,
        "git": git_state(),
        "versions": package_versions("fastsam", "torch", "torchvision", "numpy", "ultralytics", "pycocotools",
                                     "opencv-python", "pillow"),  # fmt: skip
        "settings": dict(SETTINGS, retina=True, threads=a.threads, repeats=a.repeats, warmup=a.warmup,
                         images=[str(p) for p in images], weights={k: str(v) for k, v in weights.items()},
                         weights_kind="given" if (a.weights_s or a.weights_x) else "random (oracle make-checkpoint)"),
        "summary": configs,
        "runs": runs,
        "stages_not_timed": timer.missing,
    }  # fmt: skip
    path = write_json(a.output, payload)

    # ---- main table (last) ----
    print(f"\nFastSAM everything mode + COCO RLE, CPU, {a.threads} torch threads, {len(images)} photos, "
          f"{a.repeats} interleaved repetitions; JSON: {os.path.relpath(path, ROOT)}\n")  # fmt: skip
    print("| model | imgsz | ours ms/img | ultralytics ms/img | ratio (ultralytics / ours) | ours + (N, H, W) array ms/img "
          "(ratio) | peak RSS MB ours / ultralytics (Δ over imports) | masks ours / theirs (same count) "
          "| mean best IoU ours→theirs / theirs→ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cfg in configs:
        mem = cfg["memory"]
        if mem:
            def m(side):
                x = mem[side]
                return "error" if "error" in x else f"{x['peak_mb']:,.0f} (+{x['delta_mb']:,.0f})"

            mem_cell = f"{m('ours')} / {m('ultralytics')}"
        else:
            mem_cell = "not measured"
        ag = cfg["agreement_summary"]
        iou = (f"{ag['mean_iou_ours_to_theirs']:.4f} / {ag['mean_iou_theirs_to_ours']:.4f}"
               if ag["mean_iou_ours_to_theirs"] is not None else "–")  # fmt: skip
        print(f"| FastSAM-{cfg['scale']} | {cfg['imgsz']} | {fmt_ms(cfg['ours']['ms_per_image'])} | "
              f"{fmt_ms(cfg['ultralytics']['ms_per_image'])} | {cfg['ratio_ultralytics_over_ours']:.2f} | "
              f"{fmt_ms(cfg['ours_array']['ms_per_image'])} ({cfg['ratio_ultralytics_over_ours_array']:.2f}) | {mem_cell} | "
              f"{ag['masks_ours']} / {ag['masks_theirs']} ({ag['same_count_images']}) | {iou} |")  # fmt: skip


if __name__ == "__main__":
    main()
