"""Resolving overlapping masks of one class, so that each pixel belongs to at most one instance of a class.

Everything mode finds parts and wholes (a dog and its head; both may be scored "dog"). Within a class, masks are
visited from the best ranked to the worst: a mask mostly covered by masks already kept (``max_overlap`` of its
area or more) is dropped as a part or a duplicate; otherwise it keeps only the pixels no kept mask has taken,
and is dropped if fewer than ``min_area`` pixels remain. Masks of different classes never affect each other.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resolve_overlaps"]


def resolve_overlaps(
    masks: np.ndarray,
    class_ids: np.ndarray,
    ranking: np.ndarray,
    max_overlap: float = 0.5,
    min_area: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Make the masks of each class disjoint.

    Args:
        masks: ``(N, H, W)`` bool.
        class_ids: ``(N,)`` int class of each mask.
        ranking: ``(N,)`` float, higher first (ties: lower index first).
        max_overlap: a mask whose share of pixels already taken by its class is at least this is dropped.
        min_area: a mask left with fewer pixels is dropped.

    Returns:
        ``kept`` ``(M,)`` int64 indices into ``masks`` (in ``ranking`` order) and ``resolved`` ``(M, H, W)`` bool,
        the kept masks less the pixels taken by better ranked masks of their class.
    """
    masks = np.asarray(masks, dtype=bool)
    class_ids = np.asarray(class_ids).reshape(-1)
    ranking = np.asarray(ranking, dtype=np.float64).reshape(-1)
    if masks.ndim != 3 or len(class_ids) != len(masks) or len(ranking) != len(masks):
        raise ValueError(f"masks {masks.shape}, class_ids {class_ids.shape} and ranking {ranking.shape} disagree")
    if not 0.0 < max_overlap <= 1.0:
        raise ValueError(f"max_overlap is a share in (0, 1], got {max_overlap}")
    order = np.lexsort((np.arange(len(masks)), -ranking))
    taken: dict[int, np.ndarray] = {}
    kept, resolved = [], []
    for i in order.tolist():
        mask = masks[i]
        area = int(mask.sum())
        if area == 0:
            continue
        claimed = taken.get(int(class_ids[i]))
        if claimed is None:
            claimed = taken[int(class_ids[i])] = np.zeros(mask.shape, dtype=bool)
        overlap = int(np.count_nonzero(mask & claimed))
        if overlap >= max_overlap * area:
            continue
        own = mask & ~claimed
        if area - overlap < max(min_area, 1):
            continue
        claimed |= own
        kept.append(i)
        resolved.append(own)
    height, width = masks.shape[1:]
    stack = np.stack(resolved) if resolved else np.zeros((0, height, width), dtype=bool)
    return np.asarray(kept, dtype=np.int64), stack
