"""Build a TensorRT engine from an exported ONNX file (NVIDIA GPUs only).

The engine is specific to the GPU model and the TensorRT version that built it. Next to it a ``.json`` file
keeps the ONNX metadata (scale, nc, imgsz, ...) and the optimisation profile, for runtimes that load the engine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .onnx import INPUT_NAME, ExportError, read_metadata

Shape = tuple[int, int, int, int]


class TensorRTUnavailableError(ExportError):
    """TensorRT or a CUDA GPU is not available here."""


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailableError` if it or a CUDA GPU is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailableError(
            "building a TensorRT engine needs NVIDIA TensorRT's Python package and a CUDA GPU: "
            "pip install tensorrt (or use --format onnx and run it with ONNX Runtime)"
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailableError(
            "building a TensorRT engine needs a CUDA GPU, and none is available here "
            "(use --format onnx and run it with ONNX Runtime on CPU)"
        )
    return trt


def _default_profile(
    input_shape: list[int], imgsz: int, batch: int
) -> tuple[Shape, Shape, Shape]:
    """min/opt/max input shapes for dynamic dimensions: batch 1..batch, sides 32..imgsz, optimised at the top."""
    b, c, h, w = input_shape
    low = (b if b > 0 else 1, c, h if h > 0 else 32, w if w > 0 else 32)
    top = (b if b > 0 else batch, c, h if h > 0 else imgsz, w if w > 0 else imgsz)
    return low, top, top


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike | None = None,
    half: bool = True,
    workspace_gb: float = 4,
    min_shape: Shape | None = None,
    opt_shape: Shape | None = None,
    max_shape: Shape | None = None,
    verbose: bool = False,
) -> Path:
    """Parse an ONNX file and serialise a TensorRT engine for this GPU.

    Args:
        onnx_path: a file written by :func:`fastsam.export.export_onnx` (other ONNX files work when shapes are given).
        engine_path: output file (default: ``onnx_path`` with ``.engine``).
        half: allow float16 kernels (when the GPU has fast float16).
        workspace_gb: scratch memory TensorRT may use while choosing kernels, in GiB.
        min_shape, opt_shape, max_shape: the optimisation profile ``(B, 3, H, W)`` of a dynamic model (default:
            batch 1 to the exported batch, sides 32 to the exported imgsz, tuned for the largest). Ignored for a
            static model.
        verbose: TensorRT's verbose log.

    Returns:
        The engine path.

    Raises:
        TensorRTUnavailableError: TensorRT is not installed or there is no CUDA GPU.
        ExportError: the ONNX file is missing or TensorRT cannot parse or build it.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file not found: {onnx_path}")
    trt = require_tensorrt()
    engine_path = Path(engine_path) if engine_path is not None else onnx_path.with_suffix(".engine")
    try:
        meta = read_metadata(onnx_path)
    except ExportError:
        meta = {}

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode (and deprecated) from 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    workspace = int(workspace_gb * (1 << 30))
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace
    # platform_has_fast_fp16 is deprecated since TensorRT 10.5 and gone later: assume fast float16 when absent.
    if half and getattr(builder, "platform_has_fast_fp16", True) and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    image_input = next((t for t in inputs if t.name == INPUT_NAME), inputs[0])
    shape = list(image_input.shape)
    profile_shapes = None
    if any(d < 0 for d in shape):
        default = _default_profile(shape, int(meta.get("imgsz", 1024)), int(meta.get("batch", 1)))
        profile_shapes = tuple(s if s is not None else d for s, d in zip((min_shape, opt_shape, max_shape), default))
        profile = builder.create_optimization_profile()
        profile.set_shape(image_input.name, *profile_shapes)
        config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (run with verbose=True for its log)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    sidecar = dict(meta, tensorrt_version=trt.__version__, engine_fp16=bool(half), input_shape=shape,
                   profile=[list(s) for s in profile_shapes] if profile_shapes else None)  # fmt: skip
    engine_path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
    return engine_path
