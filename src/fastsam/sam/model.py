"""A FastSAM network in the place of segment-anything's ``Sam`` module.

What SAM code touches on its model: ``.to(device)``, ``.eval()``, ``.device``, ``.image_encoder.img_size`` (the 1024
input side that ``ResizeLongestSide`` targets), ``.mask_threshold``, ``.image_format``, ``.parameters()`` and
calling it on a batch (``sam(batched_input, multimask_output)``, SAM's end-to-end batched path). :class:`SamModel`
provides these over a :class:`fastsam.FastSAM`, plus the everything-mode settings that ``set_image`` uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..engine import FastSAM, select_device
from ..errors import CheckpointError

SAM_INPUT_SIDE = 1024  # SAM's image encoder input: prompts for predict_torch / forward are in this frame


class SamModel:
    """FastSAM behind SAM's model interface (build one with :data:`fastsam.sam.sam_model_registry`).

    Args:
        weights: FastSAM weights: a name (``"FastSAM-x"``, ``"FastSAM-s"``) or a ``.pt`` / ``.safetensors`` /
            ``.onnx`` path; or a loaded :class:`FastSAM`.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a torch device; :meth:`to` moves the model.
        imgsz, conf, iou, max_det: FastSAM's everything-mode settings for ``set_image`` (network input side,
            confidence threshold, NMS IoU, most masks per image).
        precision: see :class:`FastSAM`.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        weights: str | os.PathLike | FastSAM = "FastSAM-x",
        device: str | torch.device | None = "auto",
        imgsz: int = 1024,
        conf: float = 0.4,
        iou: float = 0.9,
        max_det: int = 300,
        precision: str = "auto",
    ) -> None:
        self.settings = {"imgsz": int(imgsz), "conf": float(conf), "iou": float(iou), "max_det": int(max_det)}
        self.precision = precision
        self.image_encoder = SimpleNamespace(img_size=SAM_INPUT_SIDE)
        self.image_size = SAM_INPUT_SIDE  # SAM 2's name for it
        self.training = False
        if isinstance(weights, FastSAM):
            self.weights: str | os.PathLike | None = None
            self.fastsam = weights
        else:
            self.weights = weights
            self.fastsam = _load(weights, device, precision)

    @property
    def device(self) -> torch.device:
        return torch.device(self.fastsam.device)

    def to(self, device: str | torch.device | None = None, *args: Any, **kwargs: Any) -> SamModel:
        """Move to ``device`` (reloading the weights there); dtype arguments are ignored (see ``precision``)."""
        device = kwargs.pop("device", device)
        if device is None or isinstance(device, torch.dtype):
            return self
        target = select_device(device)
        current = self.device
        if target.type == current.type and (target.index is None or current.index in (None, target.index)):
            return self
        if self.weights is None:
            raise ValueError(f"this SamModel wraps a FastSAM already loaded on {current}; build it on {target} instead: "
                             f"SamModel(FastSAM(weights, device={str(target)!r}))")  # fmt: skip
        self.fastsam = _load(self.weights, target, self.precision)
        return self

    def eval(self) -> SamModel:
        return self

    def train(self, mode: bool = True) -> SamModel:
        if mode:
            raise ValueError("fastsam.sam is for inference; train FastSAM with `fastsam train`")
        return self

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The network's parameters (none for an ONNX Runtime / OpenVINO model)."""
        network = self.fastsam.network
        return network.parameters() if isinstance(network, torch.nn.Module) else iter(())

    def __call__(self, batched_input: list[dict[str, Any]], multimask_output: bool) -> list[dict[str, torch.Tensor]]:
        """SAM's end-to-end batched call.

        Args:
            batched_input: one dict per image: ``"image"`` ``(3, h, w)`` tensor already resized to a longest side
                of 1024 (0-255), ``"original_size"`` ``(H, W)``, and optional prompts in that resized frame:
                ``"point_coords"`` ``(B, N, 2)``, ``"point_labels"`` ``(B, N)``, ``"boxes"`` ``(B, 4)``,
                ``"mask_inputs"`` ``(B, 1, 256, 256)``.

        Returns:
            One dict per image: ``"masks"`` ``(B, C, H, W)`` bool, ``"iou_predictions"`` ``(B, C)``,
            ``"low_res_logits"`` ``(B, C, 256, 256)``.
        """
        from .predictor import SamPredictor

        outputs = []
        for record in batched_input:
            if "image" not in record or "original_size" not in record:
                raise ValueError("each batched_input entry needs 'image' (3, h, w) and 'original_size' (H, W)")
            predictor = SamPredictor(self)
            predictor.set_torch_image(torch.as_tensor(record["image"])[None], tuple(record["original_size"]))
            masks, scores, low = predictor.predict_torch(
                record.get("point_coords"), record.get("point_labels"), record.get("boxes"),
                record.get("mask_inputs"), multimask_output,
            )  # fmt: skip
            outputs.append({"masks": masks, "iou_predictions": scores, "low_res_logits": low})
        return outputs


def _load(weights: str | os.PathLike, device: str | torch.device | None, precision: str) -> FastSAM:
    try:
        return FastSAM(weights, device=device, precision=precision)
    except CheckpointError as err:
        raise CheckpointError(f"{err} (fastsam.sam runs FastSAM weights, not segment-anything's: pass "
                              "checkpoint='FastSAM-x.pt', or None for the named FastSAM model)") from err  # fmt: skip


def as_sam_model(model: SamModel | FastSAM | str | os.PathLike) -> SamModel:
    """A :class:`SamModel` from what a predictor was given (a SamModel, a FastSAM, or weights)."""
    if isinstance(model, SamModel):
        return model
    if isinstance(model, (FastSAM, str, os.PathLike)):
        return SamModel(model)
    raise TypeError(f"expected a model from fastsam.sam.sam_model_registry, a FastSAM or weights, got {type(model).__name__}")


def as_rgb_array(image: Any) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 array from an array or a PIL image; a one-line error otherwise."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"the image must be (H, W, 3) in HWC order, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"the image must be uint8 (0-255), got {array.dtype}")
    return np.ascontiguousarray(array)
