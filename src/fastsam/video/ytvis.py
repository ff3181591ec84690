"""One YouTube-VIS-style JSON per video: each track is an annotation holding its mask in every frame.

Layout (the YouTube-VIS 2019/2021 dataset files): ``{"videos": [{"id": 1, "name", "width", "height", "length",
"file_names"}], "annotations": [{"id", "video_id": 1, "category_id": 1, "track_id", "segmentations": [COCO RLE or
null per frame], "bboxes": [xywh or null], "areas": [int or null], "iscrowd": 0, "length": 1, "score"}],
"categories": [{"id": 1, "name": "object"}]}``. ``score`` (the track's mean mask score) makes the annotations
usable as YouTube-VIS results as well. Masks keep their overlaps (unlike MOTS). The annotations are held in memory
(compressed RLE strings) until :meth:`YtvisWriter.close`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..results import SegmentationResult


class YtvisWriter:
    """Collect tracked frames and write the video's YouTube-VIS JSON on :meth:`close`.

    Args:
        path: the JSON file (folders are created).
        name: the video's name (``file_names`` are ``name/00000.jpg``, ...).
        image_size: ``(H, W)``.
    """

    def __init__(self, path: str | os.PathLike[str], name: str, image_size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.name = name
        self.height, self.width = (int(v) for v in image_size)
        self._tracks: dict[int, dict[int, tuple[Any, list[float], int, float]]] = {}
        self._length = 0
        self._closed = False

    def write(self, frame_index: int, ids: np.ndarray, result: SegmentationResult) -> None:
        """Add one frame's masks under their ids."""
        self._length = max(self._length, frame_index + 1)
        if not len(result):
            return
        rles, areas = result.to_rle(), result.areas()
        for i, track_id in enumerate(np.asarray(ids).tolist()):
            x1, y1, x2, y2 = (float(v) for v in result.boxes[i])
            entry = (rles[i], [x1, y1, x2 - x1, y2 - y1], int(areas[i]), float(result.scores[i]))
            self._tracks.setdefault(int(track_id), {})[frame_index] = entry

    def to_dict(self) -> dict[str, Any]:
        length = self._length
        annotations = []
        for k, (track_id, frames) in enumerate(sorted(self._tracks.items()), start=1):
            segmentations: list[Any] = [None] * length
            bboxes: list[Any] = [None] * length
            areas: list[Any] = [None] * length
            for t, (rle, bbox, area, _) in frames.items():
                segmentations[t], bboxes[t], areas[t] = rle, bbox, area
            score = float(np.mean([s for *_, s in frames.values()]))
            annotations.append({"id": k, "video_id": 1, "category_id": 1, "track_id": track_id,
                                "segmentations": segmentations, "bboxes": bboxes, "areas": areas, "iscrowd": 0,
                                "length": 1, "score": round(score, 6)})  # fmt: skip
        video = {"id": 1, "name": self.name, "width": self.width, "height": self.height, "length": length,
                 "file_names": [f"{self.name}/{t:05d}.jpg" for t in range(length)]}  # fmt: skip
        return {"videos": [video], "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}

    def close(self) -> None:
        """Write the JSON (once)."""
        if self._closed:
            return
        self._closed = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.to_dict()), encoding="utf-8")

    def __enter__(self) -> YtvisWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
