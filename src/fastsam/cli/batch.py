"""``fastsam batch``: segment a large image collection into SA-1B-schema Parquet/JSON-lines partitions.

Runs in this process (``--engine local``) or on Ray Data model actors (``--engine ray``, extra ``ray``), on a laptop
or a cluster; resumes from what the output folder already holds.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from .common import (
    UsageError,
    add_debug_option,
    add_inference_options,
    add_model_options,
    add_out_option,
    add_quiet_option,
    add_workers_option,
    check_inference_args,
    default_batch_size,
)

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
        "resumed by running the same command again; images that do not decode become records with an error (done; "
        "--retry-errors redoes them), images that cannot be read from storage (after --retries) are left for the "
        "next run. Exit code 0 when every image was segmented, 1 when any failed or is left. "
        "--engine local runs in this process; --engine ray runs one model per Ray actor "
        '(pip install "fastsam[ray]"), locally or on the cluster at --ray-address.',
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders, glob patterns or URIs")
    add_out_option(parser, metavar="DEST", help="output folder: a local path or a URI (required)", old=True)
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
    add_workers_option(parser, "image reading/decoding threads, per Ray actor with --engine ray")
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
    ray.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]", help="give the Ray workers "
                     "this environment variable: NAME copies it from this environment, NAME=VALUE sets it; "
                     "repeatable (e.g. --env AWS_ENDPOINT_URL --env AWS_ACCESS_KEY_ID --env "
                     "AWS_SECRET_ACCESS_KEY: workers do not see the driver's storage settings)")  # fmt: skip
    ray.add_argument("--runtime-env", default=None, metavar="JSON|FILE", help="Ray runtime environment of the job "
                     "and its workers: JSON, or a .json/.yaml file (e.g. '{\"pip\": [...], \"env_vars\": {...}}'); "
                     "--env adds to its env_vars")  # fmt: skip
    storage = parser.add_argument_group("storage", "failures and retries")
    storage.add_argument("--retries", type=_positive_int, default=3, help="attempts per image read and per file "
                         "write before a storage failure counts; an image still unread is left for the next run "
                         "(default: %(default)s)")  # fmt: skip
    storage.add_argument("--retry-errors", action="store_true", help="also redo the images DEST holds with an "
                         "error (their rows are removed first, so each image keeps one row)")  # fmt: skip
    add_model_options(parser)
    add_inference_options(parser)
    add_quiet_option(parser)
    add_debug_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..batch.records import require_pyarrow
    from ..batch.resume import pending
    from ..batch.sources import list_sources
    from ..batch.storage import RetryPolicy

    if args.out is None:
        raise UsageError("--out DEST is required: the output folder (a local path or a URI)")
    check_inference_args(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.batch_size is None and args.engine == "ray":  # the actors' device is unknown here: GPUs only if asked
        gpus = (args.num_gpus_per_worker or 0) > 0 or args.device.startswith("cuda")
        args.batch_size = default_batch_size("cuda" if gpus else "cpu")
    if args.format == "parquet":
        require_pyarrow()
    if args.engine == "ray":
        from ..batch.ray_engine import require_ray

        require_ray()
        args.ray_runtime_env = runtime_env_of(args.runtime_env, args.env)
    elif args.env or args.runtime_env:
        print("warning: --env and --runtime-env are for the Ray workers; --engine local uses this environment",
              file=sys.stderr)  # fmt: skip
    dest = _dest(args)
    retry = RetryPolicy(attempts=args.retries)
    keys, problems = list_sources(args.sources)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not keys:
        print("error: no images found in the given sources", file=sys.stderr)
        return 1
    todo, held = pending(keys, dest, retry_errors=args.retry_errors, retry=retry)
    skipped = len(keys) - len(todo)
    others = sorted(f for f in held.formats if f != args.format)
    if others:
        print(f"note: {dest} also holds {' and '.join(others)} partitions: their images count as done; new "
              f"records are written as {args.format}", file=sys.stderr)  # fmt: skip
    bad = set(held.error_keys)
    recorded = f" ({sum(k in bad for k in keys)} with an error: --retry-errors redoes them)" if bad else ""
    if not todo:
        print(f"nothing to do: all {len(keys)} image(s) are already in {dest}{recorded}", file=sys.stderr)
        return 0
    if skipped:
        print(f"resuming: {skipped} of {len(keys)} image(s) already in {dest}{recorded}", file=sys.stderr)
    settings = {"imgsz": args.imgsz, "conf": args.conf, "iou": args.iou, "max_det": args.max_det, "retina": args.retina}
    common = {"fmt": args.format, "rows_per_file": args.rows_per_file, "batch_size": args.batch_size,
              "workers": args.workers, "progress": not args.quiet, "retry": retry}  # fmt: skip
    if args.engine == "local":
        summary = _run_local(args, todo, settings, common)
    else:
        summary = _run_ray(args, todo, settings, common)
    tail = f"; skipped {skipped} already done" if skipped else ""
    print(f"{summary.line()} to {dest}{tail}", file=sys.stderr)
    return _report_failures(summary, len(todo), args.engine)


def _dest(args: argparse.Namespace) -> str:
    """The output folder, ``--out``."""
    return str(args.out)


def _report_failures(summary: BatchSummary, todo: int, engine: str) -> int:
    """One line on what failed and what is left for the next run; the exit code (0: every image segmented)."""
    if summary.ok:
        return 0
    if engine == "ray":  # the local engine named them as they happened
        for _, why in summary.left_examples:
            print(f"not read, left for the next run: {why}", file=sys.stderr)
    parts = []
    if summary.failed:
        parts.append(f"{summary.failed} recorded with an error (see the error column; --retry-errors redoes them)")
    if summary.left:
        hint = "; if only the Ray workers cannot read them, give them the storage settings with --env NAME" \
            if engine == "ray" else ""  # fmt: skip
        parts.append(f"{summary.left} not read from storage, left for the next run (run the same command "
                     f"again){hint}")  # fmt: skip
    print(f"failed: {summary.failed + summary.left} of {todo} image(s): {'; '.join(parts)}", file=sys.stderr)
    return 1


def runtime_env_of(text: str | None, env: list[str]) -> dict | None:
    """The Ray runtime environment of ``--runtime-env`` (JSON, or a .json/.yaml file) and ``--env`` items
    (``NAME``: copied from this environment; ``NAME=VALUE``), or None when both are empty.

    Raises:
        UsageError: malformed JSON/YAML, a file that is not a mapping, or ``--env NAME`` not set here.
    """
    import json
    import os

    runtime_env: Any = {}
    if text:
        is_json = text.lstrip().startswith("{")
        if not is_json and not os.path.isfile(text):
            raise UsageError(f"--runtime-env {text}: neither JSON (starting with {{) nor an existing file")
        source = "--runtime-env" if is_json else text
        yaml_file = not is_json and text.lower().endswith((".yaml", ".yml"))
        try:
            if is_json:
                runtime_env = json.loads(text)
            else:
                with open(text, encoding="utf-8") as handle:
                    runtime_env = _load_yaml(handle) if yaml_file else json.load(handle)
        except ValueError as err:  # json.JSONDecodeError; YAML errors are turned into ValueError
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UsageError(f"{source}: not valid {'YAML' if yaml_file else 'JSON'} ({detail})") from None
        if not isinstance(runtime_env, dict):
            raise UsageError(f"{source}: a Ray runtime environment is a mapping, got {type(runtime_env).__name__}")
    variables = dict(runtime_env.get("env_vars") or {})
    for item in env:
        name, sep, value = item.partition("=")
        if not name:
            raise UsageError(f"--env {item}: expected NAME or NAME=VALUE")
        if not sep:
            if name not in os.environ:
                raise UsageError(f"--env {name}: not set in this environment (set it, or pass --env {name}=VALUE)")
            value = os.environ[name]
        variables[name] = value
    if variables:
        runtime_env["env_vars"] = variables
    return runtime_env or None


def _load_yaml(handle: Any) -> Any:
    """A YAML document (PyYAML comes with Ray); a syntax error as ValueError."""
    import yaml

    try:
        return yaml.safe_load(handle)
    except yaml.YAMLError as err:
        raise ValueError(str(err).replace("\n", " ")) from None


def _run_local(args: argparse.Namespace, todo: list[str], settings: dict, common: dict) -> BatchSummary:
    import torch

    from ..batch.local import run_local
    from .common import model_from_args

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = model_from_args(args)
    if common["batch_size"] is None:  # as fastsam segment: 1 on CPU, 4 on GPUs
        common = {**common, "batch_size": default_batch_size(model.device.type)}
    return run_local(todo, _dest(args), model, **common, **settings)


def _run_ray(args: argparse.Namespace, todo: list[str], settings: dict, common: dict) -> BatchSummary:
    from ..batch.payload import pack_model
    from ..batch.ray_engine import connect, require_ray, run_ray

    memory = None if args.memory_per_worker is None else args.memory_per_worker * 2**30
    payload = pack_model(args.model)  # read (or download) the weights once, here; actors get the bytes
    runtime_env = getattr(args, "ray_runtime_env", None)
    started = connect(args.ray_address, runtime_env=runtime_env, quiet=not args.debug)
    try:
        return run_ray(
            todo, _dest(args), payload, settings, **common, runtime_env=runtime_env, quiet=not args.debug,
            num_gpus_per_worker=args.num_gpus_per_worker, num_cpus_per_worker=args.num_cpus_per_worker,
            concurrency=args.concurrency, memory_per_worker=memory, device=args.device, half=args.half,
            precision=args.precision,
            threads=args.threads, backend=getattr(args, "backend", "auto"), compile=getattr(args, "compile", False),
        )  # fmt: skip
    finally:
        if started:
            require_ray().shutdown()
