"""Synthetic instance-segmentation data for the training tests: flat-coloured shapes with known masks.

Written as a COCO instances JSON (visible masks as compressed RLE, non-occluded rectangles also as polygons)
with PNG images.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def _shape_mask(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[float] | None]:
    mask = np.zeros((size, size), np.uint8)
    kind = rng.integers(0, 3)
    w, h = rng.integers(size // 6, size // 2, 2)
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


def make_image(rng: np.random.Generator, size: int, max_shapes: int = 4) -> tuple[np.ndarray, list[tuple[np.ndarray, list | None]]]:
    """An RGB image and its visible instance masks (with a polygon where the shape is an unoccluded rectangle)."""
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    shapes = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        mask, poly = _shape_mask(rng, size)
        colour = rng.uniform(0, 255, 3)
        image[mask.astype(bool)] = colour + rng.normal(0, 4, (int(mask.sum()), 3))
        shapes = [(m & ~mask.astype(bool), None if (m & mask.astype(bool)).any() else p) for m, p in shapes]
        shapes.append((mask.astype(bool), poly))
    instances = [(m, p) for m, p in shapes if m.sum() >= 20]
    return np.clip(image, 0, 255).astype(np.uint8), instances


def write_synthetic_coco(folder: str | Path, n_images: int, size: int = 128, seed: int = 0) -> Path:
    """Write ``n_images`` PNGs under ``folder/images`` and ``folder/instances.json``; returns the JSON path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n_images):
        image, instances = make_image(rng, size)
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
