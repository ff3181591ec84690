"""Training and fine-tuning of FastSAM (YOLOv8-seg, one class): data, loss, assigner and training loop.

Importing this package needs the ``train`` extra only for :mod:`.trainer` (``pycocotools``, ``tqdm``,
``opencv-python``); :mod:`.loss` and :mod:`.assigner` need torch alone.
"""

from .assigner import TaskAlignedAssigner
from .loss import SegmentationLoss, bbox_ciou, bbox_iou, dfl_loss

__all__ = ["TaskAlignedAssigner", "SegmentationLoss", "bbox_ciou", "bbox_iou", "dfl_loss"]
