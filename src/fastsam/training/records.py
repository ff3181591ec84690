"""Dataset records: one image and its annotations, wherever they are stored, and the report of what was skipped.

A record points either at an image file with its annotations in memory (COCO JSON, SA-1B, YOLO-seg sources) or at
byte ranges of a shard written by ``fastsam data convert`` (:mod:`.shards`), whose annotations are read on
demand. :func:`read_image` and :func:`record_annotations` hide the difference.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

DATA_FORMATS: tuple[str, ...] = ("auto", "coco", "sa1b", "yolo", "shards")
"""Training data formats: detected, COCO instances JSON, SA-1B folder, YOLO-seg folder, ``fastsam data convert``."""

LOGGER = logging.getLogger("fastsam.train")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}

Annotation = tuple[str, Any, bool]
"""``(kind, data, iscrowd)``: ``kind`` ``"poly"`` (list of flat pixel polygons), ``"rle"`` (COCO RLE dict,
compressed or not) or ``"npoly"`` (one flat polygon normalised to [0, 1])."""


@dataclass(frozen=True)
class ShardRef:
    """Where a converted image and its annotations are: ``(offset, length)`` byte ranges of the shard ``file``."""

    file: Path
    image: tuple[int, int]
    annotations: tuple[int, int]


@dataclass
class ImageRecord:
    """One image (``height`` x ``width`` pixels) and its annotations (see :data:`Annotation`).

    For a shard record (``shard`` set) ``path`` is the source image's name, for messages only, and
    ``annotations`` is ``None`` until read by :func:`record_annotations`.
    """

    path: Path
    height: int
    width: int
    annotations: list[Annotation] | None
    image_id: int = 0
    shard: ShardRef | None = None
    num_annotations: int = 0


@dataclass
class DataReport:
    """What was loaded and what was skipped, by reason."""

    images: int = 0
    annotations: int = 0
    skipped_images: Counter = field(default_factory=Counter)
    skipped_annotations: Counter = field(default_factory=Counter)
    ignored_crowd: int = 0

    def skip_image(self, reason: str, where: Any) -> None:
        """Count (by ``reason``) and log one skipped image."""
        self.skipped_images[reason] += 1
        LOGGER.warning("skipped image %s: %s", where, reason)

    def skip_annotation(self, reason: str, where: Any) -> None:
        """Count (by ``reason``) and log one skipped annotation."""
        self.skipped_annotations[reason] += 1
        LOGGER.warning("skipped annotation in %s: %s", where, reason)

    def summary(self) -> str:
        """One line: images, instances, crowd regions ignored and the skips by reason."""
        text = f"{self.images} images, {self.annotations} instances"
        if self.ignored_crowd:
            text += f", {self.ignored_crowd} crowd annotations ignored"
        if self.skipped_images:
            text += f"; skipped images: {dict(self.skipped_images)}"
        if self.skipped_annotations:
            text += f"; skipped annotations: {dict(self.skipped_annotations)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {"images": self.images, "annotations": self.annotations, "ignored_crowd": self.ignored_crowd,
                "skipped_images": dict(self.skipped_images), "skipped_annotations": dict(self.skipped_annotations)}


def _read_range(path: Path, span: tuple[int, int]) -> bytes:
    offset, length = span
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise OSError(f"shard {path} is truncated (wanted {length} bytes at {offset}, got {len(data)})")
    return data


def image_bytes(rec: ImageRecord) -> bytes:
    """The record's encoded image file."""
    return _read_range(rec.shard.file, rec.shard.image) if rec.shard else Path(rec.path).read_bytes()


def read_image(rec: ImageRecord) -> np.ndarray:
    """The record's image as RGB uint8 ``(H, W, 3)`` (pixels as stored: no EXIF rotation, so that they match the
    annotations). Raises ``OSError``/``ValueError`` for unreadable images or a size other than the record's."""
    source: Any = io.BytesIO(_read_range(rec.shard.file, rec.shard.image)) if rec.shard else rec.path
    with Image.open(source) as im:
        image = np.asarray(im.convert("RGB"))
    if image.shape[:2] != (rec.height, rec.width):
        raise ValueError(f"image is {image.shape[0]}x{image.shape[1]}, expected {rec.height}x{rec.width}")
    return image


def record_annotations(rec: ImageRecord) -> list[Annotation]:
    """The record's annotations (read from its shard when needed; shard masks are compressed COCO RLE)."""
    if rec.annotations is not None:
        return rec.annotations
    data = json.loads(_read_range(rec.shard.file, rec.shard.annotations))
    size = data["size"]
    return [("rle", {"size": size, "counts": c}, bool(k)) for c, k in zip(data["counts"], data["crowd"])]


def check_rle_counts(counts: str | bytes | list, h: int, w: int) -> None:
    """Raise ``ValueError`` unless ``counts`` (compressed COCO string or list of runs) is a valid RLE of an
    ``h`` x ``w`` mask: well-formed, no negative run, runs adding up to ``h * w`` (pycocotools does not check)."""
    if isinstance(counts, list):
        runs = [int(v) for v in counts]
    else:
        text = counts.encode() if isinstance(counts, str) else bytes(counts)
        runs, p = [], 0
        while p < len(text):
            x, k, more = 0, 0, True
            while more:
                if p >= len(text):
                    raise ValueError("RLE counts end in the middle of a number")
                c = text[p] - 48
                if not 0 <= c < 64:
                    raise ValueError(f"RLE counts hold the invalid character {chr(text[p])!r}")
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                p, k = p + 1, k + 1
                if not more and c & 0x10:
                    x |= -1 << (5 * k)
            if len(runs) > 2:
                x += runs[-2]
            runs.append(x)
    if any(r < 0 for r in runs):
        raise ValueError("RLE with a negative run")
    if sum(runs) != h * w:
        raise ValueError(f"RLE covers {sum(runs)} pixels, the image has {h * w}")


def annotation_rle(kind: str, data: Any, h: int, w: int) -> dict:
    """One annotation as a single compressed COCO RLE at the image's ``h`` x ``w`` resolution."""
    if kind == "rle":
        rle = data
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, h, w)
        return rle
    if kind == "npoly":
        poly = (np.asarray(data, dtype=np.float64).reshape(-1, 2) * (w, h)).reshape(-1).tolist()
        return mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
    return mask_utils.merge(mask_utils.frPyObjects(data, h, w))
