"""``fastsam export``: the network as ONNX, or as a TensorRT engine built from the ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_debug_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="export the network to ONNX or a TensorRT engine",
        description="Export a FastSAM network to ONNX (inputs 'images' (B, 3, H, W) in [0, 1]; outputs 'preds' and "
        "'protos' with boxes decoded in the graph), or build a TensorRT engine from that ONNX (NVIDIA GPU and the "
        "tensorrt package needed). Needs the export extra: pip install 'fastsam[export]'.",
    )
    parser.add_argument("model", help="FastSAM-x, FastSAM-s, or a path to a .pt or .safetensors file")
    parser.add_argument(
        "--format", choices=("onnx", "engine"), default="onnx", help="output format (default: %(default)s)"
    )
    parser.add_argument("--imgsz", type=int, default=1024, help="input side, multiple of 32 (default: %(default)s)")
    parser.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width (default: static)")
    parser.add_argument(
        "--half", action="store_true",
        help="onnx: float16 weights and inputs (best exported on a GPU); engine: allow float16 kernels",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=1, help="static batch size (default: %(default)s)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17; 18 with --exporter dynamo)")
    parser.add_argument(
        "--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
        help="torch ONNX exporter (default: %(default)s: TorchScript where torch still has it)",
    )  # fmt: skip
    parser.add_argument("--workspace", type=float, default=4.0, help="engine: TensorRT workspace, GiB (default: 4)")
    parser.add_argument("--device", default="cpu", help="device to trace the network on: cpu, cuda (default: cpu)")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: MODEL's name, .onnx/.engine)")
    add_debug_option(parser)
    parser.set_defaults(run=run)


def default_output(model: str, suffix: str) -> Path:
    """``weights/FastSAM-s.safetensors`` -> ``weights/FastSAM-s<suffix>``; a model name -> ``<name><suffix>`` here."""
    path = Path(model)
    if path.suffix in (".pt", ".safetensors", ".pth"):
        return path.with_suffix(suffix)
    return Path(path.name + suffix)


def run(args: argparse.Namespace) -> int:
    from ..engine import load_model
    from ..export import build_engine, export_onnx
    from ..export.onnx import scale_of
    from ..export.tensorrt import require_tensorrt

    engine = args.format == "engine"
    if engine:
        require_tensorrt()  # fail before the (slow) ONNX export
    out = args.out or default_output(args.model, ".engine" if engine else ".onnx")
    onnx_path = out.with_suffix(".onnx") if engine else out
    net = load_model(args.model, args.device)
    # For an engine the ONNX stays float32: TensorRT picks float16 kernels itself with --half.
    export_onnx(
        net, onnx_path, imgsz=args.imgsz, dynamic=args.dynamic, half=args.half and not engine,
        opset=args.opset, batch=args.batch, exporter=args.exporter,
    )  # fmt: skip
    shape = "dynamic batch/height/width" if args.dynamic else f"{args.batch}x3x{args.imgsz}x{args.imgsz}"
    size_mb = onnx_path.stat().st_size / 1e6
    print(f"wrote {onnx_path} (YOLOv8-seg-{scale_of(net)}, input {shape}, "
          f"{'float16' if args.half and not engine else 'float32'}, {size_mb:.1f} MB)")  # fmt: skip
    if engine:
        path = build_engine(onnx_path, out, half=args.half, workspace_gb=args.workspace)
        print(f"wrote {path} (TensorRT, {'float16' if args.half else 'float32'} kernels allowed)")
    return 0
