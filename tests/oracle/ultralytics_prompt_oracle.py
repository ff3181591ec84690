#!/usr/bin/env python
"""Test-only oracle for prompt selection: ultralytics' (8.4.190) ``FastSAMPredictor.prompt``.

The ``fastsam`` package never imports ultralytics.  The tests run this script in its own subprocess
with ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=False`` and ``YOLO_CONFIG_DIR=<tmp dir>`` (defaults set here too),
one torch thread.

For each image: ``ultralytics.FastSAM(weights).predict`` in everything mode (``retina_masks`` as given,
default on; imgsz/conf/iou/max_det as given), then, for every prompt case of that image, ultralytics' own
``FastSAMPredictor.prompt(results, bboxes=..., points=..., labels=...)`` on that everything-mode result.
Without ``--cases`` only the everything-mode result is written (to choose meaningful prompts from it).

Cases file (JSON): ``{"<image index>": [{"name": str, "bboxes": [[x1, y1, x2, y2], ...] | null,
"points": [[x, y], ...] | null, "labels": [0 | 1, ...] | null}, ...], ...}``; values are passed to
``prompt`` as given (Python lists).

Output .npz (``i`` = position of the image in --images, ``k`` = position of the case in its list):
  meta                      JSON string: arguments and versions
  img{i}_path, img{i}_orig_shape (h, w)
  img{i}_boxes (N,4) float32 xyxy, img{i}_scores (N,) float32   everything mode, as prompted on
  img{i}_masks_packed / img{i}_masks_shape   np.packbits of the (N,h,w) bool masks ``prompt`` selects
                            from (``result.masks.data``, rescaled to the original size as ``prompt`` does)
  img{i}_ncases             number of cases
  img{i}_case{k}_name       the case's name
  img{i}_case{k}_indices    (K,) int64 indices (into the everything-mode masks) that ``prompt`` selected,
                            recorded from the index it applies to the result
  img{i}_case{k}_masks_packed / _masks_shape   the selected masks as ``prompt`` returns them (K,h,w) bool

Nothing is written to stdout; ultralytics' own logging goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

# --- keep stdout clean: everything ultralytics prints goes to stderr -------------------------------
sys.stdout = sys.stderr

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
os.environ.setdefault("YOLO_VERBOSE", "False")
if not os.environ.get("YOLO_CONFIG_DIR"):
    os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolo_cfg_")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def _pack(prefix: str, masks, hw: tuple[int, int]) -> dict:
    if masks is None:
        arr = np.zeros((0, *hw), dtype=bool)
    else:
        arr = (masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)).astype(bool)
        arr = arr.reshape(-1, *hw)
    return {f"{prefix}_packed": np.packbits(arr.reshape(-1)), f"{prefix}_shape": np.array(arr.shape, dtype=np.int64)}


def _install_hooks(record: list) -> None:
    """One torch thread during inference; record the index ``prompt`` applies to a Results."""
    from ultralytics.engine.results import Results
    from ultralytics.models.fastsam.predict import FastSAMPredictor

    orig_inf = FastSAMPredictor.inference
    orig_getitem = Results.__getitem__

    def inference(self, *args, **kwargs):
        torch.set_num_threads(1)  # select_device() resets the thread count during setup
        return orig_inf(self, *args, **kwargs)

    def getitem(self, idx):
        record.append(idx.detach().cpu().clone() if isinstance(idx, torch.Tensor) else idx)
        return orig_getitem(self, idx)

    FastSAMPredictor.inference = inference
    Results.__getitem__ = getitem


def _indices_of(idx, n: int) -> np.ndarray:
    if isinstance(idx, torch.Tensor):
        idx = idx.numpy()
    return np.arange(n)[np.asarray(idx)].astype(np.int64).reshape(-1)


def run(a) -> None:
    import ultralytics
    from ultralytics import FastSAM
    from ultralytics.utils.ops import scale_masks

    cases = {}
    if a.cases:
        with open(a.cases) as f:
            cases = {int(k): v for k, v in json.load(f).items()}
    record: list = []
    _install_hooks(record)
    model = FastSAM(a.weights)
    arrays: dict = {}
    for i, image in enumerate(a.images):
        [result] = model.predict(
            source=image, imgsz=a.imgsz, conf=a.conf, iou=a.iou, max_det=a.max_det,
            retina_masks=bool(a.retina), device="cpu", verbose=False, save=False, half=False,
        )  # fmt: skip
        hw = tuple(int(v) for v in result.orig_shape)
        n = len(result)
        masks = result.masks.data if result.masks is not None else None
        if masks is not None and tuple(masks.shape[1:]) != hw:  # as prompt() does with retina off
            masks = scale_masks(masks[None].float(), hw)[0] > 0.5
        arrays[f"img{i}_path"] = np.array(os.path.abspath(image))
        arrays[f"img{i}_orig_shape"] = np.array(hw, dtype=np.int64)
        arrays[f"img{i}_boxes"] = result.boxes.xyxy.detach().float().cpu().numpy().reshape(-1, 4)
        arrays[f"img{i}_scores"] = result.boxes.conf.detach().float().cpu().numpy().reshape(-1)
        arrays.update(_pack(f"img{i}_masks", masks, hw))
        predictor = model.predictor
        image_cases = cases.get(i, [])
        arrays[f"img{i}_ncases"] = np.array(len(image_cases), dtype=np.int64)
        for k, case in enumerate(image_cases):
            record.clear()
            [out] = predictor.prompt(
                [result], bboxes=case.get("bboxes"), points=case.get("points"), labels=case.get("labels")
            )
            if len(record) != 1:
                raise SystemExit(f"case {case.get('name')!r}: expected prompt() to index the result once, saw {len(record)}")
            arrays[f"img{i}_case{k}_name"] = np.array(str(case.get("name", k)))
            arrays[f"img{i}_case{k}_indices"] = _indices_of(record[0], n)
            arrays.update(_pack(f"img{i}_case{k}_masks", out.masks.data if out.masks is not None else None, hw))
    meta = {k: v for k, v in vars(a).items()}
    meta.update(ultralytics=ultralytics.__version__, torch=torch.__version__)
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    np.savez_compressed(a.out, **arrays)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="ultralytics-format checkpoint (.pt)")
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--cases", help="JSON file of prompt cases per image index (omit: everything mode only)")
    p.add_argument("--imgsz", type=int, default=1024)
    p.add_argument("--conf", type=float, default=0.4)
    p.add_argument("--iou", type=float, default=0.9)
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--retina", type=int, choices=(0, 1), default=1)
    p.add_argument("--out", required=True, help="output .npz")
    return p


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
