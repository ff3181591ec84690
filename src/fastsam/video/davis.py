"""DAVIS-style annotations: one palette PNG per frame whose pixel values are object ids (0: background).

This is the layout of DAVIS ``Annotations/480p/<sequence>/00000.png`` and of the results DAVIS evaluations read, so
that "prompt once, follow" output can be scored with J&F (``fastsam eval tracking``). Ids must fit a byte (1-255);
where objects overlap, the smaller one is drawn on top. The palette is the PASCAL VOC colour map DAVIS uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..results import SegmentationResult


def voc_palette() -> list[int]:
    """The 256-colour PASCAL VOC / DAVIS palette as a flat ``[r0, g0, b0, r1, ...]`` list."""
    palette = []
    for index in range(256):
        rgb, c = [0, 0, 0], index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - bit)
            c >>= 3
        palette.extend(rgb)
    return palette


def id_map(ids: np.ndarray, result: SegmentationResult) -> np.ndarray:
    """``(H, W)`` uint8 map of object ids (0 background); larger masks are drawn first, smaller ones on top."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) and (ids.min() < 1 or ids.max() > 255):
        raise ValueError(f"DAVIS annotations hold object ids 1-255; got ids {ids.min()}-{ids.max()}")
    height, width = result.image_size
    out = np.zeros((height, width), dtype=np.uint8)
    held = result.mask_windows()
    areas = result.areas()
    for i in np.argsort(-areas, kind="stable").tolist():
        if held is not None:
            x1, y1, x2, y2 = (int(v) for v in held.bounds[i])
            out[y1:y2, x1:x2][held.windows[i]] = ids[i]
        else:
            out[np.asarray(result.masks[i], dtype=bool)] = ids[i]
    return out


def save_id_map(labels: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an ``(H, W)`` uint8 id map as a palette PNG (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette())
    image.save(path)
    return path


class DavisWriter:
    """Write ``folder/00000.png``, ``00001.png``, ... (named by frame index) for the followed objects."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, frame_index: int, ids: np.ndarray, result: SegmentationResult) -> None:
        save_id_map(id_map(ids, result), self.folder / f"{frame_index:05d}.png")

    def close(self) -> None:
        """Nothing to finish: every frame is its own file."""
