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
from .storage import RetryPolicy, StorageError, call_with_retries, is_storage_error, unreachable


def new_run_id() -> str:
    """A unique, time-ordered id for the files of one run: ``YYYYmmddTHHMMSS-<8 hex>`` (UTC)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


class PartitionWriter:
    """Write records (dicts of :mod:`fastsam.batch.records`) as Parquet or JSON-lines partitions of ``dest``.

    Args:
        dest: output folder, local path or URI (created if needed).
        fmt: ``"parquet"`` (needs pyarrow) or ``"jsonl"`` (one JSON record per line).
        rows_per_file: records per partition file; the last file of a run may hold fewer.
        retry: how a failed write is retried (default: :class:`fastsam.batch.storage.RetryPolicy`).

    Raises:
        StorageError: ``dest`` cannot be created or written (after retries), as one line naming the store.
    """

    def __init__(
        self, dest: str, fmt: str = "parquet", rows_per_file: int = 1000, retry: RetryPolicy | None = None
    ) -> None:
        if fmt not in SUFFIXES:
            raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(SUFFIXES)}")
        if rows_per_file < 1:
            raise ValueError(f"rows_per_file must be at least 1, got {rows_per_file}")
        self.fmt, self.rows_per_file = fmt, rows_per_file
        self.dest, self.retry = dest, retry or RetryPolicy()
        self.run_id = new_run_id()
        self.written: list[str] = []
        self._buffer: list[dict[str, Any]] = []
        self._fs: Any = None
        try:
            if scheme_of(dest) is None:
                self._root = local_path(dest)
                call_with_retries(lambda: os.makedirs(self._root, exist_ok=True), self.retry)
            else:
                self._fs, path = remote_filesystem(dest)
                self._root = path.rstrip("/")
                call_with_retries(lambda: self._fs.create_dir(self._root, recursive=True), self.retry)
        except Exception as err:
            if is_storage_error(err):
                raise unreachable(dest, err, "write to") from None
            raise

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
        try:
            call_with_retries(lambda: write_atomically(self._fs, self._root, name, data), self.retry)
        except Exception as err:
            if is_storage_error(err):
                done = f"; the {len(self.written)} file(s) written before are kept, run again to finish"
                raise StorageError(f"{unreachable(self.dest, err, 'write to')}{done}") from None
            raise
        self._buffer = []
        self.written.append(name)
        return name

    def close(self) -> None:
        """Write what is left in the buffer."""
        self.flush()

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None or not issubclass(kind, StorageError):  # a failed store is not tried once more
            self.close()

    def _encode(self, records: list[dict[str, Any]]) -> bytes:
        if self.fmt == "jsonl":
            return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode("utf-8")
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(to_table(records), sink)
        return sink.getvalue().to_pybytes()


def write_atomically(fs: Any, root: str, name: str, data: bytes) -> None:
    """Write ``data`` as ``root/name`` through a ``_<name>.tmp`` file and a rename (``fs`` None: local folder), so
    that readers never see a partial file; an existing ``name`` is replaced."""
    tmp = f"_{name}.tmp"
    if fs is None:
        with open(os.path.join(root, tmp), "wb") as handle:
            handle.write(data)
        os.replace(os.path.join(root, tmp), os.path.join(root, name))
    else:
        with fs.open_output_stream(f"{root}/{tmp}") as stream:
            stream.write(data)
        fs.move(f"{root}/{tmp}", f"{root}/{name}")
