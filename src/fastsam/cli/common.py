"""Options shared by several commands: one name, one meaning and one default for each concept.

* ``--out``/``-o``: where the outputs go (a folder, or a file where a command writes one file).
* ``--batch-size``: images per forward pass (per optimiser step in ``train``).
* ``--workers``: parallel workers that read and prepare inputs (decoding threads in ``segment``/``batch``,
  data-loading processes in ``train``, conversion processes in ``data convert``); default
  :func:`fastsam.ops.parallel.default_workers`.
* ``--quiet``: no progress bars.
* ``--debug``: full tracebacks instead of one-line errors.

Older spellings (``--output``, ``--batch``, ``--no-progress``) are accepted as hidden aliases that print a one-line
note; they go in a later release.

Exit codes of every command: 0 all done, 1 some inputs failed or the command could not run, 2 usage error
(:class:`UsageError`, or argparse's own).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


class UsageError(ValueError):
    """The command line asks for something impossible, whatever the inputs (exit code 2, no input read)."""


class _Alias(argparse.Action):
    """An older spelling of an option: stores into the new option's ``dest``, hidden from ``--help``, noted once."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        print(f"note: {option_string} is now {self.new} (the old spelling goes in a later release)", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_alias(parser: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, new: str, dest: str,
              flag: bool = False, type: Any = None) -> None:  # fmt: skip
    """Accept ``old`` as a hidden spelling of option ``new`` (``flag``: a ``store_true`` switch)."""
    if flag:
        parser.add_argument(old, dest=dest, action=_Alias, new=new, nargs=0, const=True)
    else:
        parser.add_argument(old, dest=dest, action=_Alias, new=new, type=type)


def format_list(choices: tuple[str, ...]):
    """An argparse ``type`` for a comma list of output formats from ``choices`` (repeats dropped, order kept)."""

    def parse(text: str) -> list[str]:
        chosen = list(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
        unknown = [f for f in chosen if f not in choices]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown) or text!r}; choose from {', '.join(choices)}")
        return chosen

    return parse


def add_out_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str, default: Any = None,
                   type: Any = None, metavar: str | None = None, old: bool = False) -> None:  # fmt: skip
    """``--out``/``-o`` (``old``: also the hidden older spelling ``--output``, where a command had it)."""
    parser.add_argument("--out", "-o", dest="out", type=type, default=default, metavar=metavar, help=help)
    if old:
        add_alias(parser, "--output", "--out", dest="out", type=type)


def add_batch_size_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: int | None,
                          help: str, old: bool = False) -> None:  # fmt: skip
    """``--batch-size`` (``old``: also the hidden older spelling ``--batch``, where a command had it)."""
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=default, help=help)
    if old:
        add_alias(parser, "--batch", "--batch-size", dest="batch_size", type=int)


def add_workers_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str,
                       default: int | None = None) -> None:  # fmt: skip
    """``--workers``: parallel input workers (``what`` says which kind in this command)."""
    from ..ops.parallel import default_workers

    chosen = default_workers() if default is None else default
    parser.add_argument("--workers", type=int, default=chosen,
                        help=f"parallel input workers: {what} (default: one per core, at most 4)")  # fmt: skip


def add_quiet_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, old: bool = False) -> None:
    """``--quiet`` (``old``: also the hidden older spelling ``--no-progress``, where a command had it)."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    if old:
        add_alias(parser, "--no-progress", "--quiet", dest="quiet", flag=True)


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


def add_inference_options(parser: argparse.ArgumentParser, batch_size: int | None = None) -> None:
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
    add_batch_size_option(
        group,
        default=batch_size,
        help="images per forward pass (default: "
        + ("1 on CPU, where batching only adds memory traffic, 4 on GPUs)" if batch_size is None else "%(default)s)"),
    )


def check_inference_args(args: argparse.Namespace) -> None:
    """The options of :func:`add_inference_options` that cannot work whatever the images: :class:`UsageError`."""
    from ..checks import check_imgsz, check_thresholds

    try:
        check_imgsz(args.imgsz)
        check_thresholds(args.conf, args.iou, args.max_det)
    except ValueError as err:
        raise UsageError(f"--{err}".replace("max_det", "max-det")) from None
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if getattr(args, "workers", None) is not None and args.workers < 0:
        raise UsageError(f"--workers must be at least 0, got {args.workers}")


def default_batch_size(device_type: str) -> int:
    """Images per forward pass when not chosen: 1 on CPU (measured faster for folders: bench/folder.py), 4 elsewhere."""
    return 1 if device_type == "cpu" else 4


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")


def add_clip_checkpoint_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, used_by: str) -> None:
    """``--clip-checkpoint PATH``: local CLIP weights for machines without internet (``used_by``: which options)."""
    from pathlib import Path

    parser.add_argument(
        "--clip-checkpoint", type=Path, metavar="PATH",
        help=f"local weights of the CLIP model used by {used_by} (ViT-B-32 'openai', e.g. open_clip_model.safetensors "
        "from huggingface.co/timm/vit_base_patch32_clip_224.openai), for machines without internet (default: the "
        "Hugging Face hub cache, or a download)",
    )  # fmt: skip


def check_clip_checkpoint(path: Any) -> None:
    """Fail before any model is loaded when ``--clip-checkpoint`` names no file."""
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"--clip-checkpoint {path}: no such file (give the CLIP weights file, e.g. "
                                "open_clip_model.safetensors)")  # fmt: skip


def load_clip(path: Any, device: str):  # -> fastsam.prompts.text.ClipScorer (imported lazily: fast --help)
    """CLIP for text/class prompts, loaded now so that missing weights stop a run before any image is segmented."""
    from ..prompts.text import ClipScorer

    check_clip_checkpoint(path)
    return ClipScorer(checkpoint=path, device=device).load()
