"""``fastsam batch``: segment a large image collection into SA-1B-schema Parquet/JSON-lines partitions.

Runs in this process (``--engine local``) or on Ray Data model actors (``--engine ray``, extra ``ray``), on a laptop
or a cluster; resumes from what the output folder already holds.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .common import add_debug_option, add_inference_options, add_model_options

if TYPE_CHECKING:
    from ..batch.summary import BatchSummary


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "batch",
        help="segment a large image collection into Parquet/JSON-lines records (local or Ray)",
        description="Segment every image of SOURCE (files, folders, globs, or URIs such as s3://bucket/prefix) and "
        "write one SA-1B-schema record per image (path, file_name, image_id, height, width, annotations with COCO "
        "RLE masks, error) to partition files in DEST. Images already in DEST are skipped, so an interrupted run is "
        "resumed by running the same command again; unreadable images become records with an error. "
        "--engine local runs in this process; --engine ray runs one model per Ray actor "
        '(pip install "fastsam[ray]"), locally or on the cluster at --ray-address.',
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders, glob patterns or URIs")
    parser.add_argument("--output", "-o", required=True, metavar="DEST", help="output folder: a local path or a URI")
    parser.add_argument(
        "--format", choices=("parquet", "jsonl"), default="parquet", help="partition file format (default: %(default)s)"
    )
    parser.add_argument(
        "--rows-per-file", type=_positive_int, default=1000, help="records per partition file (default: %(default)s)"
    )
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="local: this process; ray: Ray Data model actors "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=_positive_int, default=2, help="image reading/decoding threads, per Ray actor with "
        "--engine ray (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=_positive_int, default=None, help="torch CPU threads, per actor with --engine ray "
        "(default: local: torch's choice; ray: --num-cpus-per-worker)",
    )  # fmt: skip
    ray = parser.add_argument_group("ray", "options of --engine ray")
    ray.add_argument("--ray-address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else a new "
                     "local Ray instance)")  # fmt: skip
    ray.add_argument("--num-gpus-per-worker", type=float, default=None, help="GPUs per model actor; a fraction "
                     "shares a GPU (0.5: two actors per GPU); 0: CPU actors (default: 1 if the cluster has GPUs, "
                     "else 0)")  # fmt: skip
    ray.add_argument("--num-cpus-per-worker", type=float, default=1.0, help="CPUs per model actor "
                     "(default: %(default)s)")  # fmt: skip
    ray.add_argument("--memory-per-worker", type=float, default=None, metavar="GB", help="memory Ray reserves per "
                     "model actor, in GiB, so that no more actors than fit are placed on a node "
                     "(default: none)")  # fmt: skip
    ray.add_argument("--concurrency", type=_positive_int, default=None, help="model actors (default: GPUs / "
                     "--num-gpus-per-worker, or the cluster's CPUs minus one / --num-cpus-per-worker)")  # fmt: skip
    add_model_options(parser)
    add_inference_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_debug_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..batch.records import require_pyarrow
    from ..batch.resume import pending
    from ..batch.sources import list_sources

    if args.batch_size < 1:
        print(f"error: --batch-size must be at least 1, got {args.batch_size}", file=sys.stderr)
        return 2
    if args.format == "parquet":
        require_pyarrow()
    if args.engine == "ray":
        from ..batch.ray_engine import require_ray

        require_ray()
    keys, problems = list_sources(args.sources)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not keys:
        print("error: no images found in the given sources", file=sys.stderr)
        return 1
    todo, held = pending(keys, args.output, args.format)
    skipped = len(keys) - len(todo)
    if not todo:
        print(f"nothing to do: all {len(keys)} image(s) are already in {args.output}", file=sys.stderr)
        return 0
    if skipped:
        print(f"resuming: {skipped} of {len(keys)} image(s) already in {args.output}", file=sys.stderr)
    settings = {"imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "retina": args.retina}
    common = {"fmt": args.format, "rows_per_file": args.rows_per_file, "batch_size": args.batch_size,
              "workers": args.workers, "progress": not args.quiet}  # fmt: skip
    if args.engine == "local":
        summary = _run_local(args, todo, settings, common)
    else:
        summary = _run_ray(args, todo, settings, common)
    tail = f"; skipped {skipped} already done" if skipped else ""
    print(f"{summary.line()} to {args.output}{tail}", file=sys.stderr)
    return 0


def _run_local(args: argparse.Namespace, todo: list[str], settings: dict, common: dict) -> BatchSummary:
    import torch

    from ..batch.local import run_local
    from .common import model_from_args

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = model_from_args(args)
    return run_local(todo, args.output, model, **common, **settings)


def _run_ray(args: argparse.Namespace, todo: list[str], settings: dict, common: dict) -> BatchSummary:
    from ..batch.payload import pack_model
    from ..batch.ray_engine import connect, require_ray, run_ray

    memory = None if args.memory_per_worker is None else args.memory_per_worker * 2**30
    payload = pack_model(args.model)  # read (or download) the weights once, here; actors get the bytes
    started = connect(args.ray_address)
    try:
        return run_ray(
            todo, args.output, payload, settings, **common,
            num_gpus_per_worker=args.num_gpus_per_worker, num_cpus_per_worker=args.num_cpus_per_worker,
            concurrency=args.concurrency, memory_per_worker=memory, device=args.device, half=args.half,
            precision=args.precision,
            threads=args.threads, backend=getattr(args, "backend", "auto"), compile=getattr(args, "compile", False),
        )  # fmt: skip
    finally:
        if started:
            require_ray().shutdown()
