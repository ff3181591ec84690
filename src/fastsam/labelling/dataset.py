"""Datasets written by ``fastsam annotate``: a resumable journal, then COCO instances JSON or a YOLO-seg folder.

Layout of a dataset folder ``OUT``::

    OUT/images/<name>          the images (copied; re-encoded only when EXIF rotates them, see store_image)
    OUT/annotations.json       --format coco: COCO instances (images, categories, annotations)
    OUT/labels/<stem>.txt      --format yolo: one line per instance, "class x1 y1 x2 y2 ..." normalised to [0, 1]
    OUT/data.yaml              --format yolo: train/val image folders and class names (ultralytics' layout)
    OUT/.annotate.jsonl        the journal: the settings, then one line per finished image (resuming reads it)
    OUT/errors.jsonl           images that failed in the last run (path, stage, error)

Both formats are written from the journal, so a finished folder can be written again in the other format
without segmenting anything.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..ops.rle import mask_to_polygons, polygon_area, rle_to_mask

__all__ = [
    "COCO_NAME",
    "DATA_YAML",
    "JOURNAL_NAME",
    "ImageRecord",
    "Journal",
    "store_image",
    "write_coco",
    "write_yolo",
]

JOURNAL_NAME = ".annotate.jsonl"
COCO_NAME = "annotations.json"
DATA_YAML = "data.yaml"
IMAGES_DIR = "images"
LABELS_DIR = "labels"


@dataclass
class ImageRecord:
    """One finished image: where it came from, its name in ``OUT/images`` and its instances.

    ``instances`` are dicts ``{"category": name, "segmentation": COCO RLE (compressed, str counts), "bbox": [x, y,
    w, h] pixels, "area": int pixels, "score": mask confidence, "class_score": CLIP probability or None}``.
    """

    source: str
    file_name: str
    width: int
    height: int
    instances: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "file_name": self.file_name, "width": self.width,
                           "height": self.height, "instances": self.instances})  # fmt: skip


class Journal:
    """The settings and the finished images of a dataset folder, appended to as images finish.

    Args:
        out: the dataset folder (created).
        settings: what the annotations depend on (JSON-serialisable); a folder made with other settings is refused.

    Raises:
        ValueError: ``out`` already holds a journal made with other settings, or an unreadable one.
    """

    def __init__(self, out: str | os.PathLike, settings: dict[str, Any]) -> None:
        self.out = Path(out)
        self.path = self.out / JOURNAL_NAME
        self.settings = settings
        self.records: dict[str, ImageRecord] = {}
        self._stems: set[str] = set()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size:
            self._read()
        else:
            self.path.write_text(json.dumps({"settings": settings}) + "\n")

    @staticmethod
    def check(out: str | os.PathLike, settings: dict[str, Any]) -> None:
        """Raise the ValueError that opening ``out`` with ``settings`` would raise, without writing anything."""
        path = Path(out) / JOURNAL_NAME
        if path.is_file() and path.stat().st_size:
            with open(path) as f:
                _check_header(path, f.readline(), settings)

    def _read(self) -> None:
        lines = self.path.read_text().splitlines()
        _check_header(self.path, lines[0], self.settings)
        for number, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            try:
                record = ImageRecord(**json.loads(line))
            except (ValueError, TypeError):  # a line cut short by an interrupted run: that image is done again
                if number == len(lines):
                    continue
                raise ValueError(f"{self.path} line {number} is not an image record: delete the file to start again") from None
            self._add(record)

    def _add(self, record: ImageRecord) -> None:
        self.records[record.source] = record
        self._stems.add(Path(record.file_name).stem.lower())

    def done(self, source: str | os.PathLike) -> bool:
        """Whether the image at ``source`` is already annotated."""
        return _key(source) in self.records

    def name_for(self, source: str | os.PathLike, suffix: str | None = None) -> str:
        """A file name in ``images/`` for a new image: its own name, with ``_2``, ``_3``... when another image
        already has that stem (stems must differ: YOLO label files are named by them)."""
        path = Path(source)
        stem, suffix = path.stem, (suffix or path.suffix).lower()
        name, n = stem, 1
        while name.lower() in self._stems:
            n += 1
            name = f"{stem}_{n}"
        return name + suffix

    def add(self, record: ImageRecord) -> None:
        """Record a finished image (appended and flushed at once: an interrupted run loses nothing before it)."""
        record.source = _key(record.source)
        with open(self.path, "a") as f:
            f.write(record.to_json() + "\n")
        self._add(record)

    def ordered(self) -> list[ImageRecord]:
        """The finished images by file name."""
        return sorted(self.records.values(), key=lambda r: r.file_name)


def _check_header(path: Path, line: str, settings: dict[str, Any]) -> None:
    try:
        header = json.loads(line)["settings"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not a journal of fastsam annotate: delete it, or use another --out") from None
    if header != settings:
        changed = sorted(k for k in set(header) | set(settings) if header.get(k) != settings.get(k))
        detail = ", ".join(f"{k}: {header.get(k)!r} then, {settings.get(k)!r} now" for k in changed)
        raise ValueError(f"{path.parent} holds annotations made with other settings ({detail}); use another --out, "
                         f"or delete {path} to start again")  # fmt: skip


def _key(source: str | os.PathLike) -> str:
    return str(Path(source).resolve())


def store_image(source: str | os.PathLike, out: Path, name: str, pixels: np.ndarray | None = None) -> Path:
    """Put an image in ``out/images/name``: a copy of the file, or, when EXIF says to rotate it, ``pixels`` (the
    upright RGB image the masks were made on) encoded in the file's format, so that every tool sees the pixels the
    masks belong to."""
    folder = out / IMAGES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    rotated = False
    if pixels is not None:
        with Image.open(source) as img:
            rotated = img.getexif().get(0x0112, 1) not in (0, 1)
    tmp = target.with_name(target.name + ".part")
    if rotated:
        Image.fromarray(pixels).save(tmp, format=Image.registered_extensions().get(target.suffix.lower(), "PNG"), quality=95)
    else:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def write_coco(records: Sequence[ImageRecord], categories: Sequence[str], out: Path, segmentation: str = "rle",
               info: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write ``out/annotations.json``: COCO instances with ids from 1, images in ``records`` order.

    Args:
        segmentation: ``"rle"`` (compressed RLE, exact) or ``"polygons"`` (the outer boundary of each part; holes
            are filled, as COCO polygons cannot hold them).

    Every annotation has ``iscrowd`` 0, ``bbox`` ``[x, y, w, h]`` (the mask's tight box), ``area`` (its pixels),
    ``score`` (the mask confidence) and, with classes, ``class_score`` (the class probability).
    """
    if segmentation not in ("rle", "polygons"):
        raise ValueError(f"unknown COCO segmentation {segmentation!r}: use rle or polygons")
    category_ids = {name: i + 1 for i, name in enumerate(categories)}
    images, annotations = [], []
    for image_id, record in enumerate(records, 1):
        images.append({"id": image_id, "file_name": record.file_name, "width": record.width, "height": record.height})
        for inst in record.instances:
            seg: Any = inst["segmentation"]
            if segmentation == "polygons":
                mask = rle_to_mask([seg])[0]
                seg = [ring.reshape(-1).round(2).tolist() for ring in mask_to_polygons(mask)
                       if polygon_area(ring, signed=True) > 0]  # fmt: skip
                if not seg:
                    continue
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category_ids[inst["category"]],
                   "segmentation": seg, "bbox": inst["bbox"], "area": inst["area"], "iscrowd": 0,
                   "score": inst["score"]}  # fmt: skip
            if inst.get("class_score") is not None:
                ann["class_score"] = inst["class_score"]
            annotations.append(ann)
    data = {
        "info": info or {"description": "made by fastsam annotate"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "object"} for name, i in category_ids.items()],
    }
    path = out / COCO_NAME
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
    return path


