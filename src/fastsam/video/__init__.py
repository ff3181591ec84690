"""Video files, network streams and webcams through FastSAM (extra ``video``: PyAV)."""

from .sources import VIDEO_EXTENSIONS, Frame, VideoReader, is_live_source, is_video_source
from .stream import FrameFeed, segment_frames
from .writer import VideoWriter

__all__ = [
    "VIDEO_EXTENSIONS",
    "Frame",
    "FrameFeed",
    "VideoReader",
    "VideoWriter",
    "is_live_source",
    "is_video_source",
    "segment_frames",
]
