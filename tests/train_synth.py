"""Synthetic instance-segmentation data for the training tests: flat-coloured shapes with known masks.

Written as a COCO instances JSON (visible masks as compressed RLE, non-occluded rectangles also as polygons)
with PNG images.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def _shape_mask(rng: np.random.Generator, size: int, extent: tuple[float, float] = (1 / 6, 1 / 2)) -> tuple[np.ndarray, list[float] | None]:
    mask = np.zeros((size, size), np.uint8)
    kind = rng.integers(0, 3)
    w, h = rng.integers(int(size * extent[0]), int(size * extent[1]), 2)
    x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
    poly = None
    if kind == 0:
        mask[y0 : y0 + h, x0 : x0 + w] = 1
        poly = [float(v) for v in (x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h)]
    elif kind == 1:
        cv2.ellipse(mask, (int(x0 + w // 2), int(y0 + h // 2)), (int(w // 2), int(h // 2)), 0, 0, 360, 1, -1)
    else:
        pts = np.array([[x0, y0 + h], [x0 + w // 2, y0], [x0 + w, y0 + h]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask, poly


def make_image(
    rng: np.random.Generator, size: int, max_shapes: int = 4, extent: tuple[float, float] = (1 / 6, 1 / 2)
) -> tuple[np.ndarray, list[tuple[np.ndarray, list | None]]]:
    """An RGB image and its visible instance masks (with a polygon where the shape is an unoccluded rectangle).

    1 to ``max_shapes`` shapes (rectangles, ellipses, triangles) of sides ``extent`` (fractions of ``size``)."""
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    shapes = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        mask, poly = _shape_mask(rng, size, extent)
        colour = rng.uniform(0, 255, 3)
        image[mask.astype(bool)] = colour + rng.normal(0, 4, (int(mask.sum()), 3))
        shapes = [(m & ~mask.astype(bool), None if (m & mask.astype(bool)).any() else p) for m, p in shapes]
        shapes.append((mask.astype(bool), poly))
    instances = [(m, p) for m, p in shapes if m.sum() >= 20]
    return np.clip(image, 0, 255).astype(np.uint8), instances


def write_synthetic_coco(
    folder: str | Path, n_images: int, size: int = 128, seed: int = 0, max_shapes: int = 4, extent: tuple[float, float] = (1 / 6, 1 / 2)
) -> Path:
    """Write ``n_images`` PNGs under ``folder/images`` and ``folder/instances.json``; returns the JSON path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n_images):
        image, instances = make_image(rng, size, max_shapes, extent)
        name = f"{i:05d}.png"
        cv2.imwrite(str(folder / "images" / name), image[:, :, ::-1])
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for mask, poly in instances:
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            seg = [poly] if poly is not None else {"size": rle["size"], "counts": rle["counts"].decode()}
            anns.append({
                "id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "segmentation": seg,
                "area": float(mask.sum()), "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": 0,
            })
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "shape"}]}))
    return path


SIZE = 64
SHAPES = dict(max_shapes=2, extent=(0.3, 0.7))  # one or two shapes of 19-45 px per image


def converge(folder: Path, seed: int, epochs: int, augment, close_mosaic: int = 0) -> dict:
    """Train FastSAM-n on synthetic shapes (``SIZE`` px, 128 training / 32 held-out images, batch 16, AdamW).

    Returns the numbers (steps, mean loss over the first and last tenth, untrained vs trained EMA mask AP on the
    held-out images, wall time) plus ``"weights"``: the EMA weights file. Also written to ``run/converge.json``.
    """
    import torch

    from fastsam.build import build_yolov8_seg
    from fastsam.training.data import load_records
    from fastsam.training.trainer import TrainConfig, evaluate, init_head_biases, train

    t0 = time.time()
    train_json = write_synthetic_coco(folder / "train", 128, SIZE, seed=1 + 10 * seed, **SHAPES)
    val_json = write_synthetic_coco(folder / "val", 32, SIZE, seed=2 + 10 * seed, **SHAPES)
    cfg = TrainConfig(
        data=str(train_json), val=str(val_json), scale="n", imgsz=SIZE, epochs=epochs, batch=16, nominal_batch=16,
        workers=0, device="cpu", out=str(folder / "run"), progress=False, plots=False, optimizer="adamw", lr=0.002,
        warmup_epochs=1, ema_decay=0.99, ema_tau=20, val_interval=epochs, seed=seed, augment=asdict(augment),
        close_mosaic=close_mosaic,
    )
    summary = train(cfg)
    history = summary["history"]
    k = len(history) // 10
    val_records, _ = load_records(val_json)
    torch.manual_seed(seed)
    untrained = build_yolov8_seg("n")
    init_head_biases(untrained)
    last = summary["rows"][-1]
    numbers = {
        "seed": seed, "steps": len(history), "loss_start": sum(history[:k]) / k, "loss_end": sum(history[-k:]) / k,
        "untrained": evaluate(untrained, val_records, SIZE),
        "trained_ema": {"mask_ap": last["mask_ap"], "mask_ap50": last["mask_ap50"]},
        "wall_s": round(time.time() - t0, 1),
    }
    print(json.dumps(numbers))
    (folder / "run" / "converge.json").write_text(json.dumps(numbers, indent=2))
    return {**numbers, "weights": folder / "run" / "weights" / "last.safetensors"}
