"""Inference backends other than PyTorch that run an exported network with the ``YOLOv8Seg`` call contract.

``OnnxRuntimeNetwork`` needs the ``export`` extra (``pip install 'fastsam[export]'``), ``OpenVINONetwork`` the
``openvino`` extra; importing this package needs neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .onnxruntime import BackendError, OnnxRuntimeNetwork, choose_providers
from .openvino import OpenVINONetwork


def detect_backend(model: Any) -> str:
    """The backend for a model argument: ``onnxruntime`` for ``.onnx`` files, ``openvino`` for an ``.xml`` or a
    folder holding one, ``torch`` for everything else (names, ``.pt``, ``.safetensors``, modules)."""
    if isinstance(model, OnnxRuntimeNetwork):
        return "onnxruntime"
    if isinstance(model, OpenVINONetwork):
        return "openvino"
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix.lower() == ".onnx":
            return "onnxruntime"
        if path.suffix.lower() == ".xml" or path.is_dir():
            return "openvino"
    return "torch"


__all__ = ["BackendError", "OnnxRuntimeNetwork", "OpenVINONetwork", "choose_providers", "detect_backend"]
