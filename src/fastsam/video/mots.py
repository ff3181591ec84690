"""MOTS-challenge text output: one line per object and frame, ``frame id class height width rle``.

The format (MOTSChallenge / KITTI MOTS, read by TrackEval) requires that no pixel belongs to two objects in a frame,
while everything-mode masks overlap (a part inside its whole). Overlaps are resolved in favour of the higher-scoring
mask, the usual convention when turning instance masks into MOTS; a mask left empty is not written. Frames are
numbered from 1, as in MOTSChallenge. Every object gets class 2, the one class MOTSChallenge evaluates (FastSAM's
masks have no class).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

import numpy as np

from ..ops.rle import tight_windows, windows_to_rle
from ..results import SegmentationResult

MOTS_CLASS = 2
"""Class written for every object: MOTSChallenge's evaluated class ("pedestrian"; 10 marks ignore regions)."""


def exclusive_windows(result: SegmentationResult) -> tuple[list[np.ndarray], np.ndarray]:
    """The masks of ``result`` made disjoint, higher scores first: ``N`` windows and ``(N, 4)`` bounds, in the
    result's order (a window may end up all False)."""
    held = result.mask_windows()
    if held is not None:
        windows, bounds = held.windows, held.bounds
    else:
        windows, bounds = tight_windows(np.asarray(result.masks, dtype=bool))
    height, width = result.image_size
    taken = np.zeros((height, width), dtype=bool)
    out: list[np.ndarray] = [np.zeros((0, 0), bool)] * len(windows)
    for i in np.argsort(-np.asarray(result.scores), kind="stable").tolist():
        x1, y1, x2, y2 = (int(v) for v in bounds[i])
        own = windows[i] & ~taken[y1:y2, x1:x2]
        taken[y1:y2, x1:x2] |= own
        out[i] = own
    return out, np.asarray(bounds, dtype=np.int64).reshape(-1, 4)


def mots_lines(frame_index: int, ids: np.ndarray, result: SegmentationResult, class_id: int = MOTS_CLASS) -> list[str]:
    """The MOTS lines of one frame (``frame_index`` from 0; written from 1), one per non-empty mask."""
    windows, bounds = exclusive_windows(result)
    keep = [i for i, w in enumerate(windows) if w.any()]
    if not keep:
        return []
    height, width = result.image_size
    rles = windows_to_rle([windows[i] for i in keep], bounds[keep], (height, width))
    return [f"{frame_index + 1} {int(ids[i])} {class_id} {height} {width} {rle['counts']}" for i, rle in zip(keep, rles)]


class MotsWriter:
    """Append frames to a MOTS text file (created with its folders; closed by :meth:`close` or ``with``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, frame_index: int, ids: np.ndarray, result: SegmentationResult) -> None:
        lines = mots_lines(frame_index, ids, result)
        if lines and self._file is not None:
            self._file.write("\n".join(lines) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MotsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
