"""SAM options that have no FastSAM meaning: said once per process, then ignored."""

from __future__ import annotations

import warnings

_warned: set[str] = set()


class FastSAMCompatibilityWarning(UserWarning):
    """A segment-anything option or call that FastSAM cannot honour; the message says what happens instead."""


def warn_once(key: str, message: str) -> None:
    """Warn ``message`` the first time ``key`` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, FastSAMCompatibilityWarning, stacklevel=3)
