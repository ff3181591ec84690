"""Neural-network modules only (``nn.Module`` subclasses)."""

from .blocks import C2f, SPPF, Bottleneck, Concat, ConvBNAct, Upsample2x
from .head import DFL, Proto, SegmentHead
from .yolov8_seg import YOLOv8Seg

__all__ = [
    "C2f",
    "SPPF",
    "Bottleneck",
    "Concat",
    "ConvBNAct",
    "Upsample2x",
    "DFL",
    "Proto",
    "SegmentHead",
    "YOLOv8Seg",
]
