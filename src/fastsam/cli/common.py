"""Options shared by several commands."""

from __future__ import annotations

import argparse


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default="FastSAM-x",
        help="FastSAM-x, FastSAM-s (downloaded on first use), or a path to a .pt or .safetensors file "
        "(default: %(default)s)",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: %(default)s)")
    group.add_argument(
        "--half", action=argparse.BooleanOptionalAction, default=None, help="float16 network (default: on CUDA only)"
    )
    group.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="network runtime: auto (ONNX Runtime for .onnx files, else PyTorch) (default: %(default)s)",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network (faster on GPUs after a slow first batch per input shape; needs a C++ "
        "compiler on CPU, Triton on CUDA)",
    )


def model_from_args(args: argparse.Namespace):  # -> fastsam.engine.FastSAM (imported lazily: fast --help)
    """The :class:`~fastsam.engine.FastSAM` that the options of :func:`add_model_options` describe."""
    from ..engine import FastSAM

    return FastSAM(
        args.model,
        device=args.device,
        half=args.half,
        backend=getattr(args, "backend", "auto"),
        compile=getattr(args, "compile", False),
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
