"""Writing frames behind the network: shared by ``fastsam segment`` on videos and ``fastsam track``."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def write_behind(items: Iterable[T], emit: Callable[[T], None], backlog: int, bar: Any, name: str) -> bool:
    """Hand each item to ``emit`` in one background thread, in order, while the caller's iterator (the network)
    makes the next; at most ``backlog`` items wait. Ctrl-C stops the iteration, and what was handed over is still
    written (the normal way to stop a webcam or a stream).

    Args:
        bar: a progress bar (``update(1)`` per item).
        name: the writer thread's name prefix.

    Returns:
        Whether the user stopped it.
    """
    interrupted = False
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        try:
            for item in items:
                pending.append(pool.submit(emit, item))
                while len(pending) > backlog:
                    pending.popleft().result()
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
        for job in pending:
            job.result()
    return interrupted
