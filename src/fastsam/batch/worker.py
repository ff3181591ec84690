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
from ..pipeline import segment_stream
from .payload import ModelPayload, unpack_model
from .reader import read_image
from .records import error_record, image_record, to_table


def segment_records(
    keys: Sequence[str], model: FastSAM, batch_size: int = 4, workers: int = 2, **settings: Any
) -> Iterator[dict[str, Any]]:
    """Segment the images named by ``keys``, yielding one record per key, in order.

    A key that cannot be read or decoded gives an error record (``"load: ..."``), a batch the network fails on gives
    error records (``"segment: ..."``); neither stops the stream.

    Args:
        keys: absolute local paths or URIs (see :mod:`fastsam.batch.sources`).
        model: the model; ``settings`` (imgsz, conf, iou, max_det, retina) go to :meth:`FastSAM.predict`.
        batch_size: images per forward pass.
        workers: image reading/decoding threads.
    """
    keys = list(keys)
    # The pipeline takes paths; it gets each key's index as a stand-in, so URIs and duplicate keys pass unchanged.
    stand_ins = [Path(str(i)) for i in range(len(keys))]

    def load(path: Path) -> Any:
        return read_image(keys[int(path.name)])

    stream = segment_stream(stand_ins, model, batch_size=batch_size, workers=workers, loader=load, **settings)
    for outcome in stream:
        key = keys[int(outcome.path.name)]
        if outcome.result is None:
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

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Segment a batch ``{"path": keys}``; returns its records as a ``pyarrow.Table`` (one row per key)."""
        keys = [str(k) for k in batch["path"]]
        records = list(segment_records(keys, self.model, self.batch_size, self.workers, **self.settings))
        return to_table(records)
