"""glibc's allocator: giving freed memory back to the system (no-ops where the C library is not glibc).

glibc keeps memory freed by a process for its next allocations: small blocks in per-thread arenas, and the top of
its heaps until it passes a threshold. That makes repeated allocations cheap, but the resident size then follows
the largest step so far. Where memory is bounded by design (a server's budget, the mask phase of a big photo after
the network's activations are freed) these functions hand it back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

MiB = 1024 * 1024
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3  # glibc mallopt parameters (malloc.h)


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def configure_allocator(mmap_threshold: int = MiB, arenas: int = 2) -> bool:
    """Make freed memory go back to the system (glibc only; elsewhere nothing is changed): blocks of at least
    ``mmap_threshold`` bytes are mapped on their own, and at most ``arenas`` malloc arenas are made. Returns whether
    it was applied."""
    libc = _glibc()
    if libc is None:
        return False
    threshold = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    return bool(threshold and libc.mallopt(_M_ARENA_MAX, int(arenas)) == 1)


def trim_allocator() -> None:
    """Give the free memory at the top of glibc's heaps (and free pages inside them) back to the system."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
