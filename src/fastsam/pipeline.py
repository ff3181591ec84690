"""Streaming many images through the model: decoding ahead in background threads, batched inference.

:func:`segment_stream` yields one :class:`Outcome` per input, in input order, while the next images are being
decoded; a failing image yields an outcome with its error and the stream goes on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine import FastSAM
from .errors import ImageLoadError
from .io import load_image
from .results import SegmentationResult


@dataclass
class Outcome:
    """What happened to one input: a result, or the error that stopped it (``stage``: ``"load"``/``"segment"``)."""

    path: Path
    result: SegmentationResult | None = None
    error: str | None = None
    stage: str | None = None


def segment_stream(
    paths: Iterable[str | os.PathLike],
    model: FastSAM,
    batch_size: int = 4,
    workers: int = 2,
    loader: Callable[[Path], np.ndarray] = load_image,
    **settings: object,
) -> Iterator[Outcome]:
    """Segment every image of ``paths``, yielding outcomes in input order.

    Args:
        paths: image files.
        model: the model; ``settings`` (imgsz, conf, iou, max_det, retina) go to :meth:`FastSAM.predict`.
        batch_size: images per forward pass.
        workers: decoding threads; up to ``2 * batch_size`` images are decoded ahead of the network.
    """
    queue: deque[tuple[Path, Future]] = deque()
    items = iter(Path(p) for p in paths)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fastsam-decode") as pool:

        def fill() -> None:
            while len(queue) < 2 * batch_size:
                path = next(items, None)
                if path is None:
                    return
                queue.append((path, pool.submit(loader, path)))

        fill()
        while queue:
            batch: list[tuple[Path, np.ndarray]] = []
            while queue and len(batch) < batch_size:
                path, future = queue.popleft()
                try:
                    batch.append((path, future.result()))
                except (ImageLoadError, ValueError, OSError) as err:
                    yield Outcome(path, error=str(err), stage="load")
                fill()
            if not batch:
                continue
            try:
                results = model.predict([image for _, image in batch], batch_size=batch_size, **settings)
            except (ValueError, RuntimeError) as err:  # e.g. out of memory: report the batch, go on
                for path, _ in batch:
                    yield Outcome(path, error=f"{type(err).__name__}: {err}", stage="segment")
                continue
            for (path, _), result in zip(batch, results):
                result.file_name = path.name
                yield Outcome(path, result=result)
