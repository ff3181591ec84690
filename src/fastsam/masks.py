"""Mask stacks that have not been laid out as an ``(N, H, W)`` numpy array yet.

Full-resolution masks are large (300 masks of a 1200x1800 photo are 650 MB of bool) while each is False outside
its box. Post-processing therefore hands a :class:`~fastsam.results.SegmentationResult` one of these, and the
result answers RLE, areas, ``len`` and subsets from it; the ``(N, H, W)`` array is made only when ``masks`` is
read:

* :class:`RunMasks` (CPU, what :meth:`fastsam.FastSAM.predict` makes there): each mask as the boundaries of its
  column-major runs (COCO RLE's order), made without laying out any mask or window: memory follows the masks'
  boundaries, not their areas (300 masks of a 36 MP photo: tens of MB instead of gigabytes); RLE, areas, point and
  box queries (:meth:`RunMasks.index`) are answered from the runs, and windows are decoded one at a time on demand;
* :class:`WindowedMasks` (CPU): each mask's box window, the rest of the image being False by construction;
* :class:`DeviceMasks`: an ``(N, H, W)`` tensor left where it was made (a GPU), encoded there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import torch

from .ops.mask_index import RunIndex
from .ops.parallel import map_slices
from .ops.rle import (
    toggle_dtype,
    toggles_bounds_and_area,
    toggles_to_rle,
    toggles_to_window,
    window_toggles,
    windows_to_rle,
)
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
        lazy = isinstance(windows, RunWindows)  # decoded one at a time when read, never all at once
        self.windows = windows if lazy else list(windows)
        self.bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if len(self.windows) != len(self.bounds):
            raise ValueError(f"{len(self.windows)} windows but {len(self.bounds)} bounds")
        for window, (x1, y1, x2, y2) in zip([] if lazy else self.windows, self.bounds.tolist()):
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
        if isinstance(self.windows, RunWindows):
            return WindowedMasks(RunWindows(self.windows.masks.select(keep)), self.bounds[keep], self.image_size)
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


class RunMasks:
    """``N`` masks of an ``H x W`` image, each held as the boundaries of its runs of True in column-major order.

    Args:
        runs: ``N`` sorted integer arrays, mask ``k``'s :func:`~fastsam.ops.rle.canonical_toggles`: ``start, end,
            start, end, ...`` of its runs as column-major pixel indices ``x * H + y`` (ends exclusive). Stored as
            :func:`~fastsam.ops.rle.toggle_dtype` (int32 below 2**31 pixels).
        image_size: ``(H, W)`` in pixels.

    Attributes:
        bounds: ``(N, 4)`` int64 tight boxes ``x1, y1, x2, y2`` (half-open; zeros for an empty mask).
    """

    def __init__(self, runs: Sequence[np.ndarray], image_size: tuple[int, int]) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        dtype = toggle_dtype(self.image_size)
        self.runs = [np.asarray(r).astype(dtype, copy=False).reshape(-1) for r in runs]
        if any(r.size % 2 for r in self.runs):
            raise ValueError("every mask needs an even number of run boundaries (a start and an end per run)")
        self.bounds = np.zeros((len(self.runs), 4), dtype=np.int64)
        self._areas = np.zeros(len(self.runs), dtype=np.int64)
        for k, r in enumerate(self.runs):
            self.bounds[k], self._areas[k] = toggles_bounds_and_area(r, self.image_size[0])

    @classmethod
    def from_windows(cls, windowed: WindowedMasks) -> RunMasks:
        """The same masks as run boundaries."""
        height = windowed.image_size[0]
        runs = [window_toggles(w, x1, y1, height) for w, (x1, y1, _, _) in zip(windowed.windows, windowed.bounds.tolist())]
        return cls(runs, windowed.image_size)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), *self.image_size)

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def nbytes(self) -> int:
        """Memory held by the masks (run boundaries, bounds, areas; not counting Python object headers)."""
        return int(sum(r.nbytes for r in self.runs) + self.bounds.nbytes + self._areas.nbytes)

    def window(self, k: int) -> np.ndarray:
        """Mask ``k`` inside its tight box ``bounds[k]``, as ``(y2 - y1, x2 - x1)`` bool."""
        return toggles_to_window(self.runs[k], self.bounds[k], self.image_size[0])

    def windowed(self) -> WindowedMasks:
        """The masks as :class:`WindowedMasks` over their tight boxes, each window decoded when read (not kept)."""
        return WindowedMasks(RunWindows(self), self.bounds, self.image_size)

    def numpy(self) -> np.ndarray:
        """The ``(N, H, W)`` bool array."""
        out = torch.zeros(self.shape, dtype=torch.bool).numpy()  # zeros written now (see WindowedMasks.numpy)
        for k, (x1, y1, x2, y2) in enumerate(self.bounds.tolist()):
            if x2 > x1:
                out[k, y1:y2, x1:x2] = self.window(k)
        return out

    def select(self, indices: Any) -> RunMasks:
        keep = _positions(len(self), indices)
        chosen = RunMasks.__new__(RunMasks)
        chosen.image_size, chosen.runs = self.image_size, [self.runs[k] for k in keep]
        chosen.bounds, chosen._areas = self.bounds[keep], self._areas[keep]
        return chosen

    def any(self) -> np.ndarray:
        """``(N,)`` bool: which masks have a True pixel."""
        return np.fromiter((r.size > 0 for r in self.runs), dtype=bool, count=len(self))

    def areas(self) -> np.ndarray:
        """``(N,)`` int64 pixel counts."""
        return self._areas.copy()

    def to_rle(self) -> list[dict[str, Any]]:
        """Compressed COCO RLE of each mask (the same strings as :func:`fastsam.ops.rle.mask_to_rle` of the array)."""
        size = self.image_size
        return map_slices(len(self), lambda part: toggles_to_rle(self.runs[part], size))

    def index(self) -> RunIndex:
        """Point and box queries over the masks, answered from the runs (see :class:`~fastsam.ops.mask_index.RunIndex`)."""
        return RunIndex(self.runs, self.image_size, self.bounds, self._areas)


class RunWindows(Sequence[np.ndarray]):
    """The tight-box windows of :class:`RunMasks`, as a sequence that decodes window ``k`` each time it is read."""

    def __init__(self, masks: RunMasks) -> None:
        self.masks = masks

    def __len__(self) -> int:
        return len(self.masks)

    @overload
    def __getitem__(self, k: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, k: slice) -> list[np.ndarray]: ...

    def __getitem__(self, k: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(k, slice):
            return [self.masks.window(i) for i in range(len(self))[k]]
        if not -len(self) <= k < len(self):
            raise IndexError(f"window {k} of {len(self)}")
        return self.masks.window(k % len(self))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.masks.window(k) for k in range(len(self)))


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


LazyMasks = (RunMasks, WindowedMasks, DeviceMasks)
