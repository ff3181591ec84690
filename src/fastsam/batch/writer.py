"""Partition files written whole: records are buffered and written ``rows_per_file`` at a time, atomically.

Each file is first written as ``_<name>.tmp`` and then renamed, so a run killed at any moment leaves only complete
partitions (and perhaps an ignored ``_*.tmp``). Names are ``part-<run id>-<n>.<parquet|jsonl>``; the run id starts
with the UTC time, so names sort in the order they were written.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from .filesystems import local_path, remote_filesystem, scheme_of
from .records import to_table
from .resume import SUFFIXES


def new_run_id() -> str:
    """A unique, time-ordered id for the files of one run: ``YYYYmmddTHHMMSS-<8 hex>`` (UTC)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


class PartitionWriter:
    """Write records (dicts of :mod:`fastsam.batch.records`) as Parquet or JSON-lines partitions of ``dest``.

    Args:
        dest: output folder, local path or URI (created if needed).
        fmt: ``"parquet"`` (needs pyarrow) or ``"jsonl"`` (one JSON record per line).
        rows_per_file: records per partition file; the last file of a run may hold fewer.
    """

    def __init__(self, dest: str, fmt: str = "parquet", rows_per_file: int = 1000) -> None:
        if fmt not in SUFFIXES:
            raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(SUFFIXES)}")
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be at least 1, got {rows_per_file}")
        self.fmt, self.rows_per_file = fmt, rows_per_file
        self.run_id = new_run_id()
        self.written: list[str] = []
        self._buffer: list[dict[str, Any]] = []
        if scheme_of(dest) is None:
            self._fs, self._root = None, local_path(dest)
            os.makedirs(self._root, exist_ok=True)
        else:
            self._fs, path = remote_filesystem(dest)
            self._root = path.rstrip("/")
            self._fs.create_dir(self._root, recursive=True)

    def add(self, record: dict[str, Any]) -> None:
        """Buffer one record; a full buffer is written out as one partition file."""
        self._buffer.append(record)
        if len(self._buffer) >= self.rows_per_file:
            self.flush()

    def flush(self) -> str | None:
        """Write the buffered records (if any) as one partition file; returns its name."""
        if not self._buffer:
            return None
        name = f"part-{self.run_id}-{len(self.written):05d}{SUFFIXES[self.fmt]}"
        data = self._encode(self._buffer)
        tmp = f"_{name}.tmp"
        if self._fs is None:
            with open(os.path.join(self._root, tmp), "wb") as handle:
                handle.write(data)
            os.replace(os.path.join(self._root, tmp), os.path.join(self._root, name))
        else:
            with self._fs.open_output_stream(f"{self._root}/{tmp}") as stream:
                stream.write(data)
            self._fs.move(f"{self._root}/{tmp}", f"{self._root}/{name}")
        self._buffer = []
        self.written.append(name)
        return name

    def close(self) -> None:
        """Write what is left in the buffer."""
        self.flush()

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _encode(self, records: list[dict[str, Any]]) -> bytes:
        if self.fmt == "jsonl":
            return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode("utf-8")
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(to_table(records), sink)
        return sink.getvalue().to_pybytes()
