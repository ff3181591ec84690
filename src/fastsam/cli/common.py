"""Options shared by several commands."""

from __future__ import annotations

import argparse


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="FastSAM-x",
        help="FastSAM-x, FastSAM-s (downloaded on first use), or a path to a .pt, .safetensors or .onnx file or an "
        "OpenVINO folder (default: %(default)s)",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: %(default)s)")
    add_precision_option(group)
    group.add_argument(
        "--half", action=argparse.BooleanOptionalAction, default=None,
        help="older spelling: --half is --precision fp16, --no-half is --precision fp32",
    )  # fmt: skip
    group.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime", "openvino"),
        default="auto",
        help="network runtime: auto (ONNX Runtime for .onnx files, OpenVINO for an IR folder or .xml, else "
        "PyTorch) (default: %(default)s)",
    )
    group.add_argument(
        "--performance", choices=("latency", "throughput"), default="latency",
        help="OpenVINO's performance hint: latency (each image uses every core) or throughput (with --batch-size N, "
        "N images in flight on parallel streams) (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network (faster on GPUs after a slow first batch per input shape; needs a C++ "
        "compiler on CPU, Triton on CUDA)",
    )


PRECISION_HELP = (
    "network precision: auto (fp16 on CUDA, bf16 on CPUs with native bfloat16 such as AMX/AVX512-BF16, else fp32), "
    "fp32 (the reference's masks exactly), bf16, fp16, int8 (an OpenVINO model exported with --int8) "
    "(default: %(default)s)"
)


def add_precision_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16", "int8"), default="auto",
                        help=PRECISION_HELP)  # fmt: skip


def model_from_args(args: argparse.Namespace):  # -> fastsam.engine.FastSAM (imported lazily: fast --help)
    """The :class:`~fastsam.engine.FastSAM` that the options of :func:`add_model_options` describe."""
    from ..engine import FastSAM

    return FastSAM(
        args.model,
        device=args.device,
        half=args.half,
        precision=getattr(args, "precision", "auto"),
        backend=getattr(args, "backend", "auto"),
        compile=getattr(args, "compile", False),
        performance=getattr(args, "performance", "latency"),
    )


def add_inference_options(parser: argparse.ArgumentParser, batch_size: int | None = 4) -> None:
    """Add --imgsz/--conf/--iou/--max-det/--retina/--batch-size. ``batch_size=None``: chosen by the device later
    (:func:`default_batch_size`)."""
    group = parser.add_argument_group("inference")
    group.add_argument("--imgsz", type=int, default=1024, help="longest side of the network input, multiple of 32 (default: %(default)s)")
    group.add_argument("--conf", type=float, default=0.4, help="minimum mask confidence (default: %(default)s)")
    group.add_argument("--iou", type=float, default=0.9, help="NMS IoU threshold (default: %(default)s)")
    group.add_argument("--max-det", type=int, default=300, help="maximum masks per image (default: %(default)s)")
    group.add_argument(
        "--retina",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="full-resolution masks; --no-retina builds them at network resolution (faster, coarser) (default: on)",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help="images per forward pass (default: "
        + ("1 on CPU, where batching only adds memory traffic, 4 on GPUs)" if batch_size is None else "%(default)s)"),
    )


def default_batch_size(device_type: str) -> int:
    """Images per forward pass when not chosen: 1 on CPU (measured faster for folders: bench/folder.py), 4 elsewhere."""
    return 1 if device_type == "cpu" else 4


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
