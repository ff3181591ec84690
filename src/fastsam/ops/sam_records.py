"""segment-anything's mask records, built from masks held as box windows.

``SamAutomaticMaskGenerator.generate`` returns one dict per mask with the keys ``segmentation``, ``area``,
``bbox``, ``predicted_iou``, ``point_coords``, ``stability_score`` and ``crop_box``. This module makes the same
records from masks given as windows (mask ``k`` is ``windows[k]`` at rows ``y1:y2``, columns ``x1:x2`` of the image,
False elsewhere), so that neither the generator nor :meth:`fastsam.results.SegmentationResult.to_sam_records`
lays out an ``(N, H, W)`` array unless ``output_mode="binary_mask"`` asks for it.

SAM's conventions, kept here:

* ``bbox`` is XYWH in integers, from the mask's first and **last** pixel (``w = x_last - x_first``, one less than
  the pixel width; an empty mask gets ``[0, 0, 0, 0]``);
* ``segmentation``: an ``(H, W)`` bool array (``"binary_mask"``), COCO RLE with the run lengths as a list
  (``"uncompressed_rle"``, column-major, zeros first) or as pycocotools' compressed string (``"coco_rle"``);
* ``point_coords``: ``[[x, y]]`` in pixels, ``crop_box``: XYWH integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .rle import _column_major_runs, windows_to_rle

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


def check_output_mode(output_mode: str) -> str:
    """Return ``output_mode`` or raise ``ValueError`` naming the choices."""
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}")
    return output_mode


def point_grid(n_per_side: int) -> np.ndarray:
    """SAM's point grid: the centres of an ``n x n`` grid of cells over ``[0, 1]^2``, row by row.

    Returns:
        ``(n * n, 2)`` float64 normalised ``x, y``; point ``i * n + j`` is column ``j`` of row ``i``.
    """
    if n_per_side < 1:
        raise ValueError(f"points_per_side must be at least 1, got {n_per_side}")
    side = (np.arange(n_per_side, dtype=np.float64) + 0.5) / n_per_side
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def tight_bounds(windows: Sequence[np.ndarray], bounds: np.ndarray) -> np.ndarray:
    """``(N, 4)`` int64 tight ``x1, y1, x2, y2`` (x2, y2 exclusive) of each mask; zeros for an empty mask."""
    bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
    out = np.zeros((len(windows), 4), dtype=np.int64)
    for k, (window, (x1, y1, _, _)) in enumerate(zip(windows, bounds.tolist())):
        if window.size == 0:
            continue
        rows, cols = np.flatnonzero(window.any(1)), np.flatnonzero(window.any(0))
        if rows.size:
            out[k] = (x1 + cols[0], y1 + rows[0], x1 + cols[-1] + 1, y1 + rows[-1] + 1)
    return out


def tighten(windows: Sequence[np.ndarray], bounds: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The same masks with each window cut to the mask's tight box (an empty mask: a 0 x 0 window at 0, 0)."""
    tight = tight_bounds(windows, bounds)
    bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
    cut = [
        window[ty1 - y1 : ty2 - y1, tx1 - x1 : tx2 - x1] if tx2 > tx1 else np.zeros((0, 0), dtype=bool)
        for window, (x1, y1, _, _), (tx1, ty1, tx2, ty2) in zip(windows, bounds.tolist(), tight.tolist())
    ]
    return cut, tight


def sam_boxes_xyxy(tight: np.ndarray) -> np.ndarray:
    """Tight exclusive boxes -> SAM's ``batched_mask_to_box`` convention: ``(N, 4)`` int64, last pixel inclusive."""
    tight = np.asarray(tight, dtype=np.int64).reshape(-1, 4)
    out = tight.copy()
    out[:, 2:] -= 1
    out[(tight[:, 2] <= tight[:, 0]) | (tight[:, 3] <= tight[:, 1])] = 0
    return out


