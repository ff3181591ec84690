"""Per-mask work spread over the CPU's cores: threads over contiguous slices of a stack.

The per-mask kernels (window resampling, run finding, RLE compression) spend their time in numpy, torch and
pycocotools calls that release the GIL, so threads run them side by side without copying the masks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def default_workers() -> int:
    """Parallel workers when the user chose none: one per core, at most 4 (the CLI's ``--workers`` default too)."""
    return max(1, min(4, os.cpu_count() or 1))


MAX_THREADS = default_workers()
MIN_PER_THREAD = 16  # fewer items than this per thread: threads cost more than they save
SLICES_PER_THREAD = 4  # work is cut into up to this many slices per thread, for balance


def map_slices(n: int, work: Callable[[slice], list[T]], threads: int | None = None, name: str = "fastsam") -> list[T]:
    """``work(part)`` over contiguous slices covering ``range(n)``, concatenated in order.

    Args:
        n: number of items.
        work: maps a slice of the items to a list of results, one per item.
        threads: at most this many threads (default :data:`MAX_THREADS`); a thread gets at least
            :data:`MIN_PER_THREAD` items, so small stacks run in the calling thread. The items are cut into up to
            :data:`SLICES_PER_THREAD` slices per thread (of at least half that many items), which the threads take
            as they come free.
    """
    if n == 0:
        return []
    count = min(MAX_THREADS if threads is None else threads, n // MIN_PER_THREAD)
    if count <= 1:
        return work(slice(0, n))
    # a few slices per thread, taken as threads come free: masks differ in cost by orders of magnitude
    slices = min(SLICES_PER_THREAD * count, n // (MIN_PER_THREAD // 2))
    edges = np.linspace(0, n, slices + 1).astype(int)
    parts = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix=name) as pool:
        return [item for chunk in pool.map(work, parts) for item in chunk]
