"""Writing RGB frames to a video file with PyAV."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoError
from .sources import import_av

# Preferred encoders by container suffix, best first; the first one this FFmpeg build has is used.
_CODECS: dict[str, tuple[str, ...]] = {
    ".webm": ("libvpx-vp9", "libvpx"),
    ".avi": ("mpeg4", "mjpeg"),
}
_DEFAULT_CODECS = ("libx264", "h264", "libopenh264", "mpeg4")


def choose_codec(path: str | os.PathLike[str], available: set[str] | frozenset[str]) -> str:
    """The encoder for ``path``'s container among ``available`` FFmpeg codec names.

    Raises:
        VideoError: none of the suitable encoders is available.
    """
    wanted = _CODECS.get(Path(path).suffix.lower(), _DEFAULT_CODECS)
    for codec in wanted:
        if codec in available:
            return codec
    raise VideoError(f"no encoder for {Path(path).name}: this FFmpeg build has none of {', '.join(wanted)}; write .mp4 instead")


class VideoWriter:
    """Encode ``(H, W, 3)`` uint8 RGB frames into a video file at a constant frame rate.

    Every written frame becomes one output frame (frame ``i`` at time ``i / fps``). H.264 in MP4/MOV/MKV
    (``yuv420p``, or ``yuv444p`` when a side is odd, so the size is kept exactly), VP9 in WebM, MPEG-4 in AVI.

    Args:
        path: output file; its suffix picks the container. Parent folders are created.
        fps: frames per second.
        width, height: frame size in pixels; every frame must have it.
        crf: quality for H.264/VP9 (lower is better, 18-28 typical).

    Raises:
        VideoError: the file cannot be created or no encoder fits.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | Fraction, width: int, height: int, crf: int = 23):
        av = import_av()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height = int(width), int(height)
        self.frames = 0
        rate = Fraction(fps).limit_denominator(1001000) if fps else Fraction(25)
        codec = choose_codec(self.path, frozenset(av.codecs_available))
        try:
            self._container = av.open(str(self.path), mode="w")
            self._stream: Any = self._container.add_stream(codec, rate=rate)
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise VideoError(f"cannot write video {self.path}: {err}") from err
        self._stream.width, self._stream.height = self.width, self.height
        odd = self.width % 2 or self.height % 2
        if codec in ("libx264", "h264"):
            self._stream.pix_fmt = "yuv444p" if odd else "yuv420p"
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        elif codec.startswith("libvpx"):
            self._stream.pix_fmt = "yuv444p" if odd else "yuv420p"
            self._stream.options = {"crf": str(crf + 8), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        elif codec == "mjpeg":
            self._stream.pix_fmt = "yuvj444p"
        else:
            self._stream.pix_fmt = "yuv420p"
            self._stream.bit_rate = max(1_000_000, self.width * self.height * 4)
        self._stream.time_base = Fraction(1, 1) / rate
        self._av = av

    def write(self, image: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame of the writer's size."""
        image = np.ascontiguousarray(image)
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"frame must be ({self.height}, {self.width}, 3) uint8 like the first frame; got {image.shape} {image.dtype}"
            )
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.frames
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except self._av.error.FFmpegError as err:
            raise VideoError(f"cannot encode frame {self.frames} of {self.path}: {err}") from err
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (safe to call twice)."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