def yolo_polygon(rle: dict[str, Any], width: int, height: int) -> list[float] | None:
    """The largest outer boundary of a mask, normalised to [0, 1] as ``x1, y1, x2, y2, ...`` (YOLO-seg holds one
    polygon per instance: smaller separate parts and holes are left out); None for an empty mask."""
    mask = rle_to_mask([rle])[0]
    rings = [r for r in mask_to_polygons(mask) if polygon_area(r, signed=True) > 0]
    if not rings:
        return None
    ring = max(rings, key=polygon_area).astype(np.float64)
    ring[:, 0] /= width
    ring[:, 1] /= height
    return np.clip(ring, 0.0, 1.0).reshape(-1).round(6).tolist()


def write_yolo(records: Iterable[ImageRecord], categories: Sequence[str], out: Path) -> Path:
    """Write ``out/labels/<stem>.txt`` for every image (empty for an image without instances) and ``out/data.yaml``
    (``train`` and ``val``: ``images``; ``names``); returns the YAML's path."""
    class_ids = {name: i for i, name in enumerate(categories)}
    labels = out / LABELS_DIR
    labels.mkdir(parents=True, exist_ok=True)
    for record in records:
        lines = []
        for inst in record.instances:
            coords = yolo_polygon(inst["segmentation"], record.width, record.height)
            if coords is not None:
                lines.append(" ".join([str(class_ids[inst["category"]])] + [f"{v:.6f}" for v in coords]))
        (labels / (Path(record.file_name).stem + ".txt")).write_text("".join(line + "\n" for line in lines))
    names = "\n".join(f"  {i}: {json.dumps(name)}" for i, name in enumerate(categories))
    path = out / DATA_YAML
    path.write_text(
        "# made by fastsam annotate; paths are relative to this file's folder\n"
        f"train: {IMAGES_DIR}\nval: {IMAGES_DIR}\nnc: {len(categories)}\nnames:\n{names}\n"
    )
    return path
