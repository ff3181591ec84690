"""Which of FastSAM's everything-mode masks answer one SAM prompt (points with labels, a box, a mask).

SAM decodes a new mask for every prompt; FastSAM has already segmented everything, so a prompt selects. The rules:

* **Background points** (label 0) exclude every mask that contains one.
* **Foreground points** (label 1): the candidates are the masks that contain all of them. When no single mask does
  (points on different objects), the answer is the union of each point's best candidate.
* **Box**: candidates must overlap it; they are ranked by the references' box criterion
  ``|m ∩ box| / (|box| + |m| - |m ∩ box|)``.
* **Mask** (``mask_input``, SAM's low-resolution logits of an earlier answer): without a box, candidates are ranked
  by their IoU with it (and must overlap it when there is no foreground point).
* Otherwise (points only) candidates are ranked by FastSAM's score. Ties: higher score, then smaller mask, then
  lower index.
* ``multimask``: three answers ordered from part to whole as SAM's three outputs usually are. Points only: the
  smallest candidate, the best-ranked one between, the largest. With a box or a mask: the three best-ranked, by
  increasing area. Fewer candidates repeat the last (largest) one, so there are always three.
* No candidate, or no prompt that asks for anything (no foreground point, box or mask): an empty mask with score 0.

Labels -1 (SAM's padding points) are ignored. The score of an answer is its mask's FastSAM score (the lowest of
the masks in a union); it stands in for SAM's predicted IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops.mask_index import MaskIndex


@dataclass(frozen=True)
class Answer:
    """One output mask: the union of the cached masks ``members`` (none: an all-False mask) and its score."""

    members: tuple[int, ...]
    score: float


EMPTY = Answer((), 0.0)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words)
    return np.unpackbits(words.view(np.uint8), axis=-1)


def mask_ious(index: MaskIndex, mask: np.ndarray, chunk: int = 64) -> np.ndarray:
    """``(N,)`` float64 IoU of each indexed mask with one ``(H, W)`` bool mask (bitwise, on the packed words)."""
    mask = np.asarray(mask, dtype=bool)
    n = len(index)
    rows = np.flatnonzero(mask.any(1))
    if n == 0 or rows.size == 0:
        return np.zeros(n, dtype=np.float64)
    n_words = index.words.shape[2]
    packed = np.zeros((rows.size, n_words * 8), dtype=np.uint8)
    bits = np.packbits(mask[rows], axis=1, bitorder="little")
    packed[:, : bits.shape[1]] = bits
    prompt = packed.view("<u8")  # (R, n_words)
    inter = np.zeros(n, dtype=np.int64)
    for start in range(0, n, chunk):
        words = index.words[start : start + chunk][:, rows]  # (c, R, n_words)
        inter[start : start + chunk] = _popcount(words & prompt[None]).reshape(words.shape[0], -1).sum(1)
    union = index.areas + int(mask.sum()) - inter
    return inter / np.maximum(union, 1)


def box_ious(index: MaskIndex, box_px: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 box criterion of each mask for one ``(4,)`` int pixel box (x2, y2 exclusive, clipped)."""
    box_px = np.asarray(box_px, dtype=np.int64).reshape(1, 4)
    inter = index.box_counts(box_px)[0]
    area = int((box_px[0, 2] - box_px[0, 0]) * (box_px[0, 3] - box_px[0, 1]))
    return inter / np.maximum(area + index.areas - inter, 1)


def select_masks(
    index: MaskIndex,
    scores: np.ndarray,
    points_px: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box_px: np.ndarray | None = None,
    prompt_mask: np.ndarray | None = None,
    multimask: bool = False,
) -> list[Answer]:
    """The answers (1, or 3 with ``multimask``) to one prompt; see the module docstring for the rules.

    Args:
        index: the everything-mode masks.
        scores: ``(N,)`` their scores.
        points_px: ``(P, 2)`` int x, y pixel indices inside the image; labels: ``(P,)`` 1, 0 or -1 (ignored).
        box_px: ``(4,)`` int pixel bounds x1, y1, x2, y2 (exclusive), clipped to the image.
        prompt_mask: ``(H, W)`` bool.
    """
    count = 3 if multimask else 1
    n = len(index)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if points_px is None or len(points_px) == 0:
        points_px, labels = np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    contains = index.contains(points_px) if len(points_px) else np.zeros((0, n), dtype=bool)
    foreground = contains[labels == 1]
    allowed = ~contains[labels == 0].any(0) if (labels == 0).any() else np.ones(n, dtype=bool)
    if n == 0 or (foreground.shape[0] == 0 and box_px is None and prompt_mask is None):
        return [EMPTY] * count
    key = scores
    if box_px is not None:
        key = box_ious(index, box_px)
        allowed &= key > 0
    elif prompt_mask is not None:
        key = mask_ious(index, prompt_mask)
        if foreground.shape[0] == 0:  # the mask is the whole prompt: candidates must overlap it
            allowed &= key > 0
    order = np.lexsort((np.arange(n), index.areas, -scores, -key))  # best first
    candidates = allowed & foreground.all(0)
    if candidates.any():
        ranked = order[candidates[order]]
        if not multimask:
            return [Answer((int(ranked[0]),), float(scores[ranked[0]]))]
        if box_px is None and prompt_mask is None:
            by_area = ranked[np.lexsort((ranked, index.areas[ranked]))]
            chosen = [by_area[0]]
            if by_area.size > 2:
                middle = set(by_area[1:-1].tolist())
                chosen.append(next(i for i in ranked if int(i) in middle))
            if by_area.size > 1:
                chosen.append(by_area[-1])
        else:
            top = ranked[:3]
            chosen = list(top[np.lexsort((top, index.areas[top]))])
        chosen += [chosen[-1]] * (3 - len(chosen))
        return [Answer((int(i),), float(scores[i])) for i in chosen]
    members = []
    for row in foreground:  # no mask holds every foreground point: each point's best candidate
        ranked = order[(row & allowed)[order]]
        if ranked.size and int(ranked[0]) not in members:
            members.append(int(ranked[0]))
    if not members:
        return [EMPTY] * count
    return [Answer(tuple(members), float(scores[members].min()))] * count
