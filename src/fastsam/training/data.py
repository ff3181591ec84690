"""Training data sources: COCO instances JSON, SA-1B folders, YOLO-seg label folders and converted shards, as
one-class instance masks.

Every source becomes a list of :class:`ImageRecord` (image, size and the raw annotations); a
:class:`SegmentationDataset` (:mod:`.dataset`) decodes them on demand and augments them.

Problems in the data are reported and skipped, never fatal and never silent: every skipped image or annotation
is counted in a :class:`DataReport` (by reason) and logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from PIL import Image

from .augment import PAD_VALUE, Augment, hsv_jitter  # noqa: F401 - re-exported
from .dataset import MASK_RATIO, SegmentationDataset, collate  # noqa: F401 - re-exported
from .records import DATA_FORMATS, IMAGE_SUFFIXES, DataReport, ImageRecord, annotation_rle, read_image, record_annotations  # noqa: F401

LOGGER = logging.getLogger("fastsam.train")


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


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format of a dataset path: ``shards`` (a folder written by ``fastsam data convert``), ``coco`` (a
    ``.json`` file, or a folder holding exactly one), ``yolo`` (a folder with ``images/`` and ``labels/``) or
    ``sa1b`` (a folder of images with same-named ``.json`` files)."""
    from .shards import INDEX_NAME

    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "shards" if path.name == INDEX_NAME else "coco"
        raise ValueError(f"cannot tell the format of {path}; pass --format (one of {', '.join(DATA_FORMATS[1:])})")
    if (path / INDEX_NAME).is_file():
        return "shards"
    folders = [path] + sorted(p for p in path.iterdir() if p.is_dir())  # the folder and its children only
    if any((f / "images").is_dir() and (f / "labels").is_dir() for f in folders):
        return "yolo"
    jsons = [j for f in folders for j in sorted(f.glob("*.json"))[:100]]
    if any(j.with_suffix(s).is_file() for j in jsons for s in (".jpg", ".jpeg", ".png")):
        return "sa1b"
    if len(jsons) == 1:
        return "coco"
    raise ValueError(f"cannot tell the format of {path} (no {INDEX_NAME}, no images/ + labels/, no image.json pairs, "
                     f"{len(jsons)} JSON files); pass --format (one of {', '.join(DATA_FORMATS[1:])})")


def load_records(data: str | os.PathLike, fmt: str = "auto") -> tuple[list[ImageRecord], DataReport]:
    """Load a dataset in format ``coco`` (path to the JSON), ``sa1b``, ``yolo``, ``shards`` (folder) or ``auto``
    (:func:`detect_format`)."""
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if fmt == "auto":
        fmt = detect_format(path)
        LOGGER.info("%s: detected format %s", path, fmt)
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
    elif fmt == "shards":
        from .shards import load_shards

        records, report = load_shards(path)
    else:
        raise ValueError(f"unknown data format {fmt!r}; choose one of {', '.join(DATA_FORMATS)}")
    LOGGER.info("%s: %s", path, report.summary())
    return records, report
