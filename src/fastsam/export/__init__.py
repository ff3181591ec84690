"""Export the network for other runtimes: ONNX (:func:`export_onnx`) and TensorRT engines (:func:`build_engine`).

Needs the ``export`` extra (``pip install 'fastsam[export]'``); TensorRT also needs NVIDIA's ``tensorrt`` package
and a CUDA GPU.
"""

from .onnx import ExportError, export_onnx, parse_metadata, read_metadata
from .tensorrt import TensorRTUnavailableError, build_engine, require_tensorrt

__all__ = ["ExportError", "TensorRTUnavailableError", "build_engine", "export_onnx", "parse_metadata", "read_metadata",
           "require_tensorrt"]
