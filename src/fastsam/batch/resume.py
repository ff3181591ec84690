"""What an output folder already holds: the keys of its partition files, for resuming and for summaries.

A partition file is ``*.parquet`` or ``*.jsonl`` directly in the output folder; both formats are read, whichever
one the run writes, so switching ``--format`` between runs does not segment an image twice. A file that cannot be
read — one a killed run left half-written — is renamed ``_<name>.incomplete`` (readers such as pyarrow datasets and
Ray skip names starting with ``_``), and its images count as not done, so the next run segments them again and
every image ends up exactly once in the readable files. A storage failure (the folder cannot be listed or read) is
not a broken file: it stops the scan with a one-line :class:`fastsam.batch.storage.StorageError`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .filesystems import local_path, remote_filesystem, scheme_of
from .storage import RetryPolicy, StorageError, call_with_retries, is_storage_error, reason, unreachable

T = TypeVar("T")

SUFFIXES: dict[str, str] = {"parquet": ".parquet", "jsonl": ".jsonl"}
"""File suffix of each output format."""


@dataclass
class Holdings:
    """The readable partition files of an output folder and the images they hold.

    Attributes:
        files: partition file names (not paths), sorted.
        keys: the ``path`` of every row, in file order (an image appears once unless two runs overlapped).
        errors: how many of those rows have an ``error``.
        quarantined: unreadable files renamed ``_<name>.incomplete`` by this scan.
        error_keys: the ``path`` of the rows with an ``error`` (bad images).
        error_files: the files holding those rows.
        formats: partition files per format (``{"parquet": 3, "jsonl": 1}``).
    """

    files: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    errors: int = 0
    quarantined: list[str] = field(default_factory=list)
    error_keys: list[str] = field(default_factory=list)
    error_files: list[str] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)


def scan_output(
    dest: str,
    fmt: str | None = None,
    only: Iterable[str] | None = None,
    quarantine: bool = True,
    retry: RetryPolicy | None = None,
) -> Holdings:
    """Read the ``path`` and ``error`` columns of the partition files in ``dest`` (missing folder: empty).

    Args:
        dest: output folder, local path or URI.
        fmt: ``"parquet"`` or ``"jsonl"`` to read only that format; None: every format (a folder written first as
            Parquet and then as JSON lines holds both, and each image must be found whichever it is in).
        only: restrict the scan to these file names (e.g. the files a run added).
        quarantine: rename unreadable files ``_<name>.incomplete`` (else they are only skipped).
        retry: how failed reads are retried (default: :class:`fastsam.batch.storage.RetryPolicy`).

    Raises:
        StorageError: the folder cannot be listed or a file cannot be read for a storage reason (after retries).
    """
    if fmt is not None and fmt not in SUFFIXES:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(SUFFIXES)}")
    policy = retry or RetryPolicy()
    store = _Store(dest, policy)
    formats = [fmt] if fmt is not None else list(SUFFIXES)
    names = [n for n in store.names() if _format_of(n) in formats]
    if only is not None:
        wanted = set(only)
        names = [n for n in names if n in wanted]
    held = Holdings()
    for name in sorted(names):
        kind = _format_of(name)
        try:
            rows = store.call(lambda: _read_parquet(store, name) if kind == "parquet" else _read_jsonl(store, name))
        except StorageError:
            if store.reachable(name):  # the store answers, the file does not read: its content is broken
                rows = None
                err: Exception = ValueError("unreadable content")
            else:
                raise
        except Exception as error:  # noqa: BLE001 - any unreadable content is treated the same way
            rows, err = None, error
        if rows is None:
            if quarantine:
                store.call(lambda: store.rename(name, f"_{name}.incomplete"))
                held.quarantined.append(name)
                print(f"warning: {name} in {dest} is unreadable ({reason(err)}); renamed _{name}.incomplete, its "
                      "images will be segmented again", file=sys.stderr)  # fmt: skip
            continue
        held.files.append(name)
        held.formats[kind] = held.formats.get(kind, 0) + 1
        has_errors = False
        for key, error in rows:
            held.keys.append(key)
            if error is not None:
                held.errors += 1
                held.error_keys.append(key)
                has_errors = True
        if has_errors:
            held.error_files.append(name)
    return held


def list_partitions(dest: str, fmt: str) -> set[str]:
    """Names of the ``fmt`` partition files in ``dest`` (a cheap listing, nothing is read)."""
    return {n for n in _Store(dest).names() if _format_of(n) == fmt}


def forget_errors(dest: str, held: Holdings, retry: RetryPolicy | None = None) -> int:
    """Remove the rows with an ``error`` from the files of ``dest`` that hold them, so those images are to do again.

    Each file is rewritten without those rows (through a temporary file and a rename; a file left empty is
    deleted), before anything is segmented again, so at no moment does an image have two rows.

    Returns:
        The number of rows removed.

    Raises:
        StorageError: a file could not be read or written (after retries).
    """
    from .writer import write_atomically

    store = _Store(dest, retry or RetryPolicy())
    removed = 0
    for name in held.error_files:
        if _format_of(name) == "parquet":
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            table = store.call(lambda: _read_table(store, name, None))
            kept = table.filter(pc.is_null(table.column("error")))
            dropped = len(table) - len(kept)
            if len(kept):
                import pyarrow as pa

                sink = pa.BufferOutputStream()
                pq.write_table(kept, sink)
                data = sink.getvalue().to_pybytes()
        else:
            lines = [line for line in store.call(lambda: store.read_text(name)).splitlines() if line.strip()]
            kept_lines = [line for line in lines if json.loads(line).get("error") is None]
            dropped = len(lines) - len(kept_lines)
            data = "".join(line + "\n" for line in kept_lines).encode("utf-8")
            kept = kept_lines
        if not dropped:
            continue
        if len(kept):
            store.call(lambda: write_atomically(store.fs, store.root, name, data))
        else:
            store.call(lambda: store.delete(name))
        removed += dropped
    return removed


def _format_of(name: str) -> str | None:
    """The format of a partition file name (None: not a partition file; names starting ``_``/``.`` never are)."""
    if name.startswith(("_", ".")):
        return None
    return next((fmt for fmt, suffix in SUFFIXES.items() if name.endswith(suffix)), None)


def _read_parquet(store: _Store, name: str) -> list[tuple[str, str | None]]:
    table = _read_table(store, name, ["path", "error"])
    return list(zip(table.column("path").to_pylist(), table.column("error").to_pylist()))


def _read_table(store: _Store, name: str, columns: list[str] | None) -> Any:
    import pyarrow.parquet as pq

    if store.fs is None:
        return pq.read_table(os.path.join(store.root, name), columns=columns)
    return pq.read_table(f"{store.root}/{name}", columns=columns, filesystem=store.fs)


def _read_jsonl(store: _Store, name: str) -> list[tuple[str, str | None]]:
    rows = []
    for line in store.read_text(name).splitlines():
        if line.strip():
            record = json.loads(line)
            rows.append((record["path"], record.get("error")))
    return rows


class _Store:
    """The files directly inside an output folder, local or remote; storage failures become one-line errors."""

    def __init__(self, dest: str, retry: RetryPolicy | None = None) -> None:
        self.dest, self.retry = dest, retry or RetryPolicy()
        if scheme_of(dest) is None:
            self.fs, self.root = None, local_path(dest)
        else:
            self.fs, path = self.call(lambda: remote_filesystem(dest))
            self.root = path.rstrip("/")

    def call(self, operation: Callable[[], T]) -> T:
        """Run a storage operation with retries; a lasting storage failure raises :class:`StorageError`."""
        try:
            return call_with_retries(operation, self.retry)
        except Exception as err:
            if is_storage_error(err):
                raise unreachable(self.dest, err) from None
            raise

    def names(self) -> list[str]:
        if self.fs is None:
            if not os.path.isdir(self.root):
                return []
            return self.call(lambda: [e.name for e in os.scandir(self.root) if e.is_file()])
        from pyarrow import fs as pafs

        selector = pafs.FileSelector(self.root, recursive=False, allow_not_found=True)
        entries = self.call(lambda: self.fs.get_file_info(selector))
        return [e.base_name for e in entries if e.type == pafs.FileType.File]

    def reachable(self, name: str) -> bool:
        """Whether the store answers about ``name`` (one try)."""
        try:
            if self.fs is None:
                return os.path.exists(os.path.join(self.root, name))
            self.fs.get_file_info(f"{self.root}/{name}")
            return True
        except Exception:  # noqa: BLE001 - any failure means: not reachable
            return False

    def read_text(self, name: str) -> str:
        if self.fs is None:
            with open(os.path.join(self.root, name), encoding="utf-8") as handle:
                return handle.read()
        with self.fs.open_input_stream(f"{self.root}/{name}") as stream:
            return stream.read().decode("utf-8")

    def rename(self, name: str, new_name: str) -> None:
        if self.fs is None:
            os.replace(os.path.join(self.root, name), os.path.join(self.root, new_name))
        else:
            self.fs.move(f"{self.root}/{name}", f"{self.root}/{new_name}")

    def delete(self, name: str) -> None:
        if self.fs is None:
            os.remove(os.path.join(self.root, name))
        else:
            self.fs.delete_file(f"{self.root}/{name}")


def pending(
    keys: Iterable[str], dest: str, *, retry_errors: bool = False, retry: RetryPolicy | None = None
) -> tuple[list[str], Holdings]:
    """The keys that ``dest`` does not hold yet (order kept), and what it holds (unreadable files quarantined).

    Partition files of every format count (see :func:`scan_output`). An image recorded with an ``error`` (bad
    image) counts as done, unless ``retry_errors``: then its row is removed (:func:`forget_errors`) and it is to do.
    """
    held = scan_output(dest, retry=retry)
    if retry_errors and held.error_files:
        forget_errors(dest, held, retry)
        bad = set(held.error_keys)
        held.keys = [k for k in held.keys if k not in bad]
        held.errors, held.error_keys, held.error_files = 0, [], []
    done = set(held.keys)
    return [k for k in keys if k not in done], held
