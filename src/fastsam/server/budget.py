"""The server-wide memory budget (``fastsam serve --memory-mb``): work starts only when its memory fits.

Each upload estimates its working memory before anything is decoded (:func:`estimate_upload_bytes`, from the image
header), each prompt or overlay request before it runs (:func:`~.limits.estimate_prompt_bytes`), and reserves that
much in a :class:`MemoryBudget`. What work may reserve is the budget less what the process holds at rest (the model
and libraries, measured when the server starts: :meth:`MemoryBudget.settle`), less what the image caches hold now,
less the reservations in flight. Work that does not fit first makes the caches give way (least recently used images
dropped, when that is enough), then waits up to ``wait_s`` for other work to finish, then is refused with
:class:`BudgetBusyError` (the server answers 503 with Retry-After); work larger than all the budget leaves for work
is refused at once with :class:`OverBudgetError` (413, naming the limit). So the process stays under the budget by
design instead of being killed for memory.

Estimates only bound the resident memory if freed memory goes back to the system. With glibc's defaults it does
not: blocks under a threshold that grows up to 32 MB come from per-thread arenas that keep their pages, and a server
whose uploads run on a pool of threads grew 500 MB past its budget that way (``bench/big_server.py``). So a budgeted
server has blocks of 1 MiB or more mapped on their own (unmapped when freed), at most two arenas, and the heap trimmed
when an upload's reservation ends (:func:`configure_allocator`, :func:`trim_allocator`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..allocator import MiB, configure_allocator, trim_allocator
from ..errors import FastSAMError
from .limits import describe_bytes

UPLOAD_BYTES_PER_PIXEL = 14
"""Working memory of one upload per pixel of the photo: Pillow's decoded pixels (4 bytes) and their RGB copy (3),
kept for prompts and overlays, plus the masks' runs, their RLE and the JSON answer. Measured (``bench/big_server.py``,
FastSAM-s random weights, 300 noise-like masks, the worst case): 10.3 MB per megapixel above a fixed 316 MB."""

NETWORK_BYTES_AT_1024 = 384 * MiB
"""The fixed part of one upload at ``imgsz`` 1024, above the loaded model: the network pass (measured on a CPU, fp32:
170 MB for FastSAM-s, 150 MB for FastSAM-x, about 100 MB of which stays after the first pass) and the answer's
fixed costs (``bench/big_server.py``: 316 MB in all); scaled by ``(imgsz / 1024)**2`` for other sizes."""

DEFAULT_FRACTION = 0.8
"""``fastsam serve``'s default budget: this share of the memory the machine (or its container) has."""


_TRIM_BYTES = 16 * MiB  # releases at least this large trim the heap


class OverBudgetError(FastSAMError):
    """The work needs more memory than the whole budget leaves for work: it can never run here (413)."""


class BudgetBusyError(FastSAMError):
    """The work would fit the budget, but not now: other work holds it (503, retry later)."""


def estimate_upload_bytes(width: int, height: int, imgsz: int = 1024, upload_bytes: int = 0) -> int:
    """Memory one upload may need from decoding to its JSON answer, in bytes (an upper-bound estimate).

    Args:
        width, height: the image's size in pixels (from its header).
        imgsz: the network input's longest side.
        upload_bytes: the size of the uploaded file (held while it is decoded).
    """
    network = NETWORK_BYTES_AT_1024 * max(int(imgsz), 32) ** 2 // 1024**2
    return UPLOAD_BYTES_PER_PIXEL * int(width) * int(height) + network + 2 * int(upload_bytes)


def resident_bytes() -> int:
    """This process's resident memory now (RSS), in bytes; 0 where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:  # macOS and others: the peak, which is at least the current size
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except (ImportError, OSError):
        return 0


def machine_memory_bytes() -> int | None:
    """The memory this process can have: the machine's physical memory, or its cgroup (container) limit when that
    is lower; None when neither can be read."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        pass
    for limit in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            text = limit.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < 1 << 60:  # "max" or a huge number: no limit
            sizes.append(int(text))
    return min(sizes) if sizes else None


def default_memory_bytes() -> int | None:
    """``fastsam serve``'s default budget: :data:`DEFAULT_FRACTION` of :func:`machine_memory_bytes` (None: unknown,
    no budget)."""
    total = machine_memory_bytes()
    return None if total is None else int(total * DEFAULT_FRACTION)


