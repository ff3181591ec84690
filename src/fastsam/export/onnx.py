"""Export the YOLOv8-seg network to ONNX.

The exported graph has one input ``images`` ``(B, 3, H, W)`` (float32, or float16 with ``half``) in [0, 1] and the
two outputs of :meth:`fastsam.modeling.YOLOv8Seg.forward`: ``preds (B, 4 + nc + 32, A)`` (boxes decoded in-graph,
scores after sigmoid, mask coefficients) and ``protos (B, 32, H / 4, W / 4)``. Anchors are computed in-graph from
the feature-map shapes, so dynamic models give correct boxes at every input size.

The ONNX ``metadata_props`` record what a runtime needs (:mod:`fastsam.metadata`); :func:`read_metadata` turns
them back into Python values.
"""

from __future__ import annotations

import copy
import inspect
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import FastSAMError
from ..metadata import STRIDE, network_metadata, parse_metadata, to_text
from ..modeling import YOLOv8Seg
from ..modeling.head import make_anchors

INPUT_NAME = "images"
OUTPUT_NAMES = ("preds", "protos")
DEFAULT_OPSET_TORCHSCRIPT = 17  # supported by torch >= 2.1, TensorRT >= 8.6 and every maintained ONNX Runtime
MIN_OPSET_DYNAMO = 18  # the torch.export-based exporter implements nothing older (it down-converts, badly)
Exporter = Literal["auto", "torchscript", "dynamo"]


class ExportError(FastSAMError):
    """A model could not be exported (bad settings, missing export tools, or the exporter failed)."""


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'fastsam[export]'") from None
    return onnx


def _has_dynamo_flag() -> bool:
    """Whether ``torch.onnx.export`` takes ``dynamo=`` (torch >= 2.5); older versions only have TorchScript."""
    return "dynamo" in inspect.signature(torch.onnx.export).parameters


def _export_anchors(head: Any) -> Any:
    """A replacement for ``SegmentHead.anchors`` used only while exporting.

    Anchors come from ``Range`` ops computed in float32 and cast to the network's dtype: ONNX ``Range`` has no
    float16 version, so a half network's anchors must not be built in float16. It also never touches the head's
    anchor cache, so the graph always derives anchors from the (possibly dynamic) feature-map shapes.
    """

    def anchors(feats: list[torch.Tensor], dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = [(f.shape[2], f.shape[3]) for f in feats]
        points, strides = make_anchors(sizes, head.strides, feats[0].device, torch.float32)
        dtype = feats[0].dtype if dtype is None else dtype
        return points.to(dtype), strides.to(dtype)

    return anchors


def _export_torchscript(
    net: YOLOv8Seg, dummy: torch.Tensor, path: Path, opset: int, dynamic: bool
) -> None:
    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": list(OUTPUT_NAMES),
        "opset_version": opset,
        "do_constant_folding": True,
    }
    if dynamic:
        kwargs["dynamic_axes"] = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            "preds": {0: "batch", 2: "anchors"},
            "protos": {0: "batch", 2: "proto_height", 3: "proto_width"},
        }
    if _has_dynamo_flag():
        kwargs["dynamo"] = False
    with warnings.catch_warnings():  # the legacy exporter's deprecation notices and tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), str(path), **kwargs)


def _export_dynamo(net: YOLOv8Seg, dummy: torch.Tensor, path: Path, opset: int, dynamic: bool) -> None:
    if opset < MIN_OPSET_DYNAMO:
        raise ExportError(f"the torch.export-based ONNX exporter needs opset >= {MIN_OPSET_DYNAMO}, got {opset}")
    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": list(OUTPUT_NAMES),
        "opset_version": opset,
        "dynamo": True,
        "external_data": False,
        "verbose": False,
    }
    if dynamic:
        dim = torch.export.Dim
        kwargs["dynamic_shapes"] = ({0: dim("batch"), 2: dim("height"), 3: dim("width")},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), str(path), **kwargs)


def _run_exporter(
    net: YOLOv8Seg, dummy: torch.Tensor, path: Path, opset: int | None, dynamic: bool, exporter: Exporter
) -> str:
    """Export with the chosen exporter; ``"auto"`` tries TorchScript, then dynamo. Returns the one that worked."""
    if exporter == "dynamo":
        _export_dynamo(net, dummy, path, opset or MIN_OPSET_DYNAMO, dynamic)
        return "dynamo"
    try:
        _export_torchscript(net, dummy, path, opset or DEFAULT_OPSET_TORCHSCRIPT, dynamic)
        return "torchscript"
    except Exception as err:
        if exporter != "auto" or not _has_dynamo_flag():
            raise
        # A torch whose legacy exporter is gone (or failed here): fall back to the torch.export-based one.
        warnings.warn(f"TorchScript ONNX export failed ({err}); retrying with the dynamo exporter", stacklevel=3)
        _export_dynamo(net, dummy, path, max(opset or MIN_OPSET_DYNAMO, MIN_OPSET_DYNAMO), dynamic)
        return "dynamo"


