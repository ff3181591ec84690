"""Training data: COCO instances JSON, SA-1B folders and YOLO-seg label folders, as one-class instance masks.

Every source becomes a list of :class:`ImageRecord` (image path, size and the raw annotations); a
:class:`SegmentationDataset` decodes them on demand, applies augmentation and letterboxes to a square
``imgsz x imgsz`` input, returning the image, the instance masks at prototype resolution (``imgsz / 4``) and
the boxes in input pixels.

Problems in the data are reported and skipped, never fatal and never silent: every skipped image or annotation
is counted in a :class:`DataReport` (by reason) and logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

LOGGER = logging.getLogger("fastsam.train")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
FORMATS = ("coco", "sa1b", "yolo")
MASK_RATIO = 4  # prototypes are at 1/4 of the input resolution
PAD_VALUE = 114


@dataclass
class ImageRecord:
    """One image and its annotations.

    ``annotations`` are ``(kind, data, iscrowd)``: ``kind`` ``"poly"`` (list of flat pixel polygons), ``"rle"``
    (COCO RLE dict, compressed or not) or ``"npoly"`` (one flat polygon normalised to [0, 1]).
    """

    path: Path
    height: int
    width: int
    annotations: list[tuple[str, Any, bool]]
    image_id: int = 0


@dataclass
class DataReport:
    """What was loaded and what was skipped, by reason."""

    images: int = 0
    annotations: int = 0
    skipped_images: Counter = field(default_factory=Counter)
    skipped_annotations: Counter = field(default_factory=Counter)
    ignored_crowd: int = 0

    def skip_image(self, reason: str, where: Any) -> None:
        self.skipped_images[reason] += 1
        LOGGER.warning("skipped image %s: %s", where, reason)

    def skip_annotation(self, reason: str, where: Any) -> None:
        self.skipped_annotations[reason] += 1
        LOGGER.warning("skipped annotation in %s: %s", where, reason)

    def summary(self) -> str:
        text = f"{self.images} images, {self.annotations} instances"
        if self.ignored_crowd:
            text += f", {self.ignored_crowd} crowd annotations ignored"
        if self.skipped_images:
            text += f"; skipped images: {dict(self.skipped_images)}"
        if self.skipped_annotations:
            text += f"; skipped annotations: {dict(self.skipped_annotations)}"
        return text


def _image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the header; raises on unreadable files."""
    with Image.open(path) as im:
        w, h = im.size
    if w < 1 or h < 1:
        raise ValueError("empty image")
    return h, w


def _check_rle(seg: dict, h: int, w: int) -> None:
    size = seg.get("size")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or "counts" not in seg:
        raise ValueError("RLE without size/counts")
    if int(size[0]) != h or int(size[1]) != w:
        raise ValueError(f"RLE size {size} differs from the image size {[h, w]}")


def _check_polygons(seg: list) -> list[list[float]]:
    polys = [[float(v) for v in p] for p in seg if isinstance(p, (list, tuple))]
    polys = [p for p in polys if len(p) >= 6 and len(p) % 2 == 0 and all(math.isfinite(v) for v in p)]
    if not polys:
        raise ValueError("no polygon with at least 3 points")
    return polys


def load_coco(json_path: str | os.PathLike, image_dir: str | os.PathLike | None = None, report: DataReport | None = None) -> tuple[list[ImageRecord], DataReport]:
    """Read a COCO instances JSON. Images are looked up in ``image_dir``, else next to the JSON, in ``images/``
    or in any sub-folder of the JSON's folder or its parent (the first that has the file)."""
    report = report or DataReport()
    json_path = Path(json_path)
    with open(json_path) as f:
        data = json.load(f)
    roots = [Path(image_dir)] if image_dir else []
    base = json_path.parent
    roots += [base, base / "images"] + sorted(p for p in base.iterdir() if p.is_dir())
    roots += sorted(p for p in base.parent.iterdir() if p.is_dir() and p != base) + [base.parent]
    by_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    records = []
    for info in data.get("images", []):
        name = info.get("file_name", "")
        path = next((r / name for r in roots if (r / name).is_file()), None)
        if path is None:
            report.skip_image("file not found", name)
            continue
        try:
            h, w = _image_size(path)
        except Exception as err:  # noqa: BLE001 - any decoder error means a corrupt file
            report.skip_image(f"unreadable ({type(err).__name__})", path)
            continue
        if (info.get("height"), info.get("width")) not in ((h, w), (None, None)):
            LOGGER.warning("image %s is %dx%d but the JSON says %sx%s; using the file's size", path, h, w, info.get("height"), info.get("width"))
        anns = []
        for ann in by_image.get(info.get("id"), []):
            seg = ann.get("segmentation")
            crowd = bool(ann.get("iscrowd", 0))
            try:
                if isinstance(seg, dict):
                    _check_rle(seg, h, w)
                    anns.append(("rle", seg, crowd))
                elif isinstance(seg, list):
                    anns.append(("poly", _check_polygons(seg), crowd))
                else:
                    raise ValueError("no segmentation")
            except (ValueError, TypeError) as err:
                report.skip_annotation(str(err), f"{name} (annotation {ann.get('id')})")
                continue
            if crowd:
                report.ignored_crowd += 1
            else:
                report.annotations += 1
        records.append(ImageRecord(path, h, w, anns, int(info.get("id", len(records)))))
        report.images += 1
    return records, report


