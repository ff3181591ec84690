"""The converted training format written by ``fastsam data convert`` ("shards") and its reader.

Layout of a converted folder::

    fastsam-data.json          # {"format": "fastsam-shards", "version": 1, "images", "instances", "shards": [names],
                               #  "max_side", "quality", "source", "report"} - written last: a folder without it
                               #  is an unfinished conversion
    shard-00000.bin            # per image, back to back: the encoded image (JPEG or PNG), then its annotations
    shard-00000.jsonl          # per image, one line: {"name", "id", "height", "width", "source_height",
                               #  "source_width", "image": [offset, length], "annotations": [offset, length],
                               #  "instances"} - byte ranges in shard-00000.bin

An image's annotations are UTF-8 JSON ``{"size": [H, W], "counts": [...], "boxes": [[x1, y1, x2, y2], ...],
"crowd": [0 | 1, ...]}``: per instance a compressed COCO RLE string at the stored image's resolution and its box
in its pixels. Images larger than ``max_side`` are downscaled (pixel-area averaging; masks by the same map,
cells at least half covered) and re-encoded (PNG stays PNG, others become JPEG); the others are stored as their
original bytes. Training reads the index into memory and each image with one seek and read.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .records import DataReport, ImageRecord, ShardRef, annotation_rle, check_rle_counts, image_bytes, record_annotations

LOGGER = logging.getLogger("fastsam.train")
INDEX_NAME = "fastsam-data.json"
FORMAT_NAME = "fastsam-shards"
FORMAT_VERSION = 1


@dataclass
class _Converted:
    """One converted image, or the reason it failed (``error``)."""

    image: bytes = b""
    annotations: bytes = b""
    meta: dict | None = None
    instances: int = 0
    crowd: int = 0
    skipped: list[str] | None = None  # reasons of skipped annotations
    error: str | None = None


def _encode(image: np.ndarray, png: bool, quality: int) -> bytes:
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    ok, buf = cv2.imencode(".png", bgr) if png else cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("image encoding failed")
    return buf.tobytes()


def convert_record(rec: ImageRecord, max_side: int | None = None, quality: int = 95) -> _Converted:
    """Read, check, optionally downscale (longest side ``max_side`` pixels) and encode one record of any source,
    converted ones too. Never raises for bad data: an unreadable image sets ``error``, an unusable annotation
    (undecodable or malformed RLE, empty mask) is skipped and its reason listed."""
    try:
        raw = image_bytes(rec)
        with Image.open(io.BytesIO(raw)) as im:
            fmt = (im.format or "").upper()
            image = np.asarray(im.convert("RGB"))
    except Exception as err:  # noqa: BLE001 - any decoder error means a corrupt file
        return _Converted(error=f"unreadable ({type(err).__name__}: {err})")
    h, w = image.shape[:2]
    if (h, w) != (rec.height, rec.width):
        return _Converted(error=f"image is {h}x{w}, expected {rec.height}x{rec.width}")
    r = max_side / max(h, w) if max_side and max(h, w) > max_side else 1.0
    nh, nw = (max(round(h * r), 1), max(round(w * r), 1)) if r < 1 else (h, w)
    png = fmt == "PNG"
    if r < 1:
        data = _encode(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA), png, quality)
    elif fmt in ("JPEG", "PNG"):
        data = raw
    else:
        data = _encode(image, png, quality)
    counts, boxes, crowd, skipped = [], [], [], []
    try:
        annotations = record_annotations(rec)
    except Exception as err:  # noqa: BLE001
        return _Converted(error=f"unreadable annotations ({type(err).__name__}: {err})")
    for kind, ann, is_crowd in annotations:
        try:
            if kind == "rle":
                check_rle_counts(ann["counts"], h, w)
            rle = annotation_rle(kind, ann, h, w)
            if r < 1:
                small = cv2.resize(mask_utils.decode(rle) * np.uint8(255), (nw, nh), interpolation=cv2.INTER_AREA) >= 128
                rle = mask_utils.encode(np.asfortranarray(small.astype(np.uint8)))
            elif isinstance(rle.get("counts"), str):
                rle = {"size": rle["size"], "counts": rle["counts"].encode()}
            x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
        except Exception as err:  # noqa: BLE001 - pycocotools raises plain Exceptions
            skipped.append(f"undecodable ({type(err).__name__}: {err})")
            continue
        if bw <= 0 or bh <= 0:
            skipped.append("empty mask" + (" after resizing" if r < 1 else ""))
            continue
        counts.append(rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"])
        boxes.append([x, y, x + bw, y + bh])
        crowd.append(int(bool(is_crowd)))
    anns = json.dumps({"size": [nh, nw], "counts": counts, "boxes": boxes, "crowd": crowd}, separators=(",", ":"))
    meta = {"name": Path(rec.path).name, "id": rec.image_id, "height": nh, "width": nw, "source_height": h, "source_width": w}
    return _Converted(data, anns.encode(), meta, len(crowd) - sum(crowd), sum(crowd), skipped)


def _convert_task(args: tuple[ImageRecord, int | None, int]) -> _Converted:
    return convert_record(*args)


def _converted(records: list[ImageRecord], max_side: int | None, quality: int, workers: int):
    """``(record, converted)`` in order; with ``workers`` processes, a bounded window of records at a time."""
    tasks = [(rec, max_side, quality) for rec in records]
    if workers <= 0:
        yield from zip(records, map(_convert_task, tasks))
        return
    window = workers * 32
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        for start in range(0, len(tasks), window):
            block = tasks[start : start + window]
            yield from zip(records[start : start + window], pool.map(_convert_task, block, chunksize=4))


class _ShardWriter:
    """Appends converted images to ``shard-NNNNN.bin`` / ``.jsonl`` pairs of at most ``per_shard`` images."""

    def __init__(self, out: Path, per_shard: int) -> None:
        self.out, self.per_shard = out, per_shard
        self.names: list[str] = []
        self.count = 0
        self.bin = self.index = None

    def add(self, item: _Converted) -> None:
        if self.count % self.per_shard == 0:
            self.close()
            name = f"shard-{len(self.names):05d}"
            self.names.append(name)
            self.bin = open(self.out / f"{name}.bin", "wb")
            self.index = open(self.out / f"{name}.jsonl", "w")
        offset = self.bin.tell()
        self.bin.write(item.image)
        self.bin.write(item.annotations)
        line = {**item.meta, "image": [offset, len(item.image)], "annotations": [offset + len(item.image), len(item.annotations)],
                "instances": item.instances}
        self.index.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        for f in (self.bin, self.index):
            if f is not None:
                f.close()
        self.bin = self.index = None


def convert_dataset(
    records: list[ImageRecord],
    out: str | os.PathLike,
    report: DataReport,
    max_side: int | None = None,
    quality: int = 95,
    per_shard: int = 1000,
    workers: int = 0,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``records`` (from :func:`.data.load_records`) as shards in ``out`` (created; must not hold a converted
    dataset already). ``report`` (the loading report) goes on counting what fails here. ``workers`` > 0 decodes
    and encodes in that many processes (output identical). Returns the index written to ``fastsam-data.json``."""
    from tqdm import tqdm

    out = Path(out)
    if (out / INDEX_NAME).exists():
        raise FileExistsError(f"{out} already holds a converted dataset ({INDEX_NAME}); choose another --out or delete it")
    if per_shard < 1:
        raise ValueError(f"images per shard must be >= 1, got {per_shard}")
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("shard-*.bin")) + list(out.glob("shard-*.jsonl")):
        old.unlink()  # leftovers of an unfinished conversion
    writer = _ShardWriter(out, per_shard)
    report.images = report.annotations = report.ignored_crowd = 0  # recounted: what is written
    try:
        items = _converted(records, max_side, quality, workers)
        for rec, item in tqdm(items, total=len(records), desc="convert", unit="image", disable=not progress, dynamic_ncols=True):
            if item.error:
                report.skip_image(item.error, rec.path)
                continue
            for reason in item.skipped:
                report.skip_annotation(reason, rec.path)
            writer.add(item)
            report.images += 1
            report.annotations += item.instances
            report.ignored_crowd += item.crowd
    finally:
        writer.close()
    index = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "images": report.images, "instances": report.annotations,
        "crowd": report.ignored_crowd, "shards": writer.names, "max_side": max_side, "quality": quality,
        "source": source or {}, "report": report.to_dict(),
    }
    tmp = out / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, out / INDEX_NAME)
    return index


