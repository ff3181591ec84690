"""Small disconnected regions and holes, as SAM's ``min_mask_region_area`` post-processing removes them.

SAM's rule for one mask and an area threshold ``A``, with 8-connected components:

* ``"holes"``: every connected region of the *background* smaller than ``A`` becomes part of the mask (a
  background region touching the image border counts too, if it is small);
* ``"islands"``: every connected region of the mask smaller than ``A`` is removed; if all are, the largest stays
  (the first in raster order among equal sizes).

Both report whether anything changed. :func:`remove_small_regions` applies a rule to a full ``(H, W)`` mask;
:func:`clean_window` applies holes then islands to a mask held as a box window, labelling the window only (plus a
one-pixel background ring standing for the rest of the image, whose true area is added back), with the same
result. Components come from ``scipy.ndimage.label``.
"""

from __future__ import annotations

import numpy as np

_EIGHT = np.ones((3, 3), dtype=bool)
MODES = ("holes", "islands")


def _label(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of ``mask``: labels (0 = outside ``mask``) and ``sizes[label]`` (``sizes[0]`` unused)."""
    try:
        from scipy import ndimage
    except ImportError as err:  # pragma: no cover - scipy is in the test and eval extras
        raise ImportError("min_mask_region_area needs scipy: pip install 'fastsam[sam]'") from err
    labels, count = ndimage.label(mask, structure=_EIGHT)
    return labels, np.bincount(labels.ravel(), minlength=count + 1)


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str, keep_largest: bool = True
) -> tuple[np.ndarray, bool]:
    """Fill the small holes (``mode="holes"``) or drop the small islands (``"islands"``) of an ``(H, W)`` mask.

    Args:
        area_thresh: regions of fewer pixels than this are small.
        keep_largest: islands: keep the largest region when every region is small (SAM's rule); SAM 2's
            sprinkle removal does not.

    Returns:
        The new ``(H, W)`` bool mask and whether any region was small.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask, dtype=bool)
    holes = mode == "holes"
    labels, sizes = _label(~mask if holes else mask)
    small = np.flatnonzero(sizes[1:] < area_thresh) + 1
    if small.size == 0:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, sizes.size), small)
    if keep.size == 0 and keep_largest:
        keep = np.array([int(np.argmax(sizes[1:])) + 1])
    return np.isin(labels, keep), True


def clean_window(
    window: np.ndarray,
    bounds: np.ndarray,
    image_size: tuple[int, int],
    area_thresh: float,
    islands_thresh: float | None = None,
    keep_largest: bool = True,
) -> tuple[np.ndarray, tuple[int, int, int, int], bool]:
    """SAM's ``min_mask_region_area`` step (holes, then islands) on a mask held as a window.

    Args:
        window: ``(y2 - y1, x2 - x1)`` bool; the mask is False outside it.
        bounds: ``x1, y1, x2, y2`` of the window in the ``image_size`` image.
        area_thresh: holes (and islands, unless ``islands_thresh`` is given) smaller than this go.
        keep_largest: see :func:`remove_small_regions`.

    Returns:
        The new window, its bounds and whether anything changed. The bounds stay the same unless a small
        background region reaches outside the window (or the mask is empty): then the rule runs on the full
        image and the window is the whole image.
    """
    x1, y1, x2, y2 = (int(v) for v in np.asarray(bounds).reshape(4))
    height, width = (int(v) for v in image_size)
    window = np.asarray(window, dtype=bool)
    islands_thresh = area_thresh if islands_thresh is None else islands_thresh
    filled = _fill_window_holes(window, (x1, y1, x2, y2), (height, width), area_thresh) if window.any() else None
    if filled is None:
        full = np.zeros((height, width), dtype=bool)
        full[y1:y2, x1:x2] = window
        full, changed_holes = remove_small_regions(full, area_thresh, "holes")
        full, changed_islands = remove_small_regions(full, islands_thresh, "islands", keep_largest)
        if not (changed_holes or changed_islands):
            return window, (x1, y1, x2, y2), False
        return full, (0, 0, width, height), True
    window, changed_holes = filled
    window, changed_islands = remove_small_regions(window, islands_thresh, "islands", keep_largest)
    return window, (x1, y1, x2, y2), changed_holes or changed_islands


def _fill_window_holes(
    window: np.ndarray, bounds: tuple[int, int, int, int], image_size: tuple[int, int], area_thresh: float
) -> tuple[np.ndarray, bool] | None:
    """Holes rule on a window; None when a small background region is not inside the window."""
    x1, y1, x2, y2 = bounds
    height, width = image_size
    h, w = window.shape
    top, bottom, left, right = int(y1 > 0), int(y2 < height), int(x1 > 0), int(x2 < width)
    # the background, with a one-pixel ring on each side where the image goes on: the ring of a side is connected
    # to the whole strip of image beyond that side, and the strips connect to each other as the ring's sides do
    padded = np.ones((h + top + bottom, w + left + right), dtype=bool)
    padded[top : top + h, left : left + w] = ~window
    labels, sizes = _label(padded)
    sizes = sizes.astype(np.int64)
    strips = []  # (ring pixels of a side, that side's strip area in the image)
    if left:
        strips.append((labels[:, 0], x1 * height))
    if right:
        strips.append((labels[:, -1], (width - x2) * height))
    if top:
        strips.append((labels[0, left : left + w], y1 * (x2 - x1)))
    if bottom:
        strips.append((labels[-1, left : left + w], (height - y2) * (x2 - x1)))
    ring_labels = set()
    for ring, area in strips:
        sizes[ring[0]] += area - ring.size  # the ring pixels stand for the strip
        ring_labels.add(int(ring[0]))
    small = np.flatnonzero(sizes[1:] < area_thresh) + 1
    if small.size == 0:
        return window, False
    if ring_labels & set(small.tolist()):
        return None
    inner = labels[top : top + h, left : left + w]
    return window | np.isin(inner, small), True
