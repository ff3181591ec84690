"""Point prompts: which masks a set of foreground/background points asks for.

Three semantics:

* ``"best"`` (default): one mask per foreground point — among the masks that contain the point and contain
  no background point, the one with the highest score (ties: the smaller mask, then the lower index). With
  ``multimask`` up to three candidates per point, ordered from smallest (a part) to largest (the whole): the
  smallest and the largest candidate and, between them, the highest-scoring one.
* ``"official"``: the official FastSAM repository's merged mask: masks are visited from largest to smallest
  area; each mask containing a point is painted into one canvas with the label of the last point (in the given
  order) it contains (1 paints, 0 erases).
* ``"ultralytics"``: ultralytics' instance selection: every mask that contains a foreground point (every mask
  when all points are background) and no background point.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..ops.mask_index import MaskIndex

PointMode = Literal["best", "official", "ultralytics"]
POINT_MODES: tuple[str, ...] = ("best", "official", "ultralytics")


def _allowed(contains: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: masks containing no background point."""
    background = contains[labels == 0]
    return ~background.any(0) if background.size else np.ones(contains.shape[1], dtype=bool)


def select_best(
    index: MaskIndex, scores: np.ndarray, points_px: np.ndarray, labels: np.ndarray, multimask: bool = False
) -> list[np.ndarray]:
    """Mode ``"best"``: per foreground point, an array of mask indices (1, or up to 3 with ``multimask``).

    An empty array means no mask contains that point without containing a background point.
    """
    contains = index.contains(points_px)  # (P, N)
    allowed = _allowed(contains, labels)
    # rank: score descending, then area ascending, then index ascending
    order = np.lexsort((np.arange(len(scores)), index.areas, -scores))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    picks = []
    for p in np.flatnonzero(labels == 1):
        candidates = np.flatnonzero(contains[p] & allowed)
        if candidates.size == 0:
            picks.append(np.zeros(0, dtype=np.int64))
            continue
        best = candidates[rank[candidates].argmin()]
        if not multimask:
            picks.append(np.array([best], dtype=np.int64))
            continue
        by_area = candidates[np.lexsort((candidates, index.areas[candidates]))]
        smallest, largest = by_area[0], by_area[-1]
        middle = by_area[1:-1]
        chosen = [smallest]
        if middle.size:
            chosen.append(middle[rank[middle].argmin()])
        if largest != smallest:
            chosen.append(largest)
        picks.append(np.array(chosen, dtype=np.int64))
    return picks


def select_ultralytics(index: MaskIndex, points_px: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mode ``"ultralytics"``: ``(N,)`` bool selection of whole masks."""
    contains = index.contains(points_px)
    if (labels == 1).any():
        selected = contains[labels == 1].any(0)
    else:
        selected = np.ones(len(index), dtype=bool)
    return selected & _allowed(contains, labels)


def merge_official(masks: np.ndarray, index: MaskIndex, points_px: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mode ``"official"``: one ``(H, W)`` bool mask painted from the masks containing points."""
    contains = index.contains(points_px)  # (P, N)
    canvas = np.zeros(masks.shape[1:], dtype=bool)
    touched = np.flatnonzero(contains.any(0))
    # largest area first; a stable sort keeps the original order among equal areas
    for m in touched[np.argsort(-index.areas[touched], kind="stable")]:
        last_point = np.flatnonzero(contains[:, m])[-1]
        x1, y1, x2, y2 = index.bboxes[m]
        region = masks[m, y1:y2, x1:x2]
        view = canvas[y1:y2, x1:x2]
        if labels[last_point] == 1:
            view |= region
        else:
            view &= ~region
    return canvas
