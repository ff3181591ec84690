"""Exceptions raised by fastsam. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class FastSAMError(Exception):
    """Base class of every error fastsam raises on purpose (user errors, not bugs)."""


class CheckpointError(FastSAMError):
    """A weights file cannot be read, is not a FastSAM/YOLOv8-seg checkpoint, or is unsafe to load."""


class WeightsNotFoundError(FastSAMError):
    """Named weights are not in the cache and could not be downloaded."""


class ImageLoadError(FastSAMError):
    """An input is missing, is not an image, or is corrupt."""


class VideoError(FastSAMError):
    """A video file, stream or camera cannot be opened or decoded, or an output video cannot be written."""
