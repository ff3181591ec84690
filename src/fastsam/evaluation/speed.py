"""FastSAM's speed as the paper measures it: ms per image for everything mode and for 1 / 10 / 100 point
prompts (the network runs once; prompts only select among its masks). The SAM side of the paper's
comparison lives in ``bench/vs_sam.py``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..io import load_image
from ..predictor import SegmentedImage

if TYPE_CHECKING:
    from ..engine import FastSAM


@dataclass
class SpeedRow:
    """Timing of one prompt setting, averaged over images and repeats.

    Attributes:
        prompts: ``"everything"`` or the number of point prompts.
        ms_per_image: mean wall time per image in milliseconds, from the decoded image to the selected masks
            (network + post-processing + mask index + prompt).
        ms_min: fastest image/repeat.
        index_ms: mean time to build the image's mask index (:class:`~fastsam.predictor.SegmentedImage`), paid
            once per image however many prompts follow (0 for everything mode).
        prompt_ms: mean time of the prompt alone once the index exists: what each further prompt on the same image
            costs (0 for everything mode).
    """

    prompts: str
    ms_per_image: float
    ms_min: float
    index_ms: float
    prompt_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(model: FastSAM) -> None:
    device = getattr(model, "device", None)
    if device is not None and device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def time_fastsam(
    model: FastSAM,
    images: Sequence[object],
    points: Sequence[int] = (1, 10, 100),
    imgsz: int = 1024,
    conf: float = 0.4,
    iou: float = 0.9,
    max_det: int = 300,
    retina: bool = True,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> list[SpeedRow]:
    """Time everything mode and N-point prompts on each image.

    Args:
        model: a loaded :class:`fastsam.engine.FastSAM`.
        images: paths, PIL images or RGB arrays (decoded once, before timing).
        points: numbers of random foreground points (uniform over the image, fixed seed).
        repeats: timed runs per image and setting; ``warmup`` untimed runs first (per image).

    Returns:
        One :class:`SpeedRow` for everything mode, then one per entry of ``points``.
    """
    arrays = [load_image(im) for im in images]
    if not arrays:
        raise ValueError("no images to time")
    rng = np.random.default_rng(seed)
    kwargs = dict(imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, retina=retina)
    settings: list[int | None] = [None, *points]
    totals: dict[int | None, list[float]] = {s: [] for s in settings}
    indexes: dict[int | None, list[float]] = {s: [] for s in settings}
    prompts: dict[int | None, list[float]] = {s: [] for s in settings}
    for array in arrays:
        h, w = array.shape[:2]
        for _ in range(warmup):
            model.predict(array, **kwargs)
        _sync(model)
        for setting in settings:
            coords = (
                None
                if setting is None
                else np.column_stack([rng.uniform(0, w - 1, setting), rng.uniform(0, h - 1, setting)])
            )
            for _ in range(repeats):
                start = time.perf_counter()
                [result] = model.predict(array, **kwargs)
                _sync(model)
                middle = indexed = end = time.perf_counter()
                if coords is not None:
                    session = SegmentedImage(result)
                    indexed = time.perf_counter()
                    session.points(coords)
                    end = time.perf_counter()
                totals[setting].append((end - start) * 1e3)
                indexes[setting].append((indexed - middle) * 1e3)
                prompts[setting].append((end - indexed) * 1e3)
    return [
        SpeedRow(
            "everything" if s is None else str(s),
            float(np.mean(totals[s])),
            float(np.min(totals[s])),
            float(np.mean(indexes[s])),
            float(np.mean(prompts[s])),
        )
        for s in settings
    ]


def speed_table(rows: Sequence[SpeedRow]) -> str:
    """A markdown table of the rows."""
    lines = [
        "| prompts | ms/image (mean) | ms/image (min) | mask index ms (once per image) | prompt ms (each prompt) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.prompts} | {r.ms_per_image:.1f} | {r.ms_min:.1f} | {r.index_ms:.2f} | {r.prompt_ms:.2f} |")
    return "\n".join(lines)
