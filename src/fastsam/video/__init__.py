"""Video files, network streams and webcams through FastSAM (extra ``video``: PyAV), and tracking through them."""

from .follow import (
    FramePrompt,
    LostObject,
    TrackedFrame,
    VideoTracker,
    load_prompts,
    track,
)
from .sources import (
    VIDEO_EXTENSIONS,
    Frame,
    VideoReader,
    is_live_source,
    is_video_source,
)
from .stream import FrameFeed, segment_frames
from .tracking import MaskTracker, TrackerConfig, TrackUpdate
from .writer import VideoWriter

__all__ = [
    "VIDEO_EXTENSIONS",
    "Frame",
    "FrameFeed",
    "FramePrompt",
    "LostObject",
    "MaskTracker",
    "TrackUpdate",
    "TrackedFrame",
    "TrackerConfig",
    "VideoReader",
    "VideoTracker",
    "VideoWriter",
    "is_live_source",
    "is_video_source",
    "load_prompts",
    "segment_frames",
    "track",
]
