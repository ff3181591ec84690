"""A thread-safe LRU cache bounded by bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteLRU(Generic[V]):
    """Keeps the most recently used values while their total size stays under ``max_bytes``.

    A value larger than ``max_bytes`` on its own is not kept. ``evictions`` counts the entries dropped to make room.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        self._lock = threading.Lock()

    def put(self, key: str, value: V, nbytes: int) -> bool:
        """Store ``value``; evicts least-recently-used entries as needed. Returns whether it was kept."""
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if nbytes > self.max_bytes:
                return False
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
                self.evictions += 1
            return True

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def shrink(self, nbytes: int) -> int:
        """Evict least-recently-used entries until ``nbytes`` are freed (or none is left); returns the bytes freed.

        Called when memory is needed for work (see :class:`~fastsam.server.budget.MemoryBudget`): the cache gives
        way to requests.
        """
        freed = 0
        with self._lock:
            while freed < nbytes and self._items:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
                freed += size
                self.evictions += 1
        return freed

    def pop(self, key: str) -> bool:
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self._bytes -= item[1]
            return item is not None

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
