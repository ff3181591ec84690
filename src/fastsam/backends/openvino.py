"""Run an exported FastSAM OpenVINO model (IR), behind the same call contract as ``YOLOv8Seg``.

An IR is a folder holding ``<name>.xml`` (the graph, with fastsam's metadata in its ``rt_info``) and
``<name>.bin`` (the weights), written by :func:`fastsam.export.export_openvino`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metadata import STRIDE, parse_metadata
from ..precision import PrecisionError, cpu_has_native_bf16, cpu_has_native_fp16
from .onnxruntime import BackendError

_INSTALL_HINT = "pip install 'fastsam[openvino]'"
RT_INFO_SECTION = "fastsam"
PERFORMANCE_HINTS = ("latency", "throughput")


def require_openvino() -> Any:
    """The ``openvino`` module, or :class:`BackendError` naming the extra to install."""
    try:
        import openvino
    except ImportError:
        raise BackendError(f"the openvino backend needs OpenVINO: {_INSTALL_HINT}") from None
    return openvino


def find_ir(path: str | os.PathLike) -> Path:
    """The ``.xml`` of an IR given as its folder or the file itself; checks that its ``.bin`` is beside it.

    Raises:
        BackendError: no such folder/file, no or several ``.xml`` in the folder, or the ``.bin`` is missing.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if not found:
            raise BackendError(f"{path} holds no OpenVINO model (.xml + .bin): export one with "
                               "'fastsam export MODEL --format openvino'")  # fmt: skip
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise BackendError(f"{path} holds several OpenVINO models ({names}): give the .xml file itself")
        path = found[0]
    elif not path.is_file():
        raise BackendError(f"OpenVINO model not found: {path}")
    if path.suffix.lower() != ".xml":
        raise BackendError(f"{path} is not an OpenVINO IR: expected a folder or an .xml file")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise BackendError(f"the OpenVINO model {path.name} has no weights file: {weights} is missing "
                           "(an IR is the .xml and the .bin together; copy both)")  # fmt: skip
    return path


def read_rt_metadata(model: Any) -> dict[str, Any]:
    """The parsed fastsam metadata an IR's ``rt_info`` holds (empty when the model is not fastsam's)."""
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    section = model.get_rt_info([RT_INFO_SECTION])
    entries = section.astype(dict) if hasattr(section, "astype") else dict(section)
    return parse_metadata({str(k): str(v.astype(str) if hasattr(v, "astype") else v) for k, v in entries.items()})


