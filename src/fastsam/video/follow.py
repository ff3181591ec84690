"""Tracking every mask through a video, and "prompt once, follow": objects chosen by prompts on one frame, followed.

:class:`VideoTracker` turns each frame's everything-mode :class:`~fastsam.results.SegmentationResult` into a
:class:`TrackedFrame`: the masks to report, each with a ``track_id`` stable across frames
(:class:`~fastsam.video.tracking.MaskTracker`). With prompts (:class:`FramePrompt`: points, boxes or texts on frame
``K``, through :class:`~fastsam.predictor.SegmentedImage`), only the prompted objects are reported from frame ``K``
on, one ``object_id`` each (1, 2, ... in the order they were prompted), with a ``lost`` entry while an object is not
found; it is recovered with the same id when it comes back. The tracker goes on tracking every mask underneath, so
that a followed track cannot take a neighbour's mask at a crossing (assignment is one-to-one).

:func:`track` runs the whole thing on a video, a stream, a webcam or any frames.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..results import SegmentationResult
from .sources import Frame
from .tracking import MaskTracker, TrackerConfig

if TYPE_CHECKING:
    from ..engine import FastSAM
    from ..prompts.text import TextScorer

Detector = Callable[[np.ndarray], SegmentationResult]
"""Anything that segments one ``(H, W, 3)`` uint8 RGB frame in everything mode (a stand-in for the network)."""


@dataclass
class FramePrompt:
    """Prompts that choose objects to follow, applied on frame ``frame`` (or the first frame after it that is
    decoded, when a live source dropped it).

    Attributes:
        frame: frame index, from 0.
        points: ``(P, 2)`` x, y pixels; each foreground point chooses one object.
        labels: ``(P,)`` 1 foreground, 0 background (default all 1).
        boxes: ``(B, 4)`` x1, y1, x2, y2 pixels; one object each.
        texts: text queries (CLIP); one object each.
    """

    frame: int = 0
    points: list[list[float]] | None = None
    labels: list[int] | None = None
    boxes: list[list[float]] | None = None
    texts: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.frame, bool) or not isinstance(self.frame, (int, np.integer)) or self.frame < 0:
            raise ValueError(f"prompt frame must be a frame index >= 0, got {self.frame!r}")
        if self.labels is not None and self.points is None:
            raise ValueError(f"frame {self.frame}: labels need points")
        if self.points is None and self.boxes is None and not self.texts:
            raise ValueError(f"frame {self.frame}: a prompt needs points, boxes or texts")

    def check(self, image_size: tuple[int, int]) -> None:
        """Raise ``ValueError`` naming the prompt if a point or box does not fit an ``(H, W)`` frame."""
        from ..prompts.validation import validate_boxes, validate_points

        try:
            if self.points is not None:
                validate_points(self.points, self.labels, image_size)
            if self.boxes is not None:
                validate_boxes(self.boxes, image_size)
        except ValueError as err:
            raise ValueError(f"prompt on frame {self.frame}: {err}") from None


def load_prompts(path: str | os.PathLike[str]) -> list[FramePrompt]:
    """Per-frame prompts from a JSON file: a list of ``{"frame": K, "points": [[x, y], ...], "labels": [...],
    "boxes": [[x1, y1, x2, y2], ...], "texts": ["..."]}`` (``"text"`` is accepted for ``"texts"``).

    Raises:
        ValueError: unreadable JSON or an entry that is not a prompt (the message says which entry).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read prompts from {path}: {err}") from None
    if isinstance(data, dict) and "prompts" in data:
        data = data["prompts"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of per-frame prompts")
    prompts = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {i} is not an object")
        entry = dict(entry)
        if "text" in entry:
            text = entry.pop("text")
            entry["texts"] = [text] if isinstance(text, str) else text
        unknown = set(entry) - {"frame", "points", "labels", "boxes", "texts"}
        if unknown:
            raise ValueError(f"{path}: entry {i} has unknown key(s) {', '.join(sorted(unknown))}")
        try:
            prompts.append(FramePrompt(**entry))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: entry {i}: {err}") from None
    return prompts


@dataclass
class LostObject:
    """A followed object not found in a frame: its ids and Kalman-predicted ``box`` (xyxy, pixels; None when it was
    never found)."""

    object_id: int
    track_id: int
    box: list[float] | None


@dataclass
class TrackedFrame:
    """One frame's tracked masks.

    Attributes:
        frame: the decoded frame.
        result: the masks reported in this frame (``boxes``, ``scores``, masks; ``image`` is the frame).
        track_ids: ``(N,)`` int64 track id of each mask (stable across frames).
        object_ids: ``(N,)`` int64 object id of each mask when following prompted objects, else None.
        lost: followed objects not found in this frame.
        candidates: masks the segmenter gave for this frame, before tracking.
        indices: ``(N,)`` int64 position of each reported mask among those ``candidates``.
    """

    frame: Frame
    result: SegmentationResult
    track_ids: np.ndarray
    object_ids: np.ndarray | None = None
    lost: list[LostObject] = field(default_factory=list)
    candidates: int = 0
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def ids(self) -> np.ndarray:
        """The id shown for each mask: the object id when following prompts, else the track id."""
        return self.object_ids if self.object_ids is not None else self.track_ids

    def to_record(self) -> dict[str, Any]:
        """One JSON line: ``{"frame", "time", "image": {"width", "height"}, "annotations": [{"track_id",
        "object_id"?, "segmentation": COCO RLE, "bbox": xywh, "area", "score"}], "lost": [...]}``."""
        result = self.result
        height, width = result.image_size
        rles, areas = result.to_rle(), result.areas()
        annotations = []
        for i in range(len(result)):
            x1, y1, x2, y2 = (float(v) for v in result.boxes[i])
            entry: dict[str, Any] = {"track_id": int(self.track_ids[i])}
            if self.object_ids is not None:
                entry["object_id"] = int(self.object_ids[i])
            entry.update(segmentation=rles[i], bbox=[x1, y1, x2 - x1, y2 - y1], area=int(areas[i]),
                         score=round(float(result.scores[i]), 6))  # fmt: skip
            annotations.append(entry)
        record: dict[str, Any] = {"frame": self.frame.index, "time": round(self.frame.time, 6),
                                  "image": {"width": int(width), "height": int(height)}, "annotations": annotations}  # fmt: skip
        if self.object_ids is not None:
            record["lost"] = [
                {"object_id": o.object_id, "track_id": o.track_id,
                 "bbox": None if o.box is None else [o.box[0], o.box[1], o.box[2] - o.box[0], o.box[3] - o.box[1]]}
                for o in self.lost
            ]  # fmt: skip
        return record


class VideoTracker:
    """Frame-by-frame tracking of everything-mode results, optionally following prompted objects only.

    Args:
        image_size: ``(H, W)`` of the frames.
        config: tracker settings.
        prompts: objects to follow; empty: report every confirmed track.
        text_scorer: scores crops against texts for text prompts (default: CLIP ViT-B/32, loaded when needed).
    """

    def __init__(self, image_size: tuple[int, int], config: TrackerConfig | None = None,
                 prompts: Sequence[FramePrompt] = (), text_scorer: TextScorer | None = None) -> None:  # fmt: skip
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.tracker = MaskTracker(self.image_size, config)
        self.pending = sorted(prompts, key=lambda p: p.frame)
        for prompt in self.pending:
            prompt.check(self.image_size)
        self.following = bool(self.pending)
        self.objects: dict[int, int] = {}  # object id -> track id (-1: the prompt chose no mask)
        self.frames = 0
        self.last_index: int | None = None
        self._text_scorer = text_scorer

    def step(self, frame: Frame, result: SegmentationResult) -> TrackedFrame:
        """Track one frame's everything-mode ``result``; returns what to report for it."""
        if tuple(result.image_size) != self.image_size:
            raise ValueError(f"frame {frame.index} is {result.image_size[1]}x{result.image_size[0]}, the video "
                             f"{self.image_size[1]}x{self.image_size[0]}")  # fmt: skip
        windows = result.mask_windows()
        masks = windows if windows is not None else result.masks
        update = self.tracker.update(result.boxes, result.scores, masks, frame=frame.index)
        track_ids = update.track_ids.copy()
        confirmed = update.confirmed.copy()
        while self.pending and self.pending[0].frame <= frame.index:
            self._apply(self.pending.pop(0), result, track_ids, confirmed)
        self.frames += 1
        self.last_index = frame.index
        if not self.following:
            keep = np.flatnonzero(confirmed)
            return TrackedFrame(frame, result.select(keep), track_ids[keep], candidates=len(result), indices=keep)
        found, object_ids, lost = [], [], []
        lost_boxes = dict(zip(update.lost_ids.tolist(), update.lost_boxes.tolist()))
        for object_id, track_id in self.objects.items():
            where = np.flatnonzero(track_ids == track_id) if track_id >= 0 else np.zeros(0, np.int64)
            if where.size:
                found.append(int(where[0]))
                object_ids.append(object_id)
            else:
                lost.append(LostObject(object_id, track_id, lost_boxes.get(track_id)))
        keep = np.array(found, np.int64)
        return TrackedFrame(frame, result.select(keep), track_ids[keep], np.array(object_ids, np.int64), lost,
                            len(result), keep)  # fmt: skip

    def _apply(self, prompt: FramePrompt, result: SegmentationResult, track_ids: np.ndarray,
               confirmed: np.ndarray) -> None:  # fmt: skip
        from ..predictor import SegmentedImage

        chosen = SegmentedImage(result, self._text_scorer).prompt(
            points=prompt.points, labels=prompt.labels, boxes=prompt.boxes, texts=prompt.texts
        )
        for index in chosen.indices.tolist():
            object_id = len(self.objects) + 1
            if index < 0:
                warnings.warn(f"a prompt on frame {prompt.frame} chose no mask: object {object_id} is reported lost",
                              stacklevel=2)  # fmt: skip
                self.objects[object_id] = -1
                continue
            track_id = self.tracker.adopt(index)
            track_ids[index], confirmed[index] = track_id, True
            self.objects[object_id] = track_id

    def finish(self) -> None:
        """Raise ``ValueError`` if some prompts were never applied because the video ended before their frame."""
        if self.pending:
            frames = ", ".join(str(p.frame) for p in self.pending)
            seen = "no frame" if self.last_index is None else f"frames 0-{self.last_index}"
            raise ValueError(f"prompt frame {frames} is beyond the end of the video ({seen}): those prompts were "
                             "not applied")  # fmt: skip


def _frames(source: Iterable[Frame | np.ndarray]) -> Iterator[Frame]:
    for i, item in enumerate(source):
        yield item if isinstance(item, Frame) else Frame(i, i / 25.0, np.asarray(item))


def track(
    source: str | os.PathLike[str] | Iterable[Frame | np.ndarray],
    model: FastSAM | None = None,
    *,
    detector: Detector | None = None,
    prompts: Sequence[FramePrompt] = (),
    config: TrackerConfig | None = None,
    text_scorer: TextScorer | None = None,
    batch_size: int = 1,
    max_frames: int | None = None,
    **settings: Any,
) -> Iterator[TrackedFrame]:
    """Track every object of a video, or follow the objects that ``prompts`` choose.

    Args:
        source: a video file, a stream URL, ``webcam:N``, or an iterable of :class:`Frame` or ``(H, W, 3)`` uint8
            RGB arrays.
        model: the FastSAM model (everything mode on every frame), run at ``conf = config.low_score`` so that the
            tracker's second, low-score stage has masks to look at.
        detector: instead of ``model``: a callable segmenting one frame (e.g. a stand-in for tests).
        prompts: objects to follow (see :class:`FramePrompt`); none: track everything.
        config: tracker settings (default :class:`TrackerConfig`).
        batch_size, settings: passed to the model (``imgsz``, ``iou``, ``max_det``, ``retina``).
        max_frames: stop after this many frames.

    Yields:
        One :class:`TrackedFrame` per decoded frame (live sources drop frames when the model falls behind: the
        tracker then moves its tracks across the gap).

    Raises:
        ValueError: a prompt outside the frame, or a prompt frame beyond the end of the video (raised after the
            last frame was yielded).
        VideoError: the source cannot be opened.
    """
    from .sources import VideoReader, is_live_source
    from .stream import FrameFeed, segment_frames

    if (model is None) == (detector is None):
        raise ValueError("give track() either a model or a detector")
    config = config or TrackerConfig()
    reader = None
    tracker: VideoTracker | None = None
    if isinstance(source, (str, os.PathLike)):
        reader = VideoReader(source)
        try:
            tracker = VideoTracker((reader.height, reader.width), config, prompts, text_scorer)  # checks prompts
        except BaseException:
            reader.close()
            raise
        frames: Iterable[Frame] = reader
        live = is_live_source(source)
    else:
        frames, live = _frames(source), False
    feed = FrameFeed(frames, capacity=max(2, 2 * batch_size), live=live, max_frames=max_frames)
    try:
        if detector is not None:
            pairs: Iterable[tuple[Frame, SegmentationResult]] = ((f, detector(f.image)) for f in feed)
        else:
            settings = {**settings, "conf": config.low_score}
            pairs = segment_frames(feed, model, batch_size, **settings)
        for frame, result in pairs:
            if tracker is None:
                tracker = VideoTracker(frame.image.shape[:2], config, prompts, text_scorer)
            yield tracker.step(frame, result)
    finally:
        feed.close()
        if reader is not None:
            reader.close()
    if tracker is not None:
        tracker.finish()
    elif prompts:
        raise ValueError("the video has no frames: the prompts were not applied")
