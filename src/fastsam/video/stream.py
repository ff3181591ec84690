"""Segmenting a stream of frames: decoding in a background thread, frames through the network in batches, and
each batch post-processed in another thread while the next one is in the network."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from ..engine import FastSAM
from ..results import SegmentationResult
from .sources import Frame

_END = object()


class FrameFeed:
    """Decode frames ahead of the network in a background thread.

    Args:
        frames: the frames (e.g. a :class:`~fastsam.video.sources.VideoReader`); iterated in the thread.
        capacity: frames held ready at most.
        live: for cameras and network streams: when the network falls behind, the oldest waiting frame is
            dropped (counted in :attr:`dropped`) so the output stays close to real time. For files
            (``live=False``) decoding waits instead and every frame is kept.
        max_frames: stop after this many decoded frames (None: until the source ends).

    Iterating yields the frames in order; an exception raised while decoding is re-raised there.
    """

    def __init__(self, frames: Iterable[Frame], capacity: int = 8, live: bool = False, max_frames: int | None = None):
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, capacity))
        self._live = live
        self._stop = threading.Event()
        self._frames = frames
        self._max = max_frames
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fastsam-video-decode", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            if self._live and item is not _END and not isinstance(item, BaseException):
                with self._lock:
                    if self._queue.full():
                        try:
                            self._queue.get_nowait()
                            self.dropped += 1
                        except queue.Empty:
                            pass
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            for count, frame in enumerate(self._frames, start=1):
                if self._stop.is_set():
                    break
                self._put(frame)
                if self._max is not None and count >= self._max:
                    break
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)
        self._put(_END)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def batches(self, size: int) -> Iterator[list[Frame]]:
        """Frames in lists of up to ``size``: a batch is cut short rather than wait for a live source."""
        batch: list[Frame] = []
        for frame in self:
            batch.append(frame)
            if len(batch) >= size or (self._live and self._queue.empty()):
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        """Stop decoding (the thread ends at its next frame)."""
        self._stop.set()
        self._thread.join(timeout=5)


def segment_frames(
    feed: FrameFeed,
    model: FastSAM,
    batch_size: int = 4,
    prompt: Callable[[SegmentationResult], SegmentationResult] | None = None,
    **settings: object,
) -> Iterator[tuple[Frame, SegmentationResult]]:
    """Segment every frame of ``feed``, in order, ``batch_size`` frames per forward pass.

    Args:
        feed: the decoded frames.
        model: the model; ``settings`` (imgsz, conf, iou, max_det, retina) go to :meth:`FastSAM.predict`.
        prompt: applied to each frame's everything-mode result (e.g. points/boxes/text through
            :class:`~fastsam.predictor.SegmentedImage`); its result is yielded instead.

    Yields:
        ``(frame, result)``; ``result.masks`` is ``(N, H, W)`` bool at the frame's resolution and
        ``result.file_name`` is ``"frame_<index>"``.
    """
    imgsz = int(settings.pop("imgsz", 1024))  # type: ignore[call-overload]

    def finish(batch: list[Frame], images: list, staged: list) -> list[tuple[Frame, SegmentationResult]]:
        names = [f"frame_{frame.index:06d}" for frame in batch]
        results = model.finish(staged, images, names, **settings)
        return [(frame, prompt(result) if prompt is not None else result) for frame, result in zip(batch, results)]

    # The network runs batch k + 1 here while batch k is post-processed in the "post" thread.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastsam-post") as post:
        pending: Future | None = None
        for batch in feed.batches(batch_size):
            images = [f.image for f in batch]
            staged = model.forward_arrays(images, imgsz)
            if pending is not None:
                yield from pending.result()
            pending = post.submit(finish, batch, images, staged)
        if pending is not None:
            yield from pending.result()
