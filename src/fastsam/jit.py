"""Numba-compiled kernels, loaded on first use, with the plain numpy/torch form as the fallback.

A :class:`Kernel` wraps a plain Python function written in Numba's subset. Calling it gives the compiled function
(``nogil``: threads run it side by side; cached on disk, so compiled once per machine), or ``None`` where Numba is
missing or cannot be loaded (e.g. built for another NumPy): the caller then runs its numpy/torch form, which gives
the same answer. Numba is imported on first use, not at import time (half a second and ~120 MB of libraries).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable
from typing import Any

LOGGER = logging.getLogger("fastsam")


class Kernel:
    """``fn`` compiled by Numba on first call of this object; ``None`` (and one warning naming ``fallback``) where
    Numba cannot be loaded.

    Attributes:
        available: False once Numba is known to be missing or unusable (set it to False to force the fallback).
    """

    def __init__(self, fn: Callable[..., Any], fallback: str) -> None:
        self.fn, self.fallback = fn, fallback
        self.available = importlib.util.find_spec("numba") is not None
        self._compiled: Callable[..., Any] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Callable[..., Any] | None:
        compiled = self._compiled
        if compiled is not None and self.available:  # the hot path (once per mask): no lock once compiled
            return compiled
        with self._lock:
            if self._compiled is None and self.available:
                try:
                    import numba

                    # no fastmath: float rounding must stay the reference's
                    self._compiled = numba.njit(nogil=True, cache=True)(self.fn)
                except Exception as err:  # noqa: BLE001 - an unusable Numba (e.g. built for another NumPy): fall back
                    self.available = False
                    LOGGER.warning("note: Numba could not be loaded (%s); %s", err, self.fallback)
        return self._compiled if self.available else None