def export_onnx(
    model: YOLOv8Seg,
    path: str | os.PathLike,
    imgsz: int = 1024,
    dynamic: bool = False,
    half: bool = False,
    opset: int | None = None,
    batch: int = 1,
    exporter: Exporter = "auto",
) -> Path:
    """Export ``model`` to an ONNX file and check it with ``onnx.checker``.

    Args:
        model: the network (fused or not; it is copied, never modified). Exported on the device it is on.
        path: the ``.onnx`` file to write (parent folders are created).
        imgsz: input side: the static input is ``(batch, 3, imgsz, imgsz)``; with ``dynamic`` it is only the size
            traced and recorded in the metadata. Multiple of 32.
        dynamic: dynamic batch, height and width (``H``, ``W`` must still be multiples of 32 at run time).
        half: float16 weights, input and outputs. Works on CUDA; on CPU it needs a torch with float16 CPU
            convolutions (torch >= 2.2 or so), else :class:`ExportError` asks for a GPU.
        opset: ONNX opset (default 17 with the TorchScript exporter, 18 with the torch.export one).
        batch: the static batch size (with ``dynamic``: only the traced batch, recorded in the metadata).
        exporter: ``"torchscript"`` (the legacy tracer: fast, the only one in torch < 2.5), ``"dynamo"`` (the
            ``torch.export``-based exporter, torch >= 2.5, needs onnxscript) or ``"auto"`` (TorchScript when this
            torch still has it, else dynamo).

    Returns:
        The path written.

    Raises:
        ExportError: bad settings, onnx not installed, or the exporter failed or wrote an invalid graph.
    """
    onnx = _require_onnx()
    if imgsz < STRIDE or imgsz % STRIDE:
        raise ExportError(f"imgsz must be a positive multiple of {STRIDE}, got {imgsz}")
    if batch < 1:
        raise ExportError(f"batch must be at least 1, got {batch}")
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ExportError(f"exporter must be auto, torchscript or dynamo, got {exporter!r}")
    if exporter == "dynamo" and not _has_dynamo_flag():
        raise ExportError(f"the dynamo exporter needs torch >= 2.5 (this is torch {torch.__version__})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    device = next(model.parameters()).device
    net = copy.deepcopy(model).eval().float()
    net.head.anchors = _export_anchors(net.head)  # instance attribute: shadows the method on this copy only
    dtype = torch.float16 if half else torch.float32
    if half:
        net = net.half()
    # torch.export specialises a dynamic dimension whose example is 1, so trace a dynamic batch with 2 images.
    traced_batch = max(batch, 2) if dynamic else batch
    dummy = torch.rand(traced_batch, 3, imgsz, imgsz, device=device, dtype=dtype)

    try:
        with torch.no_grad():
            used = _run_exporter(net, dummy, path, opset, dynamic, exporter)
    except ExportError:
        raise
    except Exception as err:
        hint = ""
        if half and device.type == "cpu":
            hint = " Float16 export on CPU needs float16 CPU kernels in torch: export on a GPU (--device cuda)."
        raise ExportError(f"ONNX export failed: {type(err).__name__}: {err}.{hint}") from err

    proto = onnx.load(str(path))
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset or 0)
    metadata = network_metadata(
        model, format="fastsam-onnx", format_version="1", imgsz=imgsz, batch=batch, dynamic=dynamic, half=half,
        precision="fp16" if half else "fp32", opset=opset_used, exporter=used,
    )
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, to_text(value)
    proto.producer_name = "fastsam"
    shape = "dynamic batch, height, width" if dynamic else f"{batch}x3x{imgsz}x{imgsz}"
    proto.doc_string = f"FastSAM YOLOv8-seg-{metadata['scale']} ({shape})"
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path))  # by path: also works past the 2 GB protobuf limit
    except Exception as err:
        raise ExportError(f"the exported ONNX graph is invalid ({err}); try another --opset or exporter") from err
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed fastsam metadata of an ONNX file (empty for ONNX files written by other tools)."""
    onnx = _require_onnx()
    proto = onnx.load(str(path), load_external_data=False)
    return parse_metadata({p.key: p.value for p in proto.metadata_props})
