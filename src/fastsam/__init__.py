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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names and the module that defines each. They are imported on first use (PEP 562), so that
# ``import fastsam`` and ``fastsam --help`` do not pay for torch until something needs it.
_EXPORTS = {
    "MODEL_REGISTRY": "build",
    "build_fastsam": "build",
    "build_yolov8_seg": "build",
    "convert_checkpoint": "checkpoint",
    "load_state_dict_from_file": "checkpoint",
    "FastSAM": "engine",
    "load_model": "engine",
    "CheckpointError": "errors",
    "FastSAMError": "errors",
    "ImageLoadError": "errors",
    "WeightsNotFoundError": "errors",
    "load_image": "io",
    "FastSAMPredictor": "predictor",
    "SegmentedImage": "predictor",
    "SegmentationResult": "results",
}

if TYPE_CHECKING:
    from .build import MODEL_REGISTRY, build_fastsam, build_yolov8_seg
    from .checkpoint import convert_checkpoint, load_state_dict_from_file
    from .engine import FastSAM, load_model
    from .errors import CheckpointError, FastSAMError, ImageLoadError, WeightsNotFoundError
    from .io import load_image
    from .predictor import FastSAMPredictor, SegmentedImage
    from .results import SegmentationResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastsam' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


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
