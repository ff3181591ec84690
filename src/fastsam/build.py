"""Builders for the YOLOv8-seg variants and the official FastSAM models."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import CheckpointError
from .modeling import YOLOv8Seg


@dataclass(frozen=True)
class Scale:
    """A YOLOv8 compound-scaling setting: depth and width multipliers and a channel cap."""

    depth: float
    width: float
    max_channels: int

    def channels(self) -> tuple[int, int, int, int, int]:
        """Widths of the five stages, from the base widths 64, 128, 256, 512, 1024."""
        return tuple(self._width(c) for c in (64, 128, 256, 512, 1024))  # type: ignore[return-value]

    def depths(self) -> tuple[int, int]:
        """Bottleneck counts of the short (3) and long (6) C2f blocks."""
        return (max(round(3 * self.depth), 1), max(round(6 * self.depth), 1))

    def proto_channels(self) -> int:
        return self._width(256)

    def _width(self, base: int) -> int:
        return int(math.ceil(min(base, self.max_channels) * self.width / 8) * 8)


SCALES: dict[str, Scale] = {
    "n": Scale(0.33, 0.25, 1024),
    "s": Scale(0.33, 0.50, 1024),
    "m": Scale(0.67, 0.75, 768),
    "l": Scale(1.00, 1.00, 512),
    "x": Scale(1.00, 1.25, 512),
}


def build_yolov8_seg(scale: str, nc: int = 1, reg_max: int = 16) -> YOLOv8Seg:
    """Build an untrained YOLOv8-seg network at ``scale`` (one of ``n s m l x``)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    spec = SCALES[scale]
    return YOLOv8Seg(spec.channels(), spec.depths(), nc=nc, reg_max=reg_max, proto_channels=spec.proto_channels())


@dataclass(frozen=True)
class ModelSpec:
    """An official FastSAM model: its network shape and where its weights are published."""

    scale: str
    reg_max: int
    filename: str
    url: str
    size_bytes: int | None  # published file size, checked after download (None: not recorded)
    train_imgsz: int = 1024


_RELEASES = "https://github.com/ultralytics/assets/releases/download/v8.4.0"

# The registry of named models (``--model FastSAM-x``).
MODEL_REGISTRY: dict[str, ModelSpec] = {
    "FastSAM-s": ModelSpec("s", 16, "FastSAM-s.pt", f"{_RELEASES}/FastSAM-s.pt", None),
    "FastSAM-x": ModelSpec("x", 26, "FastSAM-x.pt", f"{_RELEASES}/FastSAM-x.pt", 144_943_063),
}


def build_fastsam(name: str) -> YOLOv8Seg:
    """Build the untrained network of a named FastSAM model (``FastSAM-s`` or ``FastSAM-x``)."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_REGISTRY)}")
    spec = MODEL_REGISTRY[name]
    return build_yolov8_seg(spec.scale, nc=1, reg_max=spec.reg_max)


def infer_architecture(state_dict: dict[str, torch.Tensor]) -> tuple[str, int, int]:
    """Read ``(scale, nc, reg_max)`` from a YOLOv8-seg state dict.

    Raises:
        CheckpointError: if the keys are not those of a YOLOv8-seg network or match no known scale.
    """
    needed = ("model.0.conv.weight", "model.22.dfl.conv.weight", "model.22.cv3.0.2.weight", "model.22.proto.cv3.conv.weight")
    missing = [k for k in needed if k not in state_dict]
    if missing:
        raise CheckpointError(
            f"not a YOLOv8-seg (FastSAM) state dict: missing {', '.join(missing)}. "
            "FastSAM checkpoints are segmentation models with 23 layers (model.0 ... model.22)."
        )
    reg_max = int(state_dict["model.22.dfl.conv.weight"].shape[1])
    nc = int(state_dict["model.22.cv3.0.2.weight"].shape[0])
    stem = int(state_dict["model.0.conv.weight"].shape[0])
    n_bottlenecks = len({k.split(".")[3] for k in state_dict if k.startswith("model.2.m.")})
    for name, spec in SCALES.items():
        if spec.channels()[0] == stem and spec.depths()[0] == n_bottlenecks:
            return name, nc, reg_max
    raise CheckpointError(
        f"state dict matches no YOLOv8 scale (stem width {stem}, {n_bottlenecks} bottlenecks in layer 2)"
    )


def build_model_from_state_dict(state_dict: dict[str, torch.Tensor]) -> YOLOv8Seg:
    """Build the matching network, load ``state_dict`` strictly (cast to float32) and return it in eval mode."""
    scale, nc, reg_max = infer_architecture(state_dict)
    model = build_yolov8_seg(scale, nc=nc, reg_max=reg_max)
    tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in state_dict.items()}
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not fit a YOLOv8-seg-{scale} network: {err}") from None
    return model.eval()