def load_sa1b(folder: str | os.PathLike, report: DataReport | None = None) -> tuple[list[ImageRecord], DataReport]:
    """Read an SA-1B folder: ``sa_N.jpg`` next to ``sa_N.json`` (``{"image": {...}, "annotations": [...]}``)."""
    report = report or DataReport()
    records = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        ann_path = path.with_suffix(".json")
        if not ann_path.is_file():
            report.skip_image("no annotation JSON", path)
            continue
        try:
            h, w = _image_size(path)
        except Exception as err:  # noqa: BLE001
            report.skip_image(f"unreadable ({type(err).__name__})", path)
            continue
        try:
            with open(ann_path) as f:
                data = json.load(f)
            raw = data["annotations"]
            image_id = int(data.get("image", {}).get("image_id", len(records)))
        except Exception as err:  # noqa: BLE001
            report.skip_image(f"bad annotation JSON ({type(err).__name__}: {err})", ann_path)
            continue
        anns = []
        for k, ann in enumerate(raw):
            try:
                seg = ann["segmentation"]
                _check_rle(seg, h, w)
            except (KeyError, TypeError, ValueError) as err:
                report.skip_annotation(str(err) or type(err).__name__, f"{ann_path} #{k}")
                continue
            anns.append(("rle", seg, False))
            report.annotations += 1
        records.append(ImageRecord(path, h, w, anns, image_id))
        report.images += 1
    return records, report


def _yolo_label_path(image: Path, root: Path) -> Path:
    rel = image.relative_to(root)
    parts = list(rel.parts)
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return (root / Path(*parts)).with_suffix(".txt")


def load_yolo(folder: str | os.PathLike, report: DataReport | None = None) -> tuple[list[ImageRecord], DataReport]:
    """Read a YOLO-seg folder: ``images/**/X.jpg`` with ``labels/**/X.txt`` lines ``cls x1 y1 x2 y2 ...``
    (normalised). An image without a label file has no instances."""
    report = report or DataReport()
    root = Path(folder)
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and "images" in p.relative_to(root).parts)
    records = []
    for path in images:
        try:
            h, w = _image_size(path)
        except Exception as err:  # noqa: BLE001
            report.skip_image(f"unreadable ({type(err).__name__})", path)
            continue
        label = _yolo_label_path(path, root)
        anns = []
        if label.is_file():
            for n, line in enumerate(label.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    values = [float(v) for v in line.split()]
                    coords = values[1:]
                    if len(coords) < 6 or len(coords) % 2:
                        raise ValueError("not a polygon (need cls and >= 3 x y pairs)")
                    if not all(math.isfinite(v) and -0.01 <= v <= 1.01 for v in coords):
                        raise ValueError("coordinates outside [0, 1]")
                except ValueError as err:
                    report.skip_annotation(str(err), f"{label}:{n}")
                    continue
                anns.append(("npoly", coords, False))
                report.annotations += 1
        records.append(ImageRecord(path, h, w, anns, len(records)))
        report.images += 1
    return records, report


def load_records(data: str | os.PathLike, fmt: str) -> tuple[list[ImageRecord], DataReport]:
    """Load a dataset in format ``coco`` (path to the JSON), ``sa1b`` or ``yolo`` (folder)."""
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if fmt == "coco":
        if path.is_dir():
            found = sorted(path.rglob("*.json"))
            if len(found) != 1:
                raise ValueError(f"{path} is a folder; pass the COCO instances JSON itself ({len(found)} JSON files there)")
            path = found[0]
        records, report = load_coco(path)
    elif fmt == "sa1b":
        records, report = load_sa1b(path)
    elif fmt == "yolo":
        records, report = load_yolo(path)
    else:
        raise ValueError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
    LOGGER.info("%s: %s", path, report.summary())
    return records, report


def annotation_rle(kind: str, data: Any, h: int, w: int) -> dict:
    """One annotation as a single compressed COCO RLE at the image's resolution."""
    if kind == "rle":
        rle = data
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, h, w)
        return rle
    if kind == "npoly":
        poly = (np.asarray(data, dtype=np.float64).reshape(-1, 2) * (w, h)).reshape(-1).tolist()
        return mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
    return mask_utils.merge(mask_utils.frPyObjects(data, h, w))


# --------------------------------------------------------------------------- augmentation


@dataclass
class Augment:
    """Augmentation settings (the published YOLOv8 defaults where they exist)."""

    scale: float = 0.5  # random zoom in [1 - scale, 1 + scale]
    translate: float = 0.1  # random shift, fraction of imgsz
    fliplr: float = 0.5
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4

    @classmethod
    def off(cls) -> "Augment":
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _index_matrix(matrix: np.ndarray) -> np.ndarray:
    """An affine map of pixel-corner coordinates as a map of pixel-index (centre) coordinates."""
    out = matrix.copy()
    out[:, 2] = matrix[:, 2] + matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return out


