"""One model, many requests: a bounded queue and a thread that runs the network in micro-batches."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ..engine import FastSAM
from ..results import SegmentationResult


class QueueFullError(Exception):
    """The inference queue is full; the client should retry later."""


@dataclass(frozen=True)
class InferenceSettings:
    imgsz: int = 1024
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    retina: bool = True


@dataclass
class _Job:
    image: np.ndarray
    settings: InferenceSettings
    future: Future


class InferenceWorker:
    """Runs everything-mode inference for queued images, batching jobs that share settings.

    Args:
        model: the shared model (only this worker's thread uses it).
        max_queue: jobs waiting at most; :meth:`submit` raises :class:`QueueFullError` beyond.
        max_batch: images per forward pass at most.
        on_batch: called after each forward pass with the batch size and its time in seconds (metrics).
    """

    def __init__(
        self, model: FastSAM, max_queue: int = 16, max_batch: int = 4,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:  # fmt: skip
        self.model = model
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="fastsam-inference", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._thread.start()
            self._started = True

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs, then stop the thread."""
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)
            self._started = False

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, image: np.ndarray, settings: InferenceSettings) -> Future:
        """Queue an RGB uint8 image; the future resolves to its :class:`SegmentationResult`."""
        future: Future = Future()
        try:
            self._queue.put_nowait(_Job(image, settings, future))
        except queue.Full:
            raise QueueFullError("the inference queue is full") from None
        return future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            job = self._queue.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            for settings in {j.settings for j in batch}:
                group = [j for j in batch if j.settings == settings]
                self._process(group, settings)

    def _process(self, jobs: list[_Job], settings: InferenceSettings) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        start = time.perf_counter()
        try:
            results: list[SegmentationResult] = self.model.predict(
                [j.image for j in live], batch_size=len(live), **settings.__dict__
            )
        except Exception as err:  # report to every waiting request; the worker keeps serving
            for j in live:
                j.future.set_exception(err)
            return
        if self.on_batch is not None:
            self.on_batch(len(live), time.perf_counter() - start)
        for j, result in zip(live, results):
            j.future.set_result(result)
