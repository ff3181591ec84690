"""Checks of inference settings that do not depend on any image (no heavy imports: the CLI runs them up front)."""

from __future__ import annotations


def check_thresholds(conf: float, iou: float, max_det: int) -> None:
    """Raise ``ValueError`` unless ``conf`` and ``iou`` are in [0, 1] and ``max_det`` >= 1."""
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou must be in [0, 1], got {iou}")
    if max_det < 1:
        raise ValueError(f"max_det must be at least 1, got {max_det}")


def check_imgsz(imgsz: int) -> None:
    """Raise ``ValueError`` unless ``imgsz`` (the network input's longest side, pixels) is a positive multiple of 32."""
    if imgsz < 32 or imgsz % 32:
        nearest = max(32, 32 * round(imgsz / 32))
        raise ValueError(f"imgsz must be a positive multiple of 32, got {imgsz} (try {nearest})")
