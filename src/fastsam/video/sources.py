"""Video inputs: files, network streams (RTSP/HTTP/...) and webcams, decoded with PyAV.

A *source* is a string: a video file path (``clip.mp4``), a URL (``rtsp://camera/stream``,
``http://host/live.m3u8``) or ``webcam:N`` for the N-th camera of this machine (Linux
``/dev/videoN`` through video4linux2, macOS AVFoundation, Windows DirectShow by device name:
``webcam:Integrated Camera``). :class:`VideoReader` yields RGB uint8 ``(H, W, 3)`` frames.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoError

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}
)
"""Lower-case file suffixes that ``fastsam segment`` treats as videos (a GIF stays an image: its first frame)."""

STREAM_SCHEMES: tuple[str, ...] = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
"""URL prefixes read as network streams."""

WEBCAM_PREFIX = "webcam:"


def _install_hint() -> str:
    return 'video support needs PyAV: pip install "fastsam[video]"'


def import_av() -> Any:
    """Import PyAV, or raise :class:`VideoError` saying how to install it."""
    try:
        import av
    except ImportError as err:
        raise VideoError(_install_hint()) from err
    return av


def is_video_source(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a video: a ``webcam:N`` spec, a stream URL, or a file with a video suffix."""
    text = str(source)
    if text.startswith(WEBCAM_PREFIX) or text.lower().startswith(STREAM_SCHEMES):
        return True
    return Path(text).suffix.lower() in VIDEO_EXTENSIONS


def is_live_source(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is a webcam or network stream (no known end, frames may be dropped if we are slow)."""
    text = str(source)
    return text.startswith(WEBCAM_PREFIX) or text.lower().startswith(STREAM_SCHEMES)


def _webcam_open_args(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """``webcam:N`` -> (file, format, options) for ``av.open`` on this platform."""
    device = spec[len(WEBCAM_PREFIX) :].strip()
    if not device:
        raise VideoError(f"{spec!r}: name a camera, e.g. webcam:0")
    if sys.platform.startswith("linux"):
        return (f"/dev/video{device}" if device.isdigit() else device), "video4linux2", {}
    if sys.platform == "darwin":
        return device, "avfoundation", {"framerate": "30"}
    if sys.platform.startswith("win"):
        return f"video={device}", "dshow", {}
    raise VideoError(f"{spec!r}: webcams are supported on Linux, macOS and Windows, not {sys.platform}")


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: position in the stream, from 0.
        time: presentation time in seconds from the stream start (``index / fps`` when the stream has no timestamps).
        image: ``(H, W, 3)`` uint8 RGB.
    """

    index: int
    time: float
    image: np.ndarray


class VideoReader:
    """Decode the video frames of a file, a stream URL or a webcam as RGB arrays.

    Args:
        source: a path, a stream URL or ``webcam:N`` (see the module docstring).
        options: extra FFmpeg options for opening (e.g. ``{"rtsp_transport": "tcp"}``).
        timeout: seconds to wait for network reads before giving up (streams only).

    Attributes:
        fps: the stream's average frame rate (``Fraction``), 25 when the container does not say.
        width, height: frame size in pixels.
        frame_count: number of frames when the container knows it, else None (streams, some files).

    Raises:
        VideoError: the file does not exist, is not a video, or the stream/camera cannot be opened.
    """

    def __init__(self, source: str | os.PathLike[str], options: dict[str, str] | None = None, timeout: float = 10.0):
        av = import_av()
        self.source = str(source)
        file, fmt, opts = self.source, None, dict(options or {})
        if self.source.startswith(WEBCAM_PREFIX):
            file, fmt, cam_opts = _webcam_open_args(self.source)
            opts = {**cam_opts, **opts}
        elif not self.source.lower().startswith(STREAM_SCHEMES):
            path = Path(self.source)
            if not path.is_file():
                raise VideoError(f"video not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            self._container = av.open(
                file, mode="r", format=fmt, options=opts, timeout=timeout if is_live_source(self.source) else None
            )
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise VideoError(f"cannot open video {self.source!r}: {err}") from err
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.source!r} holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame- and slice-threaded decoding
        ctx = self._stream.codec_context
        self.width, self.height = int(ctx.width), int(ctx.height)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: Fraction = Fraction(rate) if rate else Fraction(25)
        self.frame_count: int | None = int(self._stream.frames) or None

    def __iter__(self) -> Iterator[Frame]:
        av = import_av()
        base = self._stream.time_base
        start = self._stream.start_time or 0
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                if frame.pts is not None and base is not None:
                    time = float((frame.pts - start) * base)
                else:
                    time = index / float(self.fps)
                yield Frame(index, time, frame.to_ndarray(format="rgb24"))
                index += 1
        except av.error.FFmpegError as err:
            if index == 0:
                raise VideoError(f"cannot decode video {self.source!r}: {err}") from err
            # A damaged tail or a dropped stream ends the video; the frames so far stand.
            print(f"warning: {self.source}: decoding stopped after {index} frame(s): {err}", file=sys.stderr)

    def close(self) -> None:
        """Release the file, stream or camera."""
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
