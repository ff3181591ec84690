"""Per-mask work spread over threads (fastsam.ops.parallel.map_slices): every item once, in order."""

from __future__ import annotations

import threading

import pytest

from fastsam.ops import parallel


@pytest.mark.parametrize("n", [0, 1, 15, 16, 33, 100, 1000])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_every_item_once_in_order(n: int, threads: int) -> None:
    seen: list[slice] = []
    names: set[str] = set()

    def work(part: slice) -> list[int]:
        seen.append(part)
        names.add(threading.current_thread().name)
        return [i * i for i in range(part.start, part.stop)]

    assert parallel.map_slices(n, work, threads=threads, name="test-slices") == [i * i for i in range(n)]
    covered = sorted(i for part in seen for i in range(part.start, part.stop))
    assert covered == list(range(n))  # no item twice, none lost
    if threads > 1 and n >= 2 * parallel.MIN_PER_THREAD:
        # several slices per thread (for balance), each of at least half MIN_PER_THREAD items, on worker threads
        assert len(seen) > min(threads, n // parallel.MIN_PER_THREAD) and min(p.stop - p.start for p in seen) >= parallel.MIN_PER_THREAD // 2
        assert all(name.startswith("test-slices") for name in names)
    elif n:
        assert seen == [slice(0, n)] and names == {threading.current_thread().name}
