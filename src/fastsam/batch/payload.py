"""Shipping a model to workers: the weights travel as safetensors bytes, so workers need no access to the file.

The driver reads the checkpoint once (a named model is downloaded there) and the bytes go to every worker through
Ray's object store; workers rebuild the network exactly as :func:`fastsam.engine.load_model` does (BatchNorm
folded). ONNX models are not converted: their path is shipped and must be readable on every node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..engine import FastSAM


@dataclass(frozen=True)
class ModelPayload:
    """A model ready to ship: ``weights`` (a safetensors-serialised state dict) or ``path`` (an ONNX file)."""

    weights: bytes | None = None
    path: str | None = None


def pack_model(model: str | os.PathLike[str]) -> ModelPayload:
    """Read a named model, ``.pt`` or ``.safetensors`` file into a payload (an ``.onnx`` file or an OpenVINO folder
    is kept as a path).

    Raises:
        WeightsNotFoundError, CheckpointError: the weights cannot be found or read.
    """
    text = os.fspath(model)
    if text.lower().endswith((".onnx", ".xml")) or os.path.isdir(text):  # ONNX file, OpenVINO folder
        return ModelPayload(path=os.path.abspath(text))
    from safetensors.torch import save

    from ..checkpoint import load_state_dict_from_file
    from ..hub import resolve_weights

    state_dict, _ = load_state_dict_from_file(resolve_weights(text))
    return ModelPayload(weights=save({k: v.detach().contiguous().clone() for k, v in state_dict.items()}))


def unpack_model(
    payload: ModelPayload,
    device: str | None = "auto",
    half: bool | None = None,
    backend: str = "auto",
    compile: bool | str = False,
    precision: str = "auto",
) -> FastSAM:
    """Build the :class:`FastSAM` a payload describes, on ``device`` (``"auto"``: CUDA if this worker has one).

    ``backend`` applies to a shipped path (an ONNX file or OpenVINO folder); shipped weights always run on torch, compiled with
    ``torch.compile`` when ``compile`` is set (see :class:`FastSAM`).
    """
    options: dict = {"compile": compile} if compile else {}
    options["precision"] = precision
    if payload.path is not None:
        return FastSAM(payload.path, device=device, half=half, backend=backend, **options)
    if payload.weights is None:
        raise ValueError("empty model payload: it holds neither weights nor a path")
    from safetensors.torch import load

    from ..build import build_model_from_state_dict

    network = build_model_from_state_dict(load(payload.weights))
    network.fuse()
    return FastSAM(network, device=device, half=half, **options)