def inference_precision(precision: str, model_precision: str) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` (``f32``, ``bf16``, ``f16``) for a fastsam precision.

    ``auto`` is bf16 on CPUs with native bfloat16 (OpenVINO's own default there), else f32; an INT8 model's
    quantised layers run INT8 whatever the hint, the hint choosing the precision of the others.

    Raises:
        PrecisionError: int8 asked of a model that is not quantised, or bf16/fp16 on a CPU without them.
    """
    if precision == "int8" and model_precision != "int8":
        raise PrecisionError("int8 needs a quantised model: export one with 'fastsam export MODEL --format openvino "
                             "--int8 --data CALIBRATION_IMAGES'")  # fmt: skip
    if precision in ("auto", "int8"):
        return "bf16" if cpu_has_native_bf16() else "f32"
    if precision == "bf16":
        if not cpu_has_native_bf16():
            raise PrecisionError("bf16 asked for, but this CPU has no native bfloat16 (AVX512-BF16/AMX-BF16): "
                                 "use --precision fp32 (or auto)")  # fmt: skip
        return "bf16"
    if precision == "fp16":
        if not cpu_has_native_fp16():
            raise PrecisionError("fp16 asked for, but this CPU has no native float16 (AVX512-FP16): use bf16 or fp32")
        return "f16"
    if precision == "fp32":
        return "f32"
    raise PrecisionError(f"precision must be auto, fp32, bf16, fp16 or int8, got {precision!r}")


class OpenVINONetwork:
    """An exported FastSAM network run by OpenVINO on the CPU.

    Call it like :class:`fastsam.modeling.YOLOv8Seg`: ``(B, 3, H, W)`` float in [0, 1] -> ``(preds (B, 4 + nc + 32,
    A), protos (B, 32, H / 4, W / 4))``, float32, on the CPU. :meth:`start` / :meth:`wait` run one batch
    asynchronously (the GIL is released while it runs), so a caller can post-process one image while the next
    one is in the network.

    Args:
        path: an IR folder or ``.xml`` written by :func:`fastsam.export.export_openvino`.
        device: ``"cpu"``/``"auto"`` (OpenVINO's CPU plugin), or an OpenVINO device name (``"GPU"``, ``"NPU"``).
        precision: ``auto`` (bf16 on CPUs with native bfloat16, else fp32), ``fp32``, ``bf16``, ``fp16``, or
            ``int8`` (the model must be quantised; other layers then run as ``auto``).
        threads: inference threads (default: OpenVINO's choice, one per physical core).
        performance: ``"latency"`` (one request uses every core) or ``"throughput"`` (several streams).

    Attributes:
        nc, reg_max, num_masks: from the metadata. fixed_input_hw: ``(H, W)`` of a static model, else ``None``.
        precision: the fastsam precision it runs (``int8`` for a quantised model). metadata: parsed rt_info.
        compiled: the ``openvino.CompiledModel``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | torch.device | None = "cpu",
        precision: str = "auto",
        threads: int | None = None,
        performance: str = "latency",
    ) -> None:
        ov = require_openvino()
        import openvino.properties as props
        import openvino.properties.hint as hints

        if performance not in PERFORMANCE_HINTS:
            raise BackendError(f"performance must be 'latency' or 'throughput', got {performance!r}")
        self.path = find_ir(path)
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as err:  # OpenVINO raises RuntimeError with its parser's message
            raise BackendError(f"OpenVINO cannot read {self.path}: {err}") from None
        self.metadata: dict[str, Any] = read_rt_metadata(model)
        if self.metadata.get("format") != "fastsam-openvino":
            raise BackendError(f"{self.path} is an OpenVINO model, but not a FastSAM one (it has no fastsam "
                               "metadata): export it with 'fastsam export MODEL --format openvino'")  # fmt: skip
        inputs, outputs = model.inputs, model.outputs
        if len(inputs) != 1 or len(outputs) != 2 or inputs[0].get_partial_shape().rank.get_length() != 4:
            raise BackendError(f"{self.path} is not a FastSAM network: it should have one (B, 3, H, W) input and "
                               f"two outputs, not {len(inputs)} inputs and {len(outputs)} outputs")  # fmt: skip
        shape = inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self.fixed_batch: int | None = dims[0]
        self.fixed_input_hw: tuple[int, int] | None = (dims[2], dims[3]) if None not in dims[2:] else None
        self.nc: int = int(self.metadata.get("nc", 1))
        self.reg_max: int | None = self.metadata.get("reg_max")
        self.num_masks: int = int(self.metadata.get("num_masks", 32))
        self.stride: int = int(self.metadata.get("stride", STRIDE))
        model_precision = str(self.metadata.get("precision", "fp32"))
        self.inference_precision = inference_precision(precision, model_precision)
        self.precision = "int8" if model_precision == "int8" else {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[
            self.inference_precision
        ]
        name = "CPU" if device is None or str(device).lower() in ("cpu", "auto") else str(device).upper()
        if name.startswith("CUDA"):
            raise BackendError("the openvino backend does not run on CUDA devices: use --backend torch or onnxruntime")
        config: dict[str, Any] = {
            hints.inference_precision: getattr(ov.Type, self.inference_precision),
            hints.performance_mode: (hints.PerformanceMode.LATENCY if performance == "latency"
                                     else hints.PerformanceMode.THROUGHPUT),  # fmt: skip
        }
        if threads is not None:
            config[props.inference_num_threads] = int(threads)
        try:
            self.compiled = core.compile_model(model, name, config)
        except Exception as err:
            raise BackendError(f"OpenVINO cannot compile {self.path.name} for {name}: {err}") from None
        self.performance = performance
        self.device = torch.device("cpu")
        self._request = self.compiled.create_infer_request()

    def __repr__(self) -> str:
        shape = "dynamic" if self.fixed_input_hw is None else f"{self.fixed_input_hw[0]}x{self.fixed_input_hw[1]}"
        return f"OpenVINONetwork({str(self.path)!r}, input {shape}, precision={self.precision})"

    def optimal_requests(self) -> int:
        """How many infer requests OpenVINO wants in flight for its performance hint (1 for latency)."""
        import openvino.properties as props

        try:
            return max(1, int(self.compiled.get_property(props.optimal_number_of_infer_requests)))
        except Exception:  # noqa: BLE001 - an optional property: one request is always right
            return 1

    def check_input(self, x: torch.Tensor | np.ndarray) -> None:
        """Raise :class:`BackendError` unless ``x`` is a ``(B, 3, H, W)`` batch this model accepts."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise BackendError(f"expected a (B, 3, H, W) image batch, got shape {tuple(x.shape)}")
        hw = (int(x.shape[2]), int(x.shape[3]))
        if self.fixed_input_hw is not None and hw != self.fixed_input_hw:
            h, w = self.fixed_input_hw
            raise BackendError(f"{self.path.name} was exported for {h}x{w} inputs, got {hw[0]}x{hw[1]}: export "
                               "with --dynamic for other sizes")  # fmt: skip
        if hw[0] % self.stride or hw[1] % self.stride or min(hw) < self.stride:
            raise BackendError(f"input height and width must be positive multiples of {self.stride}, got {hw[0]}x{hw[1]}")

    def _as_input(self, x: torch.Tensor) -> np.ndarray:
        """A checked, contiguous float32 ``(B, 3, H, W)`` array of ``x``."""
        self.check_input(x)
        return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())

    def start(self, x: torch.Tensor) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        """Start one batch on a new infer request; the returned function waits and gives ``(preds, protos)``."""
        array = self._as_input(x)
        request = self.compiled.create_infer_request()
        request.start_async({0: array})

        def wait() -> tuple[torch.Tensor, torch.Tensor]:
            request.wait()
            return self._outputs(request)

        return wait

    def _outputs(self, request: Any) -> tuple[torch.Tensor, torch.Tensor]:
        preds = np.array(request.get_output_tensor(0).data, dtype=np.float32)
        protos = np.array(request.get_output_tensor(1).data, dtype=np.float32)
        return torch.from_numpy(preds), torch.from_numpy(protos)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` -> float32 ``(preds (B, 4 + nc + 32, A), protos (B, 32, H / 4, W / 4))`` on the CPU."""
        self._request.infer({0: self._as_input(x)})  # releases the GIL while it runs
        return self._outputs(self._request)
