"""The local engine: one process, the streaming pipeline, partitions written as records come out."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from ..engine import FastSAM
from .records import is_left_out, left_out_reason
from .storage import RetryPolicy, StorageReader
from .summary import BatchSummary, RunTally
from .worker import segment_records
from .writer import PartitionWriter

SHOWN_LEFT = 20
"""Images left for the next run that are named one by one on stderr (the rest are only counted)."""


def run_local(
    keys: Sequence[str],
    dest: str,
    model: FastSAM,
    fmt: str = "parquet",
    rows_per_file: int = 1000,
    batch_size: int = 4,
    workers: int = 2,
    progress: bool = True,
    retry: RetryPolicy | None = None,
    **settings: Any,
) -> BatchSummary:
    """Segment the images named by ``keys`` and write their records to ``dest``.

    Records are written ``rows_per_file`` at a time, each file atomically, so a killed run loses at most the
    records not yet written, and a new run (after :func:`fastsam.batch.resume.pending`) redoes just those. Images
    whose bytes cannot be read (storage failures, after the retries of ``retry``) are not written either: the
    summary counts them as left for the next run.

    Args:
        keys: absolute local paths or URIs (see :func:`fastsam.batch.sources.list_sources`).
        dest: output folder, local path or URI.
        model: the model; ``settings`` (imgsz, conf, iou, max_det, retina) go to :meth:`FastSAM.predict`.
        fmt: ``"parquet"`` or ``"jsonl"``.
        rows_per_file: records per partition file.
        batch_size: images per forward pass.
        workers: image reading/decoding threads.
        progress: show a progress bar on stderr.
        retry: how reads and writes are retried (default: :class:`fastsam.batch.storage.RetryPolicy`).

    Raises:
        StorageError: ``dest`` cannot be written (after retries); the files written before stay.
    """
    from tqdm import tqdm

    summary = BatchSummary(engine="local", masks=0)
    tally = RunTally()
    reader = StorageReader(retry)
    start = time.perf_counter()
    bar = tqdm(total=len(keys), unit="img", disable=not progress or len(keys) < 2, file=sys.stderr)
    with PartitionWriter(dest, fmt, rows_per_file, retry=retry) as writer:
        stream = segment_records(keys, model, batch_size=batch_size, workers=workers, reader=reader, **settings)
        for record in stream:
            bar.update(1)
            if is_left_out(record):
                why = left_out_reason(record)
                tally.add(0, [(record["path"], why)])
                if tally.left <= SHOWN_LEFT:
                    bar.write(f"not read, left for the next run: {why}", file=sys.stderr)
                continue
            writer.add(record)
            summary.images += 1
            if record["error"] is not None:
                summary.failed += 1
                bar.write(f"failed {record['path']}: {record['error']}", file=sys.stderr)
            else:
                tally.add(len(record["annotations"]), [])
    bar.close()
    summary.masks, summary.left, summary.left_examples = tally.report()
    summary.files = list(writer.written)
    summary.seconds = time.perf_counter() - start
    return summary
