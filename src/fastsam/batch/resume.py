"""What an output folder already holds: the keys of its partition files, for resuming and for summaries.

A partition file is ``*.parquet`` or ``*.jsonl`` directly in the output folder (``--format`` picks which). A file
that cannot be read — one a killed run left half-written — is renamed ``_<name>.incomplete`` (readers such as
pyarrow datasets and Ray skip names starting with ``_``), and its images count as not done, so the next run
segments them again and every image ends up exactly once in the readable files.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from .filesystems import local_path, remote_filesystem, scheme_of

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
    """

    files: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    errors: int = 0
    quarantined: list[str] = field(default_factory=list)


def scan_output(dest: str, fmt: str, only: Iterable[str] | None = None, quarantine: bool = True) -> Holdings:
    """Read the ``path`` and ``error`` columns of the ``fmt`` partition files in ``dest`` (missing folder: empty).

    Args:
        dest: output folder, local path or URI.
        fmt: ``"parquet"`` or ``"jsonl"``.
        only: restrict the scan to these file names (e.g. the files a run added).
        quarantine: rename unreadable files ``_<name>.incomplete`` (else they are only skipped).
    """
    if fmt not in SUFFIXES:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(SUFFIXES)}")
    store = _Store(dest)
    names = [n for n in store.names() if n.endswith(SUFFIXES[fmt]) and not n.startswith(("_", "."))]
    if only is not None:
        wanted = set(only)
        names = [n for n in names if n in wanted]
    held = Holdings()
    for name in sorted(names):
        try:
            rows = _read_parquet(store, name) if fmt == "parquet" else _read_jsonl(store, name)
        except Exception as err:  # noqa: BLE001 - any unreadable file is treated the same way
            if quarantine:
                store.rename(name, f"_{name}.incomplete")
                held.quarantined.append(name)
                print(f"warning: {name} in {dest} is unreadable ({err}); renamed _{name}.incomplete, its images "
                      "will be segmented again", file=sys.stderr)  # fmt: skip
            continue
        held.files.append(name)
        for key, error in rows:
            held.keys.append(key)
            held.errors += error is not None
    return held


def list_partitions(dest: str, fmt: str) -> set[str]:
    """Names of the ``fmt`` partition files in ``dest`` (a cheap listing, nothing is read)."""
    return {n for n in _Store(dest).names() if n.endswith(SUFFIXES[fmt]) and not n.startswith(("_", "."))}


def _read_parquet(store: _Store, name: str) -> list[tuple[str, str | None]]:
    import pyarrow.parquet as pq

    if store.fs is None:
        table = pq.read_table(os.path.join(store.root, name), columns=["path", "error"])
    else:
        table = pq.read_table(f"{store.root}/{name}", columns=["path", "error"], filesystem=store.fs)
    return list(zip(table.column("path").to_pylist(), table.column("error").to_pylist()))


def _read_jsonl(store: _Store, name: str) -> list[tuple[str, str | None]]:
    rows = []
    for line in store.read_text(name).splitlines():
        if line.strip():
            record = json.loads(line)
            rows.append((record["path"], record.get("error")))
    return rows


class _Store:
    """The files directly inside an output folder, local or remote."""

    def __init__(self, dest: str) -> None:
        if scheme_of(dest) is None:
            self.fs, self.root = None, local_path(dest)
        else:
            self.fs, path = remote_filesystem(dest)
            self.root = path.rstrip("/")

    def names(self) -> list[str]:
        if self.fs is None:
            if not os.path.isdir(self.root):
                return []
            return [e.name for e in os.scandir(self.root) if e.is_file()]
        from pyarrow import fs as pafs

        entries = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False, allow_not_found=True))
        return [e.base_name for e in entries if e.type == pafs.FileType.File]

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


def pending(keys: Iterable[str], dest: str, fmt: str) -> tuple[list[str], Holdings]:
    """The keys that ``dest`` does not hold yet (order kept), and what it holds (unreadable files quarantined)."""
    held = scan_output(dest, fmt)
    done = set(held.keys)
    return [k for k in keys if k not in done], held