def load_shards(folder: str | os.PathLike, report: DataReport | None = None) -> tuple[list[ImageRecord], DataReport]:
    """Read the index of a converted folder: one :class:`ImageRecord` per image, annotations left in the shards."""
    report = report or DataReport()
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    index_path = folder / INDEX_NAME
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder} has no {INDEX_NAME}: not a converted dataset, or its conversion did not finish "
                                "(run 'fastsam data convert' again)")
    index = json.loads(index_path.read_text())
    if index.get("format") != FORMAT_NAME or int(index.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{index_path} is not a {FORMAT_NAME} index of version <= {FORMAT_VERSION} "
                         f"(format {index.get('format')!r}, version {index.get('version')!r}); convert the data again")
    records = []
    for name in index["shards"]:
        data_file = folder / f"{name}.bin"
        if not data_file.is_file():
            raise FileNotFoundError(f"shard {data_file} listed in {index_path} is missing")
        with open(folder / f"{name}.jsonl") as f:
            for line in f:
                e = json.loads(line)
                ref = ShardRef(data_file, tuple(e["image"]), tuple(e["annotations"]))
                records.append(ImageRecord(Path(e["name"]), int(e["height"]), int(e["width"]), None, int(e["id"]), ref, int(e["instances"])))
                report.images += 1
                report.annotations += int(e["instances"])
    report.ignored_crowd += int(index.get("crowd", 0))
    at_conversion = index.get("report", {})
    if at_conversion.get("skipped_images") or at_conversion.get("skipped_annotations"):
        LOGGER.info("%s: at conversion, skipped images %s, skipped annotations %s", folder,
                    at_conversion.get("skipped_images"), at_conversion.get("skipped_annotations"))
    return records, report
