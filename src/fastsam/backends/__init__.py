"""Inference backends other than PyTorch that run an exported network with the ``YOLOv8Seg`` call contract.

``OnnxRuntimeNetwork`` needs the ``export`` extra (``pip install 'fastsam[export]'``); importing this package does not.
"""

from .onnxruntime import BackendError, OnnxRuntimeNetwork, choose_providers

__all__ = ["BackendError", "OnnxRuntimeNetwork", "choose_providers"]
