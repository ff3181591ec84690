"""Run an exported FastSAM ONNX model with ONNX Runtime, behind the same call contract as ``YOLOv8Seg``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FastSAMError
from ..metadata import STRIDE, parse_metadata

_INSTALL_HINT = "pip install 'fastsam[export]'"


class BackendError(FastSAMError):
    """An inference backend cannot be used: missing package, unreadable model, or inputs it cannot take."""


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendError(f"the onnxruntime backend needs ONNX Runtime: {_INSTALL_HINT}") from None
    return onnxruntime


def choose_providers(device: str | torch.device, available: list[str], providers: list[str] | None = None) -> list[str]:
    """Execution providers for ``device``, most preferred first.

    ``providers`` given: used as they are (each must be available). Else ``"tensorrt"`` gets TensorRT, CUDA, CPU;
    a CUDA device gets CUDA, CPU; ``"auto"`` is CUDA when ONNX Runtime has it; anything else gets CPU. Providers
    this ONNX Runtime lacks are left out (so CUDA falls back to CPU).
    """
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise BackendError(f"ONNX Runtime providers not available: {', '.join(missing)} "
                               f"(available here: {', '.join(available)})")  # fmt: skip
        return list(providers)
    name = str(device).lower()
    if name in ("tensorrt", "trt"):
        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    elif name == "auto" or torch.device(name).type == "cuda":
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        wanted = ["CPUExecutionProvider"]
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


class OnnxRuntimeNetwork:
    """An exported FastSAM network run by ONNX Runtime.

    Call it like :class:`fastsam.modeling.YOLOv8Seg`: ``(B, 3, H, W)`` float in [0, 1] -> ``(preds (B, 4 + nc + 32,
    A), protos (B, 32, H / 4, W / 4))``, both float32, on the input's device (the session itself exchanges CPU
    numpy arrays).

    Args:
        path: an ``.onnx`` file written by :func:`fastsam.export.export_onnx`.
        device: ``"cpu"``, ``"cuda"`` (CUDA provider, needs ``onnxruntime-gpu``), ``"tensorrt"`` (TensorRT provider
            first, then CUDA) or ``"auto"`` (CUDA if available); unavailable providers fall back to CPU.
        providers: explicit ONNX Runtime providers (overrides the choice from ``device``).
        threads: intra-op threads (default: ONNX Runtime's choice, one per physical core).

    Attributes:
        nc: number of classes. reg_max: DFL bins (``None`` if the file has no fastsam metadata).
        fixed_input_hw: ``(H, W)`` of a static model, ``None`` for dynamic height and width.
        fixed_batch: the static batch size, ``None`` for a dynamic batch.
        device: the torch device the session runs on (``cpu`` or ``cuda``).
        metadata: the parsed fastsam metadata of the file.
        session: the ``onnxruntime.InferenceSession``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        ort = _require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise BackendError(f"ONNX model not found: {self.path}")
        chosen = choose_providers(device, list(ort.get_available_providers()), providers)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=chosen)
        except Exception as err:  # onnxruntime raises its own exception classes (InvalidProtobuf, Fail, ...)
            raise BackendError(f"ONNX Runtime cannot load {self.path} as an ONNX model: {err}") from None
        self.providers: list[str] = list(self.session.get_providers())
        self.device = torch.device("cuda") if self.providers[0] != "CPUExecutionProvider" else torch.device("cpu")
        self.metadata: dict[str, Any] = parse_metadata(dict(self.session.get_modelmeta().custom_metadata_map))

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) != 2:
            raise BackendError(
                f"{self.path} is not a FastSAM network: it should have one (B, 3, H, W) input and two outputs "
                f"(preds, protos), not {len(inputs)} inputs and {len(outputs)} outputs"
            )
        self.input_name: str = inputs[0].name
        self.output_names: list[str] = [o.name for o in outputs]
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        b, _, h, w = inputs[0].shape
        self.fixed_batch: int | None = b if isinstance(b, int) else None
        self.fixed_input_hw: tuple[int, int] | None = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        channels = outputs[0].shape[1]
        num_masks = int(self.metadata.get("num_masks", 32))
        nc_from_shape = channels - 4 - num_masks if isinstance(channels, int) else None
        self.nc: int = int(self.metadata.get("nc", nc_from_shape if nc_from_shape is not None else 1))
        self.reg_max: int | None = self.metadata.get("reg_max")
        self.stride: int = int(self.metadata.get("stride", STRIDE))

    def __repr__(self) -> str:
        shape = "dynamic" if self.fixed_input_hw is None else f"{self.fixed_input_hw[0]}x{self.fixed_input_hw[1]}"
        return f"OnnxRuntimeNetwork({str(self.path)!r}, input {shape}, providers={self.providers})"

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`BackendError` unless ``x`` is a ``(B, 3, H, W)`` batch this model accepts."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise BackendError(f"expected a (B, 3, H, W) image batch, got shape {tuple(x.shape)}")
        hw = (int(x.shape[2]), int(x.shape[3]))
        if self.fixed_input_hw is not None and hw != self.fixed_input_hw:
            h, w = self.fixed_input_hw
            raise BackendError(
                f"{self.path.name} was exported for {h}x{w} inputs, got {hw[0]}x{hw[1]}: letterbox to {h}x{w} "
                f"(rect=False) or export with --dynamic"
            )
        if hw[0] % self.stride or hw[1] % self.stride or min(hw) < self.stride:
            raise BackendError(
                f"input height and width must be positive multiples of {self.stride}, got {hw[0]}x{hw[1]}"
            )

    def run_numpy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One session run on a ``(B, 3, H, W)`` array of the model's batch size: float32 ``(preds, protos)``."""
        preds, protos = self.session.run(self.output_names, {self.input_name: x.astype(self.input_dtype, copy=False)})
        return preds.astype(np.float32, copy=False), protos.astype(np.float32, copy=False)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` -> float32 ``(preds (B, 4 + nc + 32, A), protos (B, 32, H / 4, W / 4))`` on ``x.device``.

        A static-batch model given another batch size runs in chunks of its batch size (the last one padded).
        """
        self.check_input(x)
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        step = self.fixed_batch
        if step is None or array.shape[0] == step:
            preds, protos = self.run_numpy(array)
        else:
            parts = []
            for start in range(0, array.shape[0], step):
                chunk = array[start : start + step]
                n = chunk.shape[0]
                if n < step:
                    chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)])
                p, q = self.run_numpy(chunk)
                parts.append((p[:n], q[:n]))
            preds = np.concatenate([p for p, _ in parts])
            protos = np.concatenate([q for _, q in parts])
        return torch.from_numpy(preds).to(x.device), torch.from_numpy(protos).to(x.device)
