"""Masks as Label Studio BrushLabels regions, in Label Studio's own brush RLE encoded by its own library.

The encoder is ``mask2rle`` of ``label_studio_sdk.converter.brush`` (label-studio-sdk, installed with Label Studio
itself) or, where that is absent, of ``label_studio_converter.brush`` (label-studio-converter, the ``labelstudio``
extra): the same code in both. It encodes the mask as an RGBA image whose four channels hold 0 or 255.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["brush_encoder", "brush_region", "decode_brush"]

_INSTALL = "pip install 'fastsam[labelstudio]' (label-studio-converter) or pip install label-studio-sdk"


def _brush_module() -> Any:
    try:
        from label_studio_sdk.converter import brush
    except ImportError:
        try:
            from label_studio_converter import brush
        except ImportError:
            raise ImportError(f"the Label Studio backend needs Label Studio's brush encoder: {_INSTALL}") from None
    return brush


def brush_encoder() -> Callable[[np.ndarray], list[int]]:
    """Label Studio's ``mask2rle`` (imported now: call it at start-up to fail early when it is missing)."""
    return _brush_module().mask2rle


def decode_brush(rle: list[int], height: int, width: int) -> np.ndarray:
    """A brush RLE back to an ``(H, W)`` bool mask (the alpha channel of the RGBA image), with Label Studio's
    decoder."""
    flat = np.asarray(_brush_module().decode_rle(rle), dtype=np.uint8)
    if flat.size != height * width * 4:
        raise ValueError(f"the brush RLE holds {flat.size} values, not {height}x{width}x4")
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def brush_region(
    mask: np.ndarray,
    label: str,
    from_name: str,
    to_name: str,
    score: float | None = None,
    encoder: Callable[[np.ndarray], list[int]] | None = None,
) -> dict[str, Any]:
    """One BrushLabels region for an ``(H, W)`` bool mask, as Label Studio stores it in a prediction.

    Returns:
        ``{"id", "from_name", "to_name", "type": "brushlabels", "original_width", "original_height",
        "image_rotation": 0, "value": {"format": "rle", "rle": [...], "brushlabels": [label]}, "score"?}``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a brush region needs one (H, W) mask, got shape {mask.shape}")
    height, width = mask.shape
    rle = (encoder or brush_encoder())(np.where(mask.astype(bool), 255, 0).astype(np.uint8))
    region: dict[str, Any] = {
        "id": uuid.uuid4().hex[:10],
        "from_name": from_name,
        "to_name": to_name,
        "type": "brushlabels",
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": [int(v) for v in rle], "brushlabels": [label]},
    }
    if score is not None:
        region["score"] = round(float(score), 6)
    return region