class MemoryBudget:
    """Reservations of estimated bytes against a total, for work running in several threads.

    Args:
        total_bytes: the budget; None: unlimited (every reservation succeeds at once).
        wait_s: how long a reservation that does not fit waits for room before :class:`BudgetBusyError`.
        held: bytes held outside reservations that count against the budget (the image caches), read at each check.
        make_room: ``make_room(nbytes) -> freed``: asked to free memory counted by ``held`` (evict cached images)
            when that lets a reservation fit.
        option: the option that sets the budget, named in messages.
    """

    def __init__(
        self,
        total_bytes: int | None,
        wait_s: float = 10.0,
        held: Callable[[], int] = lambda: 0,
        make_room: Callable[[int], int] | None = None,
        option: str = "--memory-mb",
    ) -> None:
        if total_bytes is not None and total_bytes < 1:
            raise ValueError(f"{option} must be positive, got {total_bytes} bytes")
        self.total_bytes = total_bytes
        self.wait_s = wait_s
        self.resting_bytes = 0
        self.reserved = 0
        self._held, self._make_room, self.option = held, make_room, option
        self._room = threading.Condition()

    @property
    def capacity(self) -> int | None:
        """What work may reserve when no image is cached: the budget less what the process holds at rest."""
        return None if self.total_bytes is None else self.total_bytes - self.resting_bytes

    def settle(self, resting_bytes: int | None = None) -> None:
        """Take what the process holds at rest (default: its resident memory now, with the model loaded); with a
        budget, also :func:`configure_allocator` so that memory freed after each request leaves the process.

        Raises:
            OverBudgetError: the process already holds the whole budget.
        """
        if self.total_bytes is not None and resting_bytes is None:
            configure_allocator()
            trim_allocator()
        self.resting_bytes = resident_bytes() if resting_bytes is None else int(resting_bytes)
        if self.total_bytes is not None and self.total_bytes <= self.resting_bytes:
            raise OverBudgetError(
                f"{self.option} {self.total_bytes // MiB} is not more than the {describe_bytes(self.resting_bytes)} "
                f"the server holds at rest (the model and libraries): give at least {self.resting_bytes // MiB + 1024}"
            )

    def acquire(self, need: int, what: str = "this request") -> None:
        """Reserve ``need`` bytes for ``what`` (a phrase for messages), waiting up to ``wait_s`` for room.

        Raises:
            OverBudgetError: ``need`` is more than :attr:`capacity` (it could never fit).
            BudgetBusyError: no room within ``wait_s``.
        """
        capacity = self.capacity
        if capacity is None:
            return
        if need > capacity:
            raise OverBudgetError(
                f"{what} would need about {describe_bytes(need)} of memory, more than the server's budget leaves for "
                f"work ({describe_bytes(max(capacity, 0))}: fastsam serve {self.option} {self.total_bytes // MiB}, "
                f"less {describe_bytes(self.resting_bytes)} for the model and libraries)"
            )
        deadline = time.monotonic() + self.wait_s
        with self._room:
            while True:
                short = self.reserved + self._held() + need - capacity
                if short > 0 and self._make_room is not None and capacity - self.reserved >= need:
                    short -= self._make_room(short)  # enough is cached to make room: the caches give way
                if short <= 0:
                    self.reserved += need
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BudgetBusyError(
                        f"server busy: {what} needs about {describe_bytes(need)} of memory and the budget "
                        f"({self.option} {self.total_bytes // MiB}) is held by other requests; retry shortly"
                    )
                self._room.wait(min(left, 0.25))  # also re-reads what the caches hold

    def release(self, need: int) -> None:
        """Give back a reservation made by :meth:`acquire`."""
        if self.capacity is None:
            return
        if need >= _TRIM_BYTES:
            trim_allocator()
        with self._room:
            self.reserved -= need
            self._room.notify_all()

    @contextmanager
    def reserve(self, need: int, what: str = "this request") -> Iterator[None]:
        """:meth:`acquire` for the duration of a ``with`` block."""
        self.acquire(need, what)
        try:
            yield
        finally:
            self.release(need)