def interior_points(windows: Sequence[np.ndarray], bounds: np.ndarray, grid_px: np.ndarray) -> np.ndarray:
    """A point inside each mask: the first point of ``grid_px`` in it, else the mask pixel nearest its centroid.

    Args:
        grid_px: ``(G, 2)`` float ``x, y`` in pixels of the frame the windows are in (SAM's grid for the crop);
            a point lies in the pixel ``floor(x), floor(y)``.

    Returns:
        ``(N, 2)`` float64 ``x, y``; the pixel centre for a fallback point, ``(0, 0)`` for an empty mask.
    """
    bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
    grid_px = np.asarray(grid_px, dtype=np.float64).reshape(-1, 2)
    gx, gy = np.floor(grid_px[:, 0]).astype(np.int64), np.floor(grid_px[:, 1]).astype(np.int64)
    out = np.zeros((len(windows), 2), dtype=np.float64)
    for k, (window, (x1, y1, x2, y2)) in enumerate(zip(windows, bounds.tolist())):
        inside = np.flatnonzero((gx >= x1) & (gx < x2) & (gy >= y1) & (gy < y2))
        if inside.size:
            hits = inside[window[gy[inside] - y1, gx[inside] - x1]]
            if hits.size:
                out[k] = grid_px[hits[0]]
                continue
        ys, xs = np.nonzero(window)
        if ys.size:
            nearest = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            out[k] = (x1 + xs[nearest] + 0.5, y1 + ys[nearest] + 0.5)
    return out


def encode_windows(
    windows: Sequence[np.ndarray], bounds: np.ndarray, image_size: tuple[int, int], output_mode: str
) -> list[Any]:
    """The ``segmentation`` value of each mask in ``output_mode`` (see the module docstring)."""
    check_output_mode(output_mode)
    bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
    height, width = (int(v) for v in image_size)
    if output_mode == "coco_rle":
        return windows_to_rle(list(windows), bounds, (height, width))
    if output_mode == "uncompressed_rle":
        return [
            {"size": [height, width], "counts": _column_major_runs(w, x1, y1, height, width)}
            for w, (x1, y1, _, _) in zip(windows, bounds.tolist())
        ]
    out = []
    for window, (x1, y1, x2, y2) in zip(windows, bounds.tolist()):
        mask = np.zeros((height, width), dtype=bool)
        if window.size:
            mask[y1:y2, x1:x2] = window
        out.append(mask)
    return out


def sam_records(
    windows: Sequence[np.ndarray],
    bounds: np.ndarray,
    image_size: tuple[int, int],
    scores: np.ndarray,
    output_mode: str = "binary_mask",
    stability_scores: np.ndarray | None = None,
    points: np.ndarray | None = None,
    crop_boxes: np.ndarray | None = None,
    points_per_side: int = 32,
    tight: bool = False,
) -> list[dict[str, Any]]:
    """segment-anything's mask records (plain Python types apart from a ``binary_mask`` segmentation).

    Args:
        windows, bounds: the masks (see the module docstring), in the image frame.
        image_size: ``(H, W)``.
        scores: ``(N,)`` the ``predicted_iou`` of each record (FastSAM's confidence).
        stability_scores: ``(N,)`` SAM's stability score of each mask, or None where the logits are gone (the
            records then hold ``None``).
        points: ``(N, 2)`` the ``point_coords`` of each record (default: :func:`interior_points` with SAM's
            ``points_per_side`` grid over the whole image).
        crop_boxes: ``(N, 4)`` xyxy crop of each mask (default: the whole image).
        tight: the windows are already cut to the masks' tight boxes (their bounds are the boxes).

    Returns:
        ``N`` dicts ``{"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score",
        "crop_box"}`` in the order given.
    """
    check_output_mode(output_mode)
    height, width = (int(v) for v in image_size)
    n = len(windows)
    bounds = np.asarray(bounds, dtype=np.int64).reshape(-1, 4)
    if points is None:
        points = interior_points(windows, bounds, point_grid(points_per_side) * np.array([width, height]))
    if crop_boxes is None:
        crop_boxes = np.tile(np.array([[0, 0, width, height]], dtype=np.int64), (n, 1))
    crop_boxes = np.asarray(crop_boxes, dtype=np.int64).reshape(-1, 4)
    boxes = sam_boxes_xyxy(bounds if tight else tight_bounds(windows, bounds))
    segmentations = encode_windows(windows, bounds, (height, width), output_mode)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    records = []
    for k in range(n):
        x1, y1, x2, y2 = boxes[k].tolist()
        cx1, cy1, cx2, cy2 = crop_boxes[k].tolist()
        records.append({
            "segmentation": segmentations[k],
            "area": int(np.count_nonzero(windows[k])),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "predicted_iou": float(scores[k]),
            "point_coords": [[float(points[k][0]), float(points[k][1])]],
            "stability_score": None if stability_scores is None else float(stability_scores[k]),
            "crop_box": [cx1, cy1, cx2 - cx1, cy2 - cy1],
        })  # fmt: skip
    return records
