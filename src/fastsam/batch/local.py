"""The local engine: one process, the streaming pipeline, partitions written as records come out."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from ..engine import FastSAM
from .summary import BatchSummary
from .worker import segment_records
from .writer import PartitionWriter


def run_local(
    keys: Sequence[str],
    dest: str,
    model: FastSAM,
    fmt: str = "parquet",
    rows_per_file: int = 1000,
    batch_size: int = 4,
    workers: int = 2,
    progress: bool = True,
    **settings: Any,
) -> BatchSummary:
    """Segment the images named by ``keys`` and write their records to ``dest``.

    Records are written ``rows_per_file`` at a time, each file atomically, so a killed run loses at most the
    records not yet written, and a new run (after :func:`fastsam.batch.resume.pending`) redoes just those.

    Args:
        keys: absolute local paths or URIs (see :func:`fastsam.batch.sources.list_sources`).
        dest: output folder, local path or URI.
        model: the model; ``settings`` (imgsz, conf, iou, max_det, retina) go to :meth:`FastSAM.predict`.
        fmt: ``"parquet"`` or ``"jsonl"``.
        rows_per_file: records per partition file.
        batch_size: images per forward pass.
        workers: image reading/decoding threads.
        progress: show a progress bar on stderr.
    """
    from tqdm import tqdm

    summary = BatchSummary(engine="local", masks=0)
    start = time.perf_counter()
    bar = tqdm(total=len(keys), unit="img", disable=not progress or len(keys) < 2, file=sys.stderr)
    with PartitionWriter(dest, fmt, rows_per_file) as writer:
        for record in segment_records(keys, model, batch_size=batch_size, workers=workers, **settings):
            writer.add(record)
            summary.images += 1
            if record["error"] is not None:
                summary.failed += 1
                bar.write(f"failed {record['path']}: {record['error']}", file=sys.stderr)
            else:
                summary.masks = (summary.masks or 0) + len(record["annotations"])
            bar.update(1)
    bar.close()
    summary.files = list(writer.written)
    summary.seconds = time.perf_counter() - start
    return summary
