"""Zero-shot dataset annotation: everything mode, CLIP classes, overlap resolution, then a COCO or YOLO-seg dataset.

:func:`label_result` turns one everything-mode result into instances; :func:`annotate_images` runs it over many
images (decoded ahead, batched, resumable, bad images logged to ``OUT/errors.jsonl``) and writes the dataset
(:mod:`.dataset`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import FastSAM
from ..ops.rle import box_xyxy_to_xywh, mask_area, mask_to_box, mask_to_rle
from ..prompts.text import TextScorer
from ..results import SegmentationResult
from .classes import assign_classes
from .dataset import ImageRecord, Journal, store_image, write_coco, write_yolo
from .overlaps import resolve_overlaps

__all__ = ["OBJECT", "AnnotateSettings", "AnnotateSummary", "annotate_images", "label_result"]

OBJECT = "object"
"""The one category of a dataset made without classes."""

FORMATS = ("coco", "yolo")


@dataclass(frozen=True)
class AnnotateSettings:
    """What the annotations depend on (a dataset folder made with other settings is not resumed).

    Attributes:
        classes: class names scored with CLIP; empty: every mask is one class-agnostic ``"object"`` (no CLIP).
        text_threshold: the least softmax probability a mask's class needs (see :mod:`.classes`).
        min_area: masks with fewer pixels are left out (before and after overlaps are resolved).
        overlap: ``"resolve"`` (masks of one class made disjoint, see :mod:`.overlaps`), ``"keep"`` (masks as
            predicted, parts and wholes overlapping, as in SA-1B) or ``"auto"`` (resolve with classes, keep without).
        max_overlap: with ``resolve``, a mask whose share already taken by its class is at least this is dropped.
        model: the model's name or path; ``imgsz``, ``conf``, ``iou``, ``max_det``, ``retina``: everything mode.
    """

    classes: tuple[str, ...] = ()
    text_threshold: float = 0.25
    min_area: int = 100
    overlap: str = "auto"
    max_overlap: float = 0.5
    model: str = ""
    imgsz: int = 1024
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    retina: bool = True

    def __post_init__(self) -> None:
        if self.overlap not in ("auto", "resolve", "keep"):
            raise ValueError(f"overlap must be auto, resolve or keep, got {self.overlap!r}")
        if not 0.0 <= self.text_threshold <= 1.0:
            raise ValueError(f"--text-threshold is a probability in [0, 1], got {self.text_threshold}")
        if self.min_area < 0:
            raise ValueError(f"--min-area must be at least 0 pixels, got {self.min_area}")

    @property
    def categories(self) -> list[str]:
        return list(self.classes) or [OBJECT]

    @property
    def resolves(self) -> bool:
        return self.overlap == "resolve" or (self.overlap == "auto" and bool(self.classes))

    def fingerprint(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data


def label_result(result: SegmentationResult, settings: AnnotateSettings, scorer: TextScorer | None = None) -> list[dict[str, Any]]:
    """The instances of one everything-mode result: masks of ``min_area`` pixels or more, classified (with
    ``settings.classes``; needs ``result.image`` and ``scorer``), overlaps resolved as the settings say.

    Returns:
        Instance dicts (see :class:`.dataset.ImageRecord`), best first.
    """
    if settings.classes and scorer is None:
        raise ValueError("classes need a text scorer (e.g. fastsam.prompts.text.ClipScorer())")
    areas = result.areas()
    candidates = result.select(np.flatnonzero(areas >= max(settings.min_area, 1)))
    masks = candidates.masks
    scores = np.asarray(candidates.scores, dtype=np.float64)
    class_ids = np.zeros(len(candidates), dtype=np.int64)
    class_scores: np.ndarray | None = None
    if settings.classes and len(candidates):
        if result.image is None:
            raise ValueError("classes need the image itself; this result was made without it")
        assigned = assign_classes(result.image, masks, candidates.boxes, settings.classes, scorer,
                                  threshold=settings.text_threshold)  # fmt: skip
        matched = np.flatnonzero(assigned.class_ids >= 0)
        masks, scores = masks[matched], scores[matched]
        class_ids, class_scores = assigned.class_ids[matched], assigned.scores[matched].astype(np.float64)
    ranking = scores if class_scores is None else scores * class_scores
    if settings.resolves:
        kept, masks = resolve_overlaps(masks, class_ids, ranking, settings.max_overlap, settings.min_area)
    else:
        kept = np.lexsort((np.arange(len(ranking)), -ranking))
        masks = masks[kept]
    names = settings.categories
    rles = mask_to_rle(masks)
    boxes = box_xyxy_to_xywh(mask_to_box(masks))
    pixel_areas = mask_area(masks)
    instances = []
    for k, i in enumerate(kept.tolist()):
        instances.append({
            "category": names[int(class_ids[i])],
            "segmentation": rles[k],
            "bbox": [float(v) for v in boxes[k]],
            "area": int(pixel_areas[k]),
            "score": round(float(scores[i]), 6),
            "class_score": None if class_scores is None else round(float(class_scores[i]), 6),
        })  # fmt: skip
    return instances


@dataclass
class AnnotateSummary:
    """What a run did: images annotated now, already done before (resumed), failed; instances per category;
    the files written."""

    annotated: int = 0
    resumed: int = 0
    failed: int = 0
    instances: Counter = field(default_factory=Counter)
    written: list[Path] = field(default_factory=list)
    errors: Path | None = None
    seconds: float = 0.0


def annotate_images(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    model: FastSAM,
    settings: AnnotateSettings,
    scorer: TextScorer | None = None,
    formats: Sequence[str] = ("coco",),
    segmentation: str = "rle",
    batch_size: int = 1,
    workers: int = 2,
    progress: bool = True,
) -> AnnotateSummary:
    """Annotate every image of ``paths`` into the dataset folder ``out`` (see :mod:`.dataset` for its layout).

    Images already in ``out``'s journal are not segmented again (resume). An image that cannot be read or
    segmented is logged to ``out/errors.jsonl`` and the run goes on. The datasets of ``formats`` are written
    from every image the journal holds, at the end.

    Raises:
        ValueError: ``out`` was made with other settings, an unknown format, or classes without a scorer.
    """
    from tqdm import tqdm

    from ..pipeline import segment_stream

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown dataset format {unknown[0]!r}: choose {' or '.join(FORMATS)}")
    if settings.classes and scorer is None:
        raise ValueError("classes need a text scorer (e.g. fastsam.prompts.text.ClipScorer())")
    out = Path(out)
    start = time.perf_counter()
    journal = Journal(out, settings.fingerprint())
    summary = AnnotateSummary()
    todo, seen = [], set()
    for path in paths:
        key = str(Path(path).resolve())
        if key in seen:
            continue
        seen.add(key)
        if journal.done(path):
            summary.resumed += 1
        else:
            todo.append(Path(path))
    errors_path = out / "errors.jsonl"
    inference = {"imgsz": settings.imgsz, "conf": settings.conf, "iou": settings.iou, "max_det": settings.max_det,
                 "retina": settings.retina}  # fmt: skip
    bar = tqdm(total=len(todo), unit="img", disable=not progress or len(todo) < 2, file=sys.stderr)
    with open(errors_path, "w") as log:

        def fail(path: Path, stage: str, message: str) -> None:
            summary.failed += 1
            log.write(json.dumps({"path": str(path), "stage": stage, "error": message}) + "\n")
            log.flush()
            bar.write(f"skipped {path}: {message}", file=sys.stderr)

        for outcome in segment_stream(todo, model, batch_size=batch_size, workers=workers, **inference):
            bar.update(1)
            if outcome.result is None:
                fail(outcome.path, outcome.stage or "load", outcome.error or "unknown error")
                continue
            result = outcome.result
            try:
                instances = label_result(result, settings, scorer)
            except (ValueError, RuntimeError) as err:
                fail(outcome.path, "classes" if settings.classes else "label", f"{type(err).__name__}: {err}")
                continue
            height, width = result.image_size
            name = journal.name_for(outcome.path)
            try:
                store_image(outcome.path, out, name, result.image)
            except OSError as err:
                fail(outcome.path, "copy", str(err))
                continue
            journal.add(ImageRecord(str(outcome.path), name, int(width), int(height), instances))
            summary.annotated += 1
    bar.close()
    if summary.failed:
        summary.errors = errors_path
    else:
        errors_path.unlink()
    records = journal.ordered()
    for record in records:
        summary.instances.update(inst["category"] for inst in record.instances)
    from .. import __version__

    for fmt in formats:
        if fmt == "coco":
            info = {"description": "made by fastsam annotate", "version": __version__,
                    "settings": settings.fingerprint()}  # fmt: skip
            summary.written.append(write_coco(records, settings.categories, out, segmentation, info=info))
        else:
            summary.written.append(write_yolo(records, settings.categories, out))
    summary.seconds = time.perf_counter() - start
    return summary
