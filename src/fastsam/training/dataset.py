"""The training dataset: records -> augmented ``imgsz`` x ``imgsz`` samples (image, boxes, instance masks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .augment import PAD_VALUE, Augment, compose, hsv_jitter, letterbox_tile, random_affine, render_image, render_instance
from .mosaic import MOSAIC_IMAGES, mosaic_tiles
from .records import Annotation, DataReport, ImageRecord, annotation_rle, read_image, record_annotations

LOGGER = logging.getLogger("fastsam.train")
MASK_RATIO = 4  # prototypes are at 1/4 of the input resolution
LOAD_ERRORS = (OSError, ValueError, KeyError, cv2.error)


@dataclass
class _Source:
    record: ImageRecord
    image: np.ndarray  # (H, W, 3) RGB uint8
    annotations: list[Annotation]


class SegmentationDataset(torch.utils.data.Dataset):
    """Augmented training samples.

    Each item is a dict: ``image`` ``(3, S, S)`` uint8 RGB, ``boxes`` ``(N, 4)`` float32 xyxy input pixels,
    ``masks`` ``(N, S / 4, S / 4)`` uint8 {0, 1}, ``index``. With probability ``augment.mosaic`` (while
    :attr:`mosaic` is on) an item is a mosaic of its image and three others drawn at random; otherwise its image
    letterboxed. Both then go through the random zoom/shift/flip and HSV jitter. Crowd annotations are dropped. The
    augmentation of an item depends only on ``(seed, epoch, index)``, so runs are reproducible whatever the worker
    count.

    An image that fails to decode at training time is logged, counted in ``report.skipped_images`` (of this
    process) and replaced: by the next image, or in a mosaic by the item's own image.
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
        self.mosaic = True  # the trainer turns it off for the last close_mosaic epochs
        self.report = report or DataReport()
        self.min_area = min_area

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of ``epoch`` (call before iterating)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            try:
                return self._load(i)
            except LOAD_ERRORS as err:
                self.report.skip_image(f"failed to load ({type(err).__name__}: {err})", self.records[i].path)
        raise RuntimeError("no image of the dataset could be loaded")

    def _source(self, index: int) -> _Source:
        rec = self.records[index]
        return _Source(rec, read_image(rec), record_annotations(rec))

    def _partner(self, index: int, fallback: _Source) -> _Source:
        try:
            return self._source(index)
        except LOAD_ERRORS as err:
            self.report.skip_image(f"failed to load ({type(err).__name__}: {err}); mosaic uses another image", self.records[index].path)
            return fallback

    def _load(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        aug, s = self.augment, self.imgsz
        first = self._source(index)
        if self.mosaic and aug.mosaic > 0 and rng.random() < aug.mosaic:
            others = rng.integers(0, len(self.records), MOSAIC_IMAGES - 1)
            sources = [first] + [self._partner(int(i), first) for i in others]
            tiles, canvas = mosaic_tiles([src.image.shape[:2] for src in sources], s, rng), 2 * s
        else:
            sources, tiles, canvas = [first], [letterbox_tile(first.image.shape[:2], s)], s
        matrix = random_affine(canvas, s, aug, rng)
        image = np.full((s, s, 3), PAD_VALUE, np.uint8)
        boxes, masks = [], []
        for src, tile in zip(sources, tiles):
            placed = compose(tile, matrix, s)
            if placed is None:
                continue
            render_image(image, src.image, placed)
            h, w = src.image.shape[:2]
            for kind, data, crowd in src.annotations:
                if crowd:
                    continue
                try:
                    got = render_instance(annotation_rle(kind, data, h, w), placed, s, MASK_RATIO)
                except Exception as err:  # noqa: BLE001 - pycocotools raises plain Exceptions
                    self.report.skip_annotation(f"undecodable ({type(err).__name__})", src.record.path)
                    continue
                if got is not None and got[1].sum() >= self.min_area:
                    boxes.append(got[0])
                    masks.append(got[1])
        if any((aug.hsv_h, aug.hsv_s, aug.hsv_v)):
            image = hsv_jitter(image, rng.uniform(-1, 1, 3) * (aug.hsv_h, aug.hsv_s, aug.hsv_v))
        ms = s // MASK_RATIO
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "boxes": torch.from_numpy(np.stack(boxes)) if boxes else torch.zeros(0, 4),
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
