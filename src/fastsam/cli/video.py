"""``fastsam segment`` on videos, network streams and webcams: an overlay video and per-frame JSON lines."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .frames import write_behind

VIDEO_FORMATS = ("overlay", "json")


def output_paths(args: argparse.Namespace, source: str, several: bool, formats: list[str]) -> dict[str, Path]:
    """Where one video's outputs go: ``{"overlay": video path, "json": JSON-lines path}`` for the chosen formats.

    ``--out`` naming a video file (``out.mp4``) is used as is (with ``out.jsonl`` beside it) when there is a
    single video; otherwise ``--out`` is a folder receiving ``<name>.mp4`` and ``<name>.jsonl``.
    """
    from ..video import VIDEO_EXTENSIONS

    out: Path = args.out
    if not several and out.suffix.lower() in VIDEO_EXTENSIONS:
        video, lines = out, out.with_suffix(".jsonl")
    else:
        name = _source_name(source)
        video, lines = out / f"{name}.mp4", out / f"{name}.jsonl"
    chosen = {"overlay": video, "json": lines}
    return {f: chosen[f] for f in formats if f in chosen}


def _source_name(source: str) -> str:
    """A file-name stem for a source: the file's stem, ``webcam0``, or the URL's host and path made safe."""
    from ..video.sources import STREAM_SCHEMES, VIDEO_EXTENSIONS, WEBCAM_PREFIX

    if source.startswith(WEBCAM_PREFIX):
        text = "webcam" + source[len(WEBCAM_PREFIX) :]
    elif source.lower().startswith(STREAM_SCHEMES):
        text = source.split("://", 1)[1].split("?", 1)[0]
        if Path(text).suffix.lower() in VIDEO_EXTENSIONS:
            text = text[: -len(Path(text).suffix)]
    else:
        return Path(source).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "stream"


def run_videos(args: argparse.Namespace, sources: list[str], model: Any, prompt: Any, formats: list[str]) -> int:
    """Segment each video source into ``formats`` (overlay, json); returns the number that failed (each failure
    is reported, not raised)."""
    from ..errors import VideoError

    unsupported = [f for f in formats if f not in VIDEO_FORMATS]
    if unsupported:
        print(f"warning: --format {','.join(unsupported)} is for images; videos get overlay and json", file=sys.stderr)
    failed = 0
    for source in sources:
        outputs = output_paths(args, source, len(sources) > 1, formats)
        if args.skip_existing and outputs and all(p.exists() for p in outputs.values()):
            print(f"skipped {source}: outputs already exist", file=sys.stderr)
            continue
        try:
            _segment_video(args, source, outputs, model, prompt)
        except (VideoError, ValueError) as err:  # ValueError: e.g. a prompt outside the frame
            failed += 1
            print(f"error: {source}: {err}" if source not in str(err) else f"error: {err}", file=sys.stderr)
    return failed


def _segment_video(args: argparse.Namespace, source: str, outputs: dict[str, Path], model: Any, prompt: Any) -> None:
    from tqdm import tqdm

    from ..video import (
        FrameFeed,
        VideoReader,
        VideoWriter,
        is_live_source,
        segment_frames,
    )

    live = is_live_source(source)
    settings = {"imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "retina": args.retina}
    reader = VideoReader(source)
    feed = FrameFeed(reader, capacity=2 * args.batch_size, live=live, max_frames=args.max_frames)
    total = reader.frame_count if args.max_frames is None else min(reader.frame_count or args.max_frames, args.max_frames)
    bar = tqdm(total=total, unit="frame", disable=args.quiet, file=sys.stderr, desc=_source_name(source))
    writer = VideoWriter(outputs["overlay"], reader.fps, reader.width, reader.height) if "overlay" in outputs else None
    lines = None
    if "json" in outputs:
        outputs["json"].parent.mkdir(parents=True, exist_ok=True)
        lines = open(outputs["json"], "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
    preview = _Preview(source) if args.show else None
    counts = {"frames": 0, "masks": 0}
    start = time.perf_counter()

    def counted():
        for frame, result in segment_frames(feed, model, args.batch_size, prompt, **settings):
            counts["frames"] += 1
            counts["masks"] += len(result)
            yield frame, result

    # Rendering and encoding run in one background thread, in frame order, while the network works.
    try:
        interrupted = write_behind(counted(), lambda item: _emit(*item, args, writer, lines, preview),
                                   2 * args.batch_size, bar, "fastsam-video-write")  # fmt: skip
    finally:
        feed.close()
        reader.close()
        bar.close()
        if writer is not None:
            writer.close()
        if lines is not None:
            lines.close()
        if preview is not None:
            preview.close()
    elapsed = time.perf_counter() - start
    frames, masks = counts["frames"], counts["masks"]
    note = f", {feed.dropped} dropped to keep up with the live source" if feed.dropped else ""
    note += ", stopped by the user" if interrupted else ""
    written = " and ".join(str(p) for p in outputs.values()) or "nothing (no --format for videos)"
    print(
        f"{source}: {frames} frame(s), {masks} mask(s) in {elapsed:.1f} s ({frames / max(elapsed, 1e-9):.2f} FPS)"
        f"{note}; wrote {written}",
        file=sys.stderr,
    )
    if interrupted and not live:
        raise KeyboardInterrupt


def _emit(frame: Any, result: Any, args: argparse.Namespace, writer: Any, lines: Any, preview: Any) -> None:
    """Render and write one frame's outputs (runs in the writer thread)."""
    if writer is not None or preview is not None:
        image = _render(frame.image, result, args)
        if writer is not None:
            writer.write(image)
        if preview is not None:
            preview.show(image)
    if lines is not None:
        record = result.to_sa1b()
        record = {"frame": frame.index, "time": round(frame.time, 6), **record}
        lines.write(json.dumps(record) + "\n")


def _render(image: np.ndarray, result: Any, args: argparse.Namespace) -> np.ndarray:
    """The overlay of one frame. Prompt results keep one colour per prompt across frames."""
    from ..visualize import mask_colors, overlay

    colors = None
    if result.prompt_ids is not None and len(result):
        colors = mask_colors(int(result.prompt_ids.max()) + 1, random_colors=args.random_colors)[result.prompt_ids]
    return overlay(
        image, result.masks, colors=colors, alpha=args.alpha, contours=args.contours, random_colors=args.random_colors
    )


class _Preview:
    """A live preview window (OpenCV's highgui); closing it with q or Esc stops nothing but the preview."""

    def __init__(self, title: str) -> None:
        try:
            import cv2
        except ImportError as err:
            from ..errors import VideoError

            raise VideoError('--show needs OpenCV with a GUI: pip install opencv-python (or drop --show)') from err
        self._cv2, self._title, self._open = cv2, f"fastsam: {title}", True

    def show(self, image: np.ndarray) -> None:
        if not self._open:
            return
        try:
            self._cv2.imshow(self._title, image[:, :, ::-1])
        except self._cv2.error as err:  # a headless OpenCV build
            from ..errors import VideoError

            self._open = False
            raise VideoError(f"--show: OpenCV cannot open a window here ({err}); drop --show") from err
        if self._cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._cv2.destroyWindow(self._title)
