"""ONNX Runtime static INT8 of a FastSAM network, for comparison with the OpenVINO/NNCF INT8 path (bench only).

The network is exported with :func:`fastsam.export.export_onnx` (dynamic shapes), pre-processed with ONNX Runtime's
``quant_pre_process`` (shape inference, graph optimisation), then quantised with ``quantize_static``: QDQ format,
unsigned 8-bit activations and signed 8-bit per-channel weights (ONNX Runtime's fast x86 pairing, VNNI/AMX), ranges
from MinMax calibration on the same letterboxed images the OpenVINO path calibrates on. The layers the OpenVINO
path keeps in floating point (:data:`fastsam.export.openvino.INT8_IGNORED`: the head's last convolutions, DFL and
box decoding) stay in float32 here too. MinMax keeps every image's activations until the end (its option to bound
that discards them in onnxruntime 1.32): about 0.2 GB an image for FastSAM-s at 1024 px. fastsam's metadata is
carried over, so ``FastSAM(path)`` loads the result with the onnxruntime backend like any exported model.

    python bench/ort_int8.py WEIGHTS OUT.onnx --imgsz 640 --data $FASTSAM_SHARED/data/coco128-seg/images
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Any


def quantize_onnx_int8(net: Any, out: Path, imgsz: int, data: str | Path, calibration_size: int) -> Path:
    """Write the ONNX Runtime static-INT8 form of ``net`` (a :class:`fastsam.modeling.YOLOv8Seg`) to ``out``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fastsam.export.onnx import export_onnx
    from fastsam.export.openvino import (
        INT8_IGNORED,
        _calibration_batches,
        calibration_images,
    )

    files = calibration_images(data, calibration_size)

    class Images(CalibrationDataReader):
        def __init__(self, input_name: str) -> None:
            self.batches = iter(_calibration_batches(files, imgsz, fixed=False))
            self.input_name = input_name

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {self.input_name: batch}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(net, Path(tmp) / "fp32.onnx", imgsz=imgsz, dynamic=True)
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        metadata = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
        excluded = [n.name for n in model.graph.node if any(re.fullmatch(p, n.name) for p in INT8_IGNORED)]
        quantize_static(
            str(prepared),
            str(out),
            Images(model.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
        )
    quantized = onnx.load(str(out))
    del quantized.metadata_props[:]
    for key, value in {**metadata, "precision": "int8", "quantizer": "onnxruntime"}.items():
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, str(out))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("--imgsz", type=int, default=1024)
    p.add_argument("--data", required=True, help="calibration image folder")
    p.add_argument("--calibration-size", type=int, default=32)
    a = p.parse_args()
    from fastsam.engine import load_model

    path = quantize_onnx_int8(load_model(a.weights, "cpu"), Path(a.out), a.imgsz, a.data, a.calibration_size)
    print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