def hsv_jitter(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Multiply hue, saturation and value of an RGB uint8 image by ``1 + gains`` (in place-safe copy)."""
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * (1 + gains[0])) % 180).astype(np.uint8)
    lut_s = np.clip(x * (1 + gains[1]), 0, 255).astype(np.uint8)
    lut_v = np.clip(x * (1 + gains[2]), 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


class SegmentationDataset(torch.utils.data.Dataset):
    """Letterboxed, augmented training samples.

    Each item is a dict: ``image`` ``(3, S, S)`` uint8, ``boxes`` ``(N, 4)`` float32 xyxy input pixels,
    ``masks`` ``(N, S / 4, S / 4)`` uint8 {0, 1}, ``index``. Crowd annotations are dropped. The augmentation of an
    item depends only on ``(seed, epoch, index)``, so runs are reproducible whatever the worker count.

    An image that fails to decode at training time is logged, counted in ``report.skipped_images`` (of this
    process) and replaced by the next image.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        imgsz: int = 640,
        augment: Augment | None = None,
        seed: int = 0,
        report: DataReport | None = None,
        min_area: float = 1.0,
    ) -> None:
        if imgsz % 32:
            raise ValueError(f"imgsz must be a multiple of 32, got {imgsz}")
        if not records:
            raise ValueError("the dataset has no usable images")
        self.records = records
        self.imgsz = imgsz
        self.augment = augment or Augment.off()
        self.seed = seed
        self.epoch = 0
        self.report = report or DataReport()
        self.min_area = min_area

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            try:
                return self._load(i)
            except (OSError, ValueError, cv2.error) as err:
                self.report.skip_image(f"failed to load ({type(err).__name__}: {err})", self.records[i].path)
        raise RuntimeError("no image of the dataset could be loaded")

    def _load(self, index: int) -> dict:
        rec = self.records[index]
        with Image.open(rec.path) as im:
            image = np.asarray(im.convert("RGB"))
        h, w = image.shape[:2]
        if (h, w) != (rec.height, rec.width):
            raise ValueError(f"image is {h}x{w}, expected {rec.height}x{rec.width}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        aug = self.augment
        s = self.imgsz
        r = s / max(h, w)
        zoom = rng.uniform(1 - aug.scale, 1 + aug.scale) if aug.scale else 1.0
        r *= zoom
        flip = aug.fliplr > 0 and rng.random() < aug.fliplr
        # centre the resized image, then shift
        tx = (s - w * r) / 2 + (rng.uniform(-aug.translate, aug.translate) * s if aug.translate else 0.0)
        ty = (s - h * r) / 2 + (rng.uniform(-aug.translate, aug.translate) * s if aug.translate else 0.0)
        if flip:
            matrix = np.array([[-r, 0, tx + w * r], [0, r, ty]], dtype=np.float64)
        else:
            matrix = np.array([[r, 0, tx], [0, r, ty]], dtype=np.float64)
        if any((aug.hsv_h, aug.hsv_s, aug.hsv_v)):
            image = hsv_jitter(image, rng.uniform(-1, 1, 3) * (aug.hsv_h, aug.hsv_s, aug.hsv_v))
        # ``matrix`` maps continuous (pixel-corner) coordinates; OpenCV wants pixel-centre (index) coordinates.
        out = cv2.warpAffine(image, _index_matrix(matrix), (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(PAD_VALUE,) * 3)

        ms = s // MASK_RATIO
        m_matrix = _index_matrix(matrix / MASK_RATIO)
        boxes, masks = [], []
        for kind, data, crowd in rec.annotations:
            if crowd:
                continue
            try:
                rle = annotation_rle(kind, data, h, w)
                x, y, bw, bh = mask_utils.toBbox(rle).tolist()
                if bw <= 0 or bh <= 0:
                    continue
                full = mask_utils.decode(rle)
            except Exception as err:  # noqa: BLE001 - pycocotools raises plain Exceptions
                self.report.skip_annotation(f"undecodable ({type(err).__name__})", rec.path)
                continue
            small = cv2.warpAffine(full * 255, m_matrix, (ms, ms), flags=cv2.INTER_LINEAR, borderValue=0) > 127
            if small.sum() < self.min_area:
                continue
            corners = np.array([[x, y, 1], [x + bw, y + bh, 1]]) @ matrix.T
            x1, x2 = sorted(corners[:, 0])
            y1, y2 = sorted(corners[:, 1])
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, s), min(y2, s)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            boxes.append((x1, y1, x2, y2))
            masks.append(small)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))),
            "boxes": torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
            "masks": torch.from_numpy(np.stack(masks).astype(np.uint8)) if masks else torch.zeros(0, ms, ms, dtype=torch.uint8),
            "index": index,
        }


def collate(items: list[dict]) -> dict:
    """Stack the images; keep boxes and masks as per-image lists."""
    return {
        "image": torch.stack([it["image"] for it in items]),
        "boxes": [it["boxes"] for it in items],
        "masks": [it["masks"] for it in items],
        "index": torch.tensor([it["index"] for it in items]),
    }
