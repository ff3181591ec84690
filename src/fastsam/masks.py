"""Mask stacks that have not been laid out as an ``(N, H, W)`` numpy array yet.

Full-resolution masks are large (300 masks of a 1200x1800 photo are 650 MB of bool) while each is False outside
its box. Post-processing therefore hands a :class:`~fastsam.results.SegmentationResult` one of these, and the
result answers RLE, areas, ``len`` and subsets from it; the ``(N, H, W)`` array is made only when ``masks`` is
read:

* :class:`WindowedMasks` (CPU): each mask's box window, the rest of the image being False by construction;
* :class:`DeviceMasks`: an ``(N, H, W)`` tensor left where it was made (a GPU), encoded there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .ops.rle import windows_to_rle
from .ops.rle_torch import mask_tensor_to_rle


def _positions(n: int, indices: Any) -> np.ndarray:
    """The mask positions a numpy first-axis index (int, int sequence, bool array or slice) picks, as int64."""
    return np.arange(n)[indices].reshape(-1).astype(np.int64)


class WindowedMasks:
    """``N`` masks of an ``H x W`` image, each stored as the window of pixels that can be True.

    Args:
        windows: ``N`` bool arrays; mask ``k`` is ``windows[k]`` at rows ``y1:y2``, columns ``x1:x2`` and False
            elsewhere.
        bounds: ``(N, 4)`` int ``x1, y1, x2, y2`` of each window, half-open pixel ranges inside the image.
        image_size: ``(H, W)`` in pixels.
    """

    def __init__(self, windows: Sequence[np.ndarray], bounds: np.ndarray, image_size: tuple[int, int]) -> None:
        self.windows = list(windows)
        self.bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if len(self.windows) != len(self.bounds):
            raise ValueError(f"{len(self.windows)} windows but {len(self.bounds)} bounds")
        for window, (x1, y1, x2, y2) in zip(self.windows, self.bounds.tolist()):
            if window.shape != (max(0, y2 - y1), max(0, x2 - x1)):
                raise ValueError(f"a window of shape {window.shape} does not fit its bounds {[x1, y1, x2, y2]}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.windows), *self.image_size)

    def __len__(self) -> int:
        return len(self.windows)

    def numpy(self) -> np.ndarray:
        """The ``(N, H, W)`` bool array."""
        # torch.zeros writes the zeros now; a lazily zeroed numpy calloc faults its pages in while the windows
        # are copied, which measured 3x slower
        out = torch.zeros(self.shape, dtype=torch.bool).numpy()
        for k, (window, (x1, y1, x2, y2)) in enumerate(zip(self.windows, self.bounds.tolist())):
            if window.size:
                out[k, y1:y2, x1:x2] = window
        return out

    def select(self, indices: Any) -> WindowedMasks:
        keep = _positions(len(self), indices)
        return WindowedMasks([self.windows[i] for i in keep], self.bounds[keep], self.image_size)

    def any(self) -> np.ndarray:
        """``(N,)`` bool: which masks have a True pixel."""
        return np.fromiter((w.any() for w in self.windows), dtype=bool, count=len(self))

    def areas(self) -> np.ndarray:
        """``(N,)`` int64 pixel counts."""
        return np.fromiter((np.count_nonzero(w) for w in self.windows), dtype=np.int64, count=len(self))

    def to_rle(self) -> list[dict[str, Any]]:
        """Compressed COCO RLE of each mask (see :func:`fastsam.ops.rle.windows_to_rle`)."""
        return windows_to_rle(self.windows, self.bounds, self.image_size)


class DeviceMasks:
    """An ``(N, H, W)`` mask tensor kept on its device (a GPU) until the array is asked for."""

    def __init__(self, tensor: torch.Tensor) -> None:
        if tensor.ndim != 3:
            raise ValueError(f"masks must have shape (N, H, W); got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.tensor.shape)  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def numpy(self) -> np.ndarray:
        return self.tensor.bool().cpu().numpy()

    def select(self, indices: Any) -> DeviceMasks:
        keep = torch.from_numpy(_positions(len(self), indices)).to(self.tensor.device)
        return DeviceMasks(self.tensor.index_select(0, keep))

    def any(self) -> np.ndarray:
        return self.tensor.flatten(1).any(1).cpu().numpy()

    def areas(self) -> np.ndarray:
        return self.tensor.flatten(1).sum(1).cpu().numpy().astype(np.int64)

    def to_rle(self) -> list[dict[str, Any]]:
        return mask_tensor_to_rle(self.tensor)


LazyMasks = (WindowedMasks, DeviceMasks)
