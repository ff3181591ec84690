"""``fastsam export``: the network as ONNX, an OpenVINO IR folder (optionally INT8), or a TensorRT engine."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import UsageError, add_batch_size_option, add_debug_option, add_out_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="export the network to ONNX, OpenVINO (FP32/FP16/INT8) or a TensorRT engine",
        description="Export a FastSAM network to ONNX (inputs 'images' (B, 3, H, W) in [0, 1]; outputs 'preds' and "
        "'protos' with boxes decoded in the graph), to an OpenVINO IR folder (dynamic shapes; --int8 quantises it "
        "with NNCF on --data images; needs pip install 'fastsam[openvino]'), or build a TensorRT engine from the "
        "ONNX (NVIDIA GPU and the tensorrt package needed). Needs the export extra: pip install 'fastsam[export]'.",
    )
    parser.add_argument("model", help="FastSAM-x, FastSAM-s, or a path to a .pt or .safetensors file")
    parser.add_argument(
        "--format", choices=("onnx", "openvino", "engine"), default="onnx", help="output format (default: %(default)s)"
    )
    parser.add_argument("--imgsz", type=int, default=1024, help="input side, multiple of 32 (default: %(default)s)")
    parser.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=None,
                        help="dynamic batch, height and width (default: on for openvino, off for onnx/engine)")  # fmt: skip
    parser.add_argument(
        "--precision", choices=("fp32", "fp16", "int8"), default="fp32",
        help="fp32; fp16: onnx float16 weights and inputs (best exported on a GPU), openvino float16 weights, engine "
        "float16 kernels allowed; int8: openvino only, NNCF post-training quantisation on --data images "
        "(bf16 is not a file format: choose it when loading, --precision bf16) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--half", action="store_true", help="the same as --precision fp16")
    parser.add_argument("--int8", action="store_true", help="the same as --precision int8")
    parser.add_argument("--data", type=Path, default=None,
                        help="int8: folder of calibration images, like those you will segment")  # fmt: skip
    parser.add_argument("--calibration-size", type=int, default=128,
                        help="int8: calibration images used at most (default: %(default)s)")  # fmt: skip
    add_batch_size_option(parser, default=1, help="static batch size (default: %(default)s)", old=True)
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17; 18 with --exporter dynamo)")
    parser.add_argument(
        "--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
        help="torch ONNX exporter (default: %(default)s: TorchScript where torch still has it)",
    )  # fmt: skip
    parser.add_argument("--workspace", type=float, default=4.0, help="engine: TensorRT workspace, GiB (default: 4)")
    parser.add_argument("--device", default="cpu", help="device to trace the network on: cpu, cuda (default: cpu)")
    add_out_option(parser, type=Path, default=None,
                   help="output file or, for openvino, folder (default: MODEL's name + .onnx / .engine / "
                        "_openvino[_int8])")  # fmt: skip
    add_debug_option(parser)
    parser.set_defaults(run=run)


def default_output(model: str, suffix: str) -> Path:
    """``weights/FastSAM-s.safetensors`` -> ``weights/FastSAM-s<suffix>``; a model name -> ``<name><suffix>`` here."""
    path = Path(model)
    if path.suffix in (".pt", ".safetensors", ".pth"):
        return path.with_name(path.stem + suffix)
    return Path(path.name + suffix)


def run(args: argparse.Namespace) -> int:
    from ..checks import check_imgsz
    from ..engine import load_model
    from ..export import build_engine, export_onnx
    from ..export.tensorrt import require_tensorrt
    from ..metadata import scale_of

    precision = "int8" if args.int8 else ("fp16" if args.half else args.precision)
    if precision == "int8" and args.format != "openvino":
        raise UsageError("--precision int8 is for --format openvino (NNCF quantisation)")
    if precision == "int8" and args.data is None:
        raise UsageError("--precision int8 needs calibration images: --data FOLDER")
    try:
        check_imgsz(args.imgsz)
    except ValueError as err:
        raise UsageError(f"--{err}") from None
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    half = precision == "fp16"
    if args.format == "openvino":
        return _run_openvino(args, half, precision == "int8")
    engine = args.format == "engine"
    if engine:
        require_tensorrt()  # fail before the (slow) ONNX export
    dynamic = bool(args.dynamic)
    out = args.out or default_output(args.model, ".engine" if engine else ".onnx")
    onnx_path = out.with_suffix(".onnx") if engine else out
    net = load_model(args.model, args.device)
    # For an engine the ONNX stays float32: TensorRT picks float16 kernels itself with --half.
    export_onnx(
        net, onnx_path, imgsz=args.imgsz, dynamic=dynamic, half=half and not engine,
        opset=args.opset, batch=args.batch_size, exporter=args.exporter,
    )  # fmt: skip
    shape = "dynamic batch/height/width" if dynamic else f"{args.batch_size}x3x{args.imgsz}x{args.imgsz}"
    size_mb = onnx_path.stat().st_size / 1e6
    print(f"wrote {onnx_path} (YOLOv8-seg-{scale_of(net)}, input {shape}, "
          f"{'float16' if half and not engine else 'float32'}, {size_mb:.1f} MB)")  # fmt: skip
    if engine:
        path = build_engine(onnx_path, out, half=half, workspace_gb=args.workspace)
        print(f"wrote {path} (TensorRT, {'float16' if half else 'float32'} kernels allowed)")
    return 0


def _run_openvino(args: argparse.Namespace, half: bool, int8: bool) -> int:
    from ..engine import load_model
    from ..export.openvino import export_openvino
    from ..metadata import scale_of

    dynamic = True if args.dynamic is None else args.dynamic
    out = args.out or default_output(args.model, "_openvino_int8" if int8 else "_openvino")
    net = load_model(args.model, args.device)
    xml = export_openvino(net, out, imgsz=args.imgsz, dynamic=dynamic, half=half, int8=int8, data=args.data,
                          calibration_size=args.calibration_size)  # fmt: skip
    size_mb = xml.with_suffix(".bin").stat().st_size / 1e6
    kind = "INT8 (NNCF)" if int8 else ("float16 weights" if half else "float32")
    shape = "dynamic batch/height/width" if dynamic else f"1x3x{args.imgsz}x{args.imgsz}"
    print(f"wrote {out}/ (OpenVINO IR {xml.name}, YOLOv8-seg-{scale_of(net)}, input {shape}, {kind}, "
          f"{size_mb:.1f} MB); run it with: fastsam segment IMAGE --model {out}")  # fmt: skip
    return 0
