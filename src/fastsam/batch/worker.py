"""Turning image keys into records with one model: the unit of work of both engines.

:func:`segment_records` runs the streaming pipeline (:func:`fastsam.pipeline.segment_stream`: decoding in background
threads, batched forward passes) over keys and yields one record per key. :class:`SegmentWorker` holds one model
and does that for each batch it is called with; Ray Data runs it as an actor (one model per actor).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..engine import FastSAM
from ..errors import ImageLoadError
from ..pipeline import segment_stream
from .payload import ModelPayload, unpack_model
from .reader import read_image
from .records import STORAGE_STAGE, error_record, image_record, is_left_out, left_out_reason, to_table
from .storage import RetryPolicy, StorageError, StorageReader


def segment_records(
    keys: Sequence[str],
    model: FastSAM,
    batch_size: int = 4,
    workers: int = 2,
    reader: StorageReader | None = None,
    **settings: Any,
) -> Iterator[dict[str, Any]]:
    """Segment the images named by ``keys``, yielding one record per key, in order.

    A key whose bytes do not decode gives an error record (``"load: ..."``), a batch the network fails on gives
    error records (``"segment: ..."``); a key whose bytes cannot be read even after the retries of ``reader`` gives
    a *left-out* record (``"storage: ..."``, see :func:`fastsam.batch.records.is_left_out`) that callers do not
    write, so the next run reads it again. None of them stops the stream.

    Args:
        keys: absolute local paths or URIs (see :mod:`fastsam.batch.sources`).
        model: the model; ``settings`` (imgsz, conf, iou, max_det, retina) go to :meth:`FastSAM.predict`.
        batch_size: images per forward pass.
        workers: image reading/decoding threads.
        reader: reads the keys' bytes, with retries (default: a :class:`fastsam.batch.storage.StorageReader` with
            the default policy); pass one reader to successive calls so that it remembers a failing store.
    """
    keys = list(keys)
    reader = reader or StorageReader()
    unread: dict[int, str] = {}  # index -> why its bytes could not be read
    # The pipeline takes paths; it gets each key's index as a stand-in, so URIs and duplicate keys pass unchanged.
    stand_ins = [Path(str(i)) for i in range(len(keys))]

    def load(path: Path) -> Any:
        index = int(path.name)
        try:
            return read_image(keys[index], reader)
        except StorageError as err:
            unread[index] = str(err)
            raise ImageLoadError(str(err)) from None  # the pipeline reports it; the record says "storage"

    stream = segment_stream(stand_ins, model, batch_size=batch_size, workers=workers, loader=load, **settings)
    for outcome in stream:
        index = int(outcome.path.name)
        key = keys[index]
        if index in unread:
            yield error_record(key, f"{STORAGE_STAGE}: {unread.pop(index)}")
        elif outcome.result is None:
            yield error_record(key, f"{outcome.stage or 'load'}: {outcome.error or 'unknown error'}")
        else:
            yield image_record(key, outcome.result)


class SegmentWorker:
    """One model that segments batches of keys into records (a Ray Data actor class, also usable directly).

    Args:
        model: a :class:`ModelPayload` (or a Ray object reference to one), or a ready :class:`FastSAM`.
        settings: keyword arguments of :meth:`FastSAM.predict` (imgsz, conf, iou, max_det, retina).
        device: ``"auto"`` (the GPU Ray gave this actor, else CPU), ``"cpu"``, ``"cuda"``, ...
        half: the older spelling of ``precision`` (True: fp16, False: fp32).
        precision: network precision (see :class:`FastSAM`; ``auto``: fp16 on CUDA, bf16 on CPUs with it).
        batch_size: images per forward pass.
        workers: image reading/decoding threads.
        threads: torch intra-op threads (default: torch's choice, which Ray sets to the actor's CPUs).
        backend, compile: runtime options of :func:`fastsam.batch.payload.unpack_model`.
        retry: how reads are retried (default: :class:`fastsam.batch.storage.RetryPolicy`).
        tally: where to report masks and left-out keys: a :class:`fastsam.batch.summary.RunTally` or a Ray actor
            handle of one (None: not reported).
    """

    def __init__(
        self,
        model: ModelPayload | FastSAM | Any,
        settings: dict[str, Any],
        device: str | None = "auto",
        half: bool | None = None,
        batch_size: int = 4,
        workers: int = 2,
        threads: int | None = None,
        backend: str = "auto",
        compile: bool | str = False,
        precision: str = "auto",
        retry: RetryPolicy | None = None,
        tally: Any = None,
    ) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        if type(model).__name__ == "ObjectRef":  # shipped through Ray's object store
            import ray

            model = ray.get(model)
        if not isinstance(model, FastSAM):
            model = unpack_model(model, device=device, half=half, backend=backend, compile=compile,
                                 precision=precision)  # fmt: skip
        self.model = model
        self.settings = dict(settings)
        self.batch_size, self.workers = batch_size, workers
        self.reader = StorageReader(retry)  # one per actor: it remembers a store that keeps failing
        self.tally = tally

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Segment a batch ``{"path": keys}``; returns its records as a ``pyarrow.Table``: one row per key, except
        the keys whose bytes could not be read (left out, reported to the tally, read again by the next run)."""
        keys = [str(k) for k in batch["path"]]
        records = list(segment_records(keys, self.model, self.batch_size, self.workers, self.reader, **self.settings))
        kept = [r for r in records if not is_left_out(r)]
        if self.tally is not None:
            masks = sum(len(r["annotations"]) for r in kept if r["annotations"] is not None)
            left = [(r["path"], left_out_reason(r)) for r in records if is_left_out(r)]
            if hasattr(self.tally.add, "remote"):  # a Ray actor: wait, so the driver's final report sees every batch
                import ray

                ray.get(self.tally.add.remote(masks, left))
            else:
                self.tally.add(masks, left)
        return to_table(kept)
