"""What an exported model file says about its network: the metadata written by every exporter and read by every
runtime (ONNX ``metadata_props``, OpenVINO ``rt_info``). One place for both sides, so that :mod:`fastsam.export`
and :mod:`fastsam.backends` agree without the runtimes importing the exporters.

Keys (:data:`METADATA_KEYS`): ``format`` (``fastsam-onnx`` / ``fastsam-openvino``), ``format_version``, ``scale``
(``n s m l x`` or ``custom``), ``nc``, ``reg_max``, ``num_masks``, ``imgsz`` (the traced or static side),
``batch``, ``dynamic``, ``stride``, ``half``, ``precision`` (``fp32 fp16 int8``), ``opset``, ``exporter``,
``calibration_images`` and ``openvino_version`` (OpenVINO),
``fastsam_version``, ``torch_version``. All are stored as text.
"""

from __future__ import annotations

from typing import Any

import torch

from .build import SCALES
from .modeling import YOLOv8Seg

STRIDE = 32
METADATA_KEYS = ("format", "format_version", "scale", "nc", "reg_max", "num_masks", "imgsz", "batch", "dynamic",
                 "stride", "half", "precision", "opset", "exporter", "fastsam_version", "torch_version")  # fmt: skip
_INTS = frozenset({"nc", "reg_max", "num_masks", "imgsz", "batch", "stride", "opset", "calibration_images"})
_BOOLS = frozenset({"dynamic", "half"})


def scale_of(model: YOLOv8Seg) -> str:
    """The YOLOv8 scale letter (``n s m l x``) whose widths and depths ``model`` has, or ``"custom"``."""
    for name, spec in SCALES.items():
        if tuple(model.channels) == spec.channels() and tuple(model.depths) == spec.depths():
            return name
    return "custom"


def fastsam_version() -> str:
    from . import __version__

    return str(__version__)


def network_metadata(model: YOLOv8Seg, **export: Any) -> dict[str, Any]:
    """The network's own entries (scale, nc, reg_max, num_masks, stride, versions) plus the exporter's ``export``."""
    return {
        "scale": scale_of(model),
        "nc": model.nc,
        "reg_max": model.reg_max,
        "num_masks": model.head.num_masks,
        "stride": STRIDE,
        **export,
        "fastsam_version": fastsam_version(),
        "torch_version": torch.__version__,
    }


def to_text(value: Any) -> str:
    """A metadata value as stored: booleans as ``true``/``false``, everything else ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_metadata(props: dict[str, str]) -> dict[str, Any]:
    """Typed values of stored metadata (unknown keys are kept as strings, unparsable integers too)."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        value = str(value)
        if key in _INTS:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value
        elif key in _BOOLS:
            out[key] = value.strip().lower() in ("1", "true", "yes")
        else:
            out[key] = value
    return out
