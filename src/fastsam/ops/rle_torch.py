"""COCO run-length encoding of mask tensors where they live (e.g. on a GPU).

Moving full-resolution masks to the host costs more than making them on a GPU: 100 masks of a 3.4-megapixel
photo are 340 MB of bool. :func:`mask_tensor_to_rle` finds the run boundaries on the tensor's device and moves
only those (a few thousand integers per mask); the run lengths are compressed on the host (:func:`fastsam.ops.rle.compress_runs`). The
output is byte-identical to :func:`fastsam.ops.rle.mask_to_rle` of the same masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .rle import compress_runs

_CHUNK_PIXELS = 1 << 28  # masks x pixels per step: bounds the two temporary (n, H * W) bool buffers to 256 MB each


def mask_tensor_to_rle(masks: torch.Tensor, chunk_pixels: int = _CHUNK_PIXELS) -> list[dict[str, Any]]:
    """Encode a mask tensor as compressed COCO RLE, computing the runs on the tensor's device.

    Args:
        masks: ``(N, H, W)`` tensor on any device; nonzero means inside.
        chunk_pixels: masks are processed in groups of at most this many pixels (at least one mask per group),
            which bounds the device memory used to about ``2 * chunk_pixels`` bytes.

    Returns:
        ``N`` dicts ``{"size": [H, W], "counts": str}`` (compressed COCO strings), equal to
        :func:`fastsam.ops.rle.mask_to_rle` of the same masks. ``[]`` when ``N == 0``.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W); got shape {tuple(masks.shape)}")
    n, height, width = (int(v) for v in masks.shape)
    if n == 0:
        return []
    per_chunk = max(1, chunk_pixels // max(1, height * width))
    counts: list[list[int]] = []
    for start in range(0, n, per_chunk):
        counts.extend(_run_lengths(masks[start : start + per_chunk], height, width))
    return compress_runs(counts, (height, width))


def _run_lengths(masks: torch.Tensor, height: int, width: int) -> list[list[int]]:
    """Uncompressed COCO counts (column-major runs, zeros first) of each mask of an ``(n, H, W)`` tensor."""
    n, pixels = masks.shape[0], height * width
    flat = masks.bool().transpose(1, 2).reshape(n, pixels)  # column-major order, as COCO counts run
    change = torch.nonzero(flat[:, 1:] != flat[:, :-1])  # (K, 2): mask, position before each change
    starts_inside = flat[:, 0].cpu().numpy()
    change = change.cpu().numpy()
    del flat
    per_mask = np.bincount(change[:, 0], minlength=n)
    boundaries = np.split(change[:, 1] + 1, np.cumsum(per_mask)[:-1])
    out = []
    for first, cuts in zip(starts_inside, boundaries):
        edges = np.concatenate(([0, 0] if first else [0], cuts, [pixels]))  # a leading empty run of 0s if needed
        out.append(np.diff(edges).tolist())
    return out
