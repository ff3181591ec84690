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

    Three stages overlap: decoding (``workers`` threads), the network (this thread) and post-processing (NMS,
    masks; one more thread, which itself spreads per-mask work over the cores): while batch ``k`` is
    post-processed, batch ``k + 1`` is in the network.
    """
    queue: deque[tuple[Path, Future]] = deque()
    items = iter(Path(p) for p in paths)
    imgsz = int(settings.pop("imgsz", 1024))  # type: ignore[call-overload]
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fastsam-decode") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastsam-post") as post:  # fmt: skip

        def fill() -> None:
            while len(queue) < 2 * batch_size:
                path = next(items, None)
                if path is None:
                    return
                queue.append((path, pool.submit(loader, path)))

        def finish(slots: list, images: list[np.ndarray], staged: list | str) -> list[Outcome]:
            """The post-processing of one batch (in the ``post`` thread), as outcomes in input order."""
            failure = staged if isinstance(staged, str) else None
            results: list[SegmentationResult] = []
            if failure is None and images:
                try:
                    results = model.finish(staged, images, [p.name for p, x in slots if not isinstance(x, Outcome)],
                                           **settings)  # fmt: skip
                except (ValueError, RuntimeError) as err:
                    failure = f"{type(err).__name__}: {err}"
            produced = iter(results)
            outcomes = []
            for path, item in slots:
                if isinstance(item, Outcome):
                    outcomes.append(item)
                elif failure is not None:
                    outcomes.append(Outcome(path, error=failure, stage="segment"))
                else:
                    outcomes.append(Outcome(path, result=next(produced)))
            return outcomes

        fill()
        pending: Future | None = None
        while queue:
            # Take inputs in order until the batch holds batch_size decoded images; failures keep their place.
            slots: list[tuple[Path, np.ndarray | Outcome]] = []
            while queue and sum(not isinstance(x, Outcome) for _, x in slots) < batch_size:
                path, future = queue.popleft()
                try:
                    slots.append((path, future.result()))
                except (ImageLoadError, ValueError, OSError) as err:
                    slots.append((path, Outcome(path, error=str(err), stage="load")))
                fill()
            images = [x for _, x in slots if not isinstance(x, Outcome)]
            staged: list | str = []
            if images:
                try:  # the network runs here while the previous batch is post-processed in the post thread
                    staged = model.forward_arrays(images, imgsz)
                except (ValueError, RuntimeError) as err:  # e.g. out of memory: report the batch, go on
                    staged = f"{type(err).__name__}: {err}"
            if pending is not None:
                yield from pending.result()
            pending = post.submit(finish, slots, images, staged)
        if pending is not None:
            yield from pending.result()
