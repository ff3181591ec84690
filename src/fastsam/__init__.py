"""FastSAM: real-time segment anything.

Quick start::

    from fastsam import FastSAM

    model = FastSAM("FastSAM-x")            # or "FastSAM-s", or a path to a .pt / .safetensors file
    [result] = model.predict("photo.jpg")   # everything mode
    result.masks    # (N, H, W) bool at the photo's resolution
    result.boxes    # (N, 4) xyxy pixels of the photo
    result.scores   # (N,)
    result.save_json("photo.json")          # SA-1B schema, COCO RLE masks
    result.save_overlay("photo.png")
"""

from .build import MODEL_REGISTRY, build_fastsam, build_yolov8_seg
from .checkpoint import convert_checkpoint, load_state_dict_from_file
from .engine import FastSAM, load_model
from .errors import CheckpointError, FastSAMError, ImageLoadError, WeightsNotFoundError
from .io import load_image
from .predictor import FastSAMPredictor, SegmentedImage
from .results import SegmentationResult

__version__ = "0.1.0"

__all__ = [
    "MODEL_REGISTRY",
    "CheckpointError",
    "FastSAM",
    "FastSAMError",
    "FastSAMPredictor",
    "ImageLoadError",
    "SegmentationResult",
    "SegmentedImage",
    "WeightsNotFoundError",
    "build_fastsam",
    "build_yolov8_seg",
    "convert_checkpoint",
    "load_image",
    "load_model",
    "load_state_dict_from_file",
]
