"""``fastsam serve``: the web page and HTTP API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    UsageError,
    add_clip_checkpoint_option,
    add_debug_option,
    add_precision_option,
    check_clip_checkpoint,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the web page and HTTP API",
        description="Serve the FastSAM web page at / and the HTTP API at /api/v1 (OpenAPI schema at /openapi.json, "
        "docs at /docs). One model is shared by all requests; images are segmented in micro-batches and kept "
        "in memory so that prompts answer without running the network again. Needs the 'app' extra.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--model", default="FastSAM-x", help="model name, weights path, .onnx file or OpenVINO "
                        "folder (default: %(default)s)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: %(default)s)")
    add_precision_option(parser)
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload (default: %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image, width x height (default: %(default)s)")
    parser.add_argument("--max-queue", type=int, default=16, help="images waiting at most before 503 (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=4, help="images per forward pass at most (default: %(default)s)")
    parser.add_argument("--cache-mb", type=float, default=2048.0, help="memory for segmented images (default: %(default)s)")
    parser.add_argument("--memory-mb", type=float, default=None, metavar="MB", help="memory budget of the whole "
                        "server: each upload, prompt and overlay estimates its memory before it starts and waits "
                        "(up to 10 s, then 503 with Retry-After) while it would not fit beside the model and the "
                        "cached images (least recently used ones are dropped first to make room); work that could "
                        "never fit is refused with 413 naming this option (default: 80%% of the machine's or "
                        "container's memory; with --engine ray: none, per replica when given; 0: no budget)")  # fmt: skip
    add_clip_checkpoint_option(parser, "text prompts")
    _add_replica_options(parser)
    _add_limit_options(parser)
    _add_access_options(parser)
    add_debug_option(parser)
    parser.set_defaults(run=run)


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    """Per-request limits (fastsam.server.limits.Limits; checked before any work, answered 413/422)."""
    from ..server.limits import Limits

    group = parser.add_argument_group("request limits", "checked before any work: more prompts than a limit is "
                                      "422, a larger body or memory estimate is 413; the message names the option")  # fmt: skip
    for option, dest, what in (
        ("--max-points", "max_points", "point prompts per request"),
        ("--max-boxes", "max_boxes", "box prompts per request"),
        ("--max-texts", "max_texts", "text queries per request"),
        ("--max-text-chars", "max_text_chars", "characters per text query"),
        ("--max-top-k", "max_top_k", "masks per text query (top_k)"),
        ("--max-indices", "max_indices", "mask indices per overlay request"),
        ("--max-imgsz", "max_imgsz", "largest network input size an upload may ask for (imgsz)"),
    ):
        group.add_argument(option, dest=dest, type=int, default=getattr(Limits, dest), metavar="N",
                           help=f"{what} (default: %(default)s)")  # fmt: skip
    group.add_argument("--max-json-kb", type=float, default=Limits.max_json_bytes / 1024, metavar="KB",
                       help="largest JSON request body (prompt, overlay) (default: %(default)g)")  # fmt: skip
    group.add_argument("--max-request-mb", type=float, default=Limits.max_request_bytes / 1024**2, metavar="MB",
                       help="memory one prompt or overlay request may need, estimated before it runs; prompt work in "
                       "flight holds at most this much together (default: %(default)g)")  # fmt: skip


def _add_access_options(parser: argparse.ArgumentParser) -> None:
    """API keys and CORS."""
    from ..server.auth import ENV_VAR

    group = parser.add_argument_group("access", f"API keys (sent as 'Authorization: Bearer KEY'; with any key set, "
                                      f"every API call needs one; also ${ENV_VAR}, keys separated by commas) and "
                                      "browser access from other origins")  # fmt: skip
    group.add_argument("--api-key", action="append", default=[], metavar="KEY", help="accept this key (repeatable; "
                       f"prefer --api-keys-file or ${ENV_VAR}: a command line is visible to other users)")  # fmt: skip
    group.add_argument("--api-keys-file", type=Path, metavar="PATH", help="accept the keys in this file (one per line, "
                       "'#' comments)")  # fmt: skip
    group.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="let web pages from this "
                       "origin call the API (e.g. https://label.example.com; '*' for any; repeatable) (default: none, "
                       "CORS off)")  # fmt: skip


def _access_and_limits(args: argparse.Namespace) -> dict:
    """The ServerConfig fields of the limit and access options: ``limits``, ``api_keys``, ``cors_origins``."""
    import os
    from urllib.parse import urlsplit

    from ..server.auth import ENV_VAR, KeyRing, keys_from_env, read_keys_file
    from ..server.limits import Limits

    try:
        limits = Limits(
            max_points=args.max_points, max_boxes=args.max_boxes, max_texts=args.max_texts,
            max_text_chars=args.max_text_chars, max_top_k=args.max_top_k, max_indices=args.max_indices,
            max_json_bytes=round(args.max_json_kb * 1024), max_request_bytes=round(args.max_request_mb * 1024**2),
            max_imgsz=args.max_imgsz,
        )  # fmt: skip
    except ValueError as err:
        raise UsageError(str(err)) from None
    keys = list(args.api_key) + keys_from_env(os.environ.get(ENV_VAR))
    if args.api_keys_file is not None:
        try:
            keys += read_keys_file(args.api_keys_file)
        except (OSError, ValueError) as err:
            raise UsageError(f"--api-keys-file: {err}") from None
    try:
        KeyRing(keys)
    except ValueError as err:
        raise UsageError(str(err)) from None
    for origin in args.cors_origin:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/")
                              or parts.query or parts.fragment):  # fmt: skip
            raise UsageError(f"--cors-origin {origin!r} is not an origin: give scheme://host[:port] such as "
                             "https://label.example.com, or '*'")  # fmt: skip
    return {"limits": limits, "api_keys": tuple(dict.fromkeys(keys)),
            "cors_origins": tuple(o.rstrip("/") for o in args.cors_origin)}  # fmt: skip


def _log_config() -> dict:
    """uvicorn's logging, plus the access log (one JSON line per request on stdout) and the server's errors."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["line"] = {"format": "%(message)s"}
    config["handlers"]["access_lines"] = {"class": "logging.StreamHandler", "formatter": "line",
                                          "stream": "ext://sys.stdout"}  # fmt: skip
    config["loggers"]["fastsam.access"] = {"handlers": ["access_lines"], "level": "INFO", "propagate": False}
    config["loggers"]["fastsam.server"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


_RAY_ONLY = ("replicas", "num_gpus_per_replica", "num_cpus_per_replica", "min_replicas", "max_replicas",
             "target_ongoing_requests", "max_ongoing_requests", "ray_address")  # fmt: skip


def _add_replica_options(parser: argparse.ArgumentParser) -> None:
    """--engine, --cache and the Ray Serve options (replicas, their size, autoscaling)."""
    parser.add_argument("--cache", default=None, metavar="URL", help="where segmented images are kept: this process's "
                        "memory (default), or a Redis server shared by every replica, redis://host:6379/0 "
                        "(rediss:// for TLS; needs the 'serve-ray' extra)")  # fmt: skip
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="local: one process (uvicorn); "
                        "ray: replicas of the app on Ray Serve, behind a gateway that retries a request whose replica "
                        "died (pip install 'fastsam[serve-ray]') (default: %(default)s)")  # fmt: skip
    ray = parser.add_argument_group("replicas", "options of --engine ray (give --cache redis://... so that every "
                                    "replica answers for every image)")  # fmt: skip
    ray.add_argument("--replicas", type=int, default=None, help="replicas of the app, each with its own model "
                     "(default: 1; the starting number with autoscaling)")  # fmt: skip
    ray.add_argument("--num-gpus-per-replica", type=float, default=None, metavar="F", help="GPUs per replica; a "
                     "fraction shares a GPU (0.5: two replicas per GPU) (default: 0, CPU replicas)")  # fmt: skip
    ray.add_argument("--num-cpus-per-replica", type=float, default=None, metavar="F", help="CPUs Ray reserves per "
                     "replica, also its torch threads (default: 1)")  # fmt: skip
    ray.add_argument("--min-replicas", type=int, default=None, help="autoscaling: fewest replicas (0 allows scaling "
                     "to zero); any autoscaling option turns Ray Serve's autoscaler on")  # fmt: skip
    ray.add_argument("--max-replicas", type=int, default=None, help="autoscaling: most replicas")
    ray.add_argument("--target-ongoing-requests", type=float, default=None, help="autoscaling: requests in flight "
                     "per replica the autoscaler aims at (default with autoscaling: 2)")  # fmt: skip
    ray.add_argument("--max-ongoing-requests", type=int, default=None, help="requests a replica works on at once; "
                     "more wait in Ray Serve's queue (default: 32)")  # fmt: skip
    ray.add_argument("--ray-address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else a new "
                     "local instance)")  # fmt: skip


def _replica_plan(args: argparse.Namespace):  # -> fastsam.server.ray_serve.ReplicaPlan (imported lazily)
    """The Ray Serve sizing the options ask for; usage errors before anything starts."""
    given = [f"--{name.replace('_', '-')}" for name in _RAY_ONLY if getattr(args, name) is not None]
    if args.engine == "local":
        if given:
            raise UsageError(f"{given[0]} is an option of --engine ray")
        return None
    for name in ("replicas", "max_replicas", "max_ongoing_requests"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.min_replicas is not None and args.min_replicas < 0:
        raise UsageError(f"--min-replicas must be at least 0, got {args.min_replicas}")
    if args.num_gpus_per_replica is not None and args.num_gpus_per_replica < 0:
        raise UsageError(f"--num-gpus-per-replica must be at least 0, got {args.num_gpus_per_replica:g}")
    if args.num_cpus_per_replica is not None and args.num_cpus_per_replica <= 0:
        raise UsageError(f"--num-cpus-per-replica must be more than 0, got {args.num_cpus_per_replica:g}")
    if args.target_ongoing_requests is not None and args.target_ongoing_requests <= 0:
        raise UsageError(f"--target-ongoing-requests must be more than 0, got {args.target_ongoing_requests:g}")
    try:
        from ..server.ray_serve import ReplicaPlan, replica_device
    except ImportError as err:
        raise ImportError(f"--engine ray needs Ray Serve ({err}): pip install 'fastsam[serve-ray]'") from None

    plan = ReplicaPlan(
        replicas=1 if args.replicas is None else args.replicas,
        num_gpus_per_replica=args.num_gpus_per_replica or 0.0,
        num_cpus_per_replica=1.0 if args.num_cpus_per_replica is None else args.num_cpus_per_replica,
        min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests,
        max_ongoing_requests=32 if args.max_ongoing_requests is None else args.max_ongoing_requests,
    )  # fmt: skip
    try:
        scaling = plan.autoscaling()
        replica_device(args.device, plan.num_gpus_per_replica)
    except ValueError as err:
        raise UsageError(str(err)) from None
    most = plan.replicas if scaling is None else scaling["max_replicas"]
    if most > 1 and (args.cache is None or args.cache.startswith("memory")):
        raise UsageError(f"{most} replicas need a shared store for the segmented images, or prompts reach replicas "
                         "that never saw the image: add --cache redis://host:6379/0")  # fmt: skip
    return plan


def _serve_ray(args: argparse.Namespace, config, plan) -> int:  # config: ServerConfig
    """Run the app as Ray Serve replicas until interrupted."""
    import dataclasses
    from pathlib import Path

    from ..engine import FastSAM

    # The replicas load the model themselves; loading it here once (on the CPU) makes bad weights one error line.
    FastSAM(args.model, "cpu")
    local = Path(args.model).expanduser()
    if local.exists():  # replicas may run in another working directory
        config = dataclasses.replace(config, model=str(local.resolve()))
    if config.clip_checkpoint is not None:
        config = dataclasses.replace(config, clip_checkpoint=str(Path(config.clip_checkpoint).resolve()))
    if args.cache is not None:  # an unreachable or misspelt store is one error line, before Ray starts
        from ..server.store import open_store

        probe = open_store(args.cache, config.cache_bytes)
        getattr(probe, "close", lambda: None)()
    from ..server.ray_serve import run as run_ray

    run_ray(config, args.cache, plan, host=args.host, port=args.port, address=args.ray_address, quiet=not args.debug)
    return 0


def _memory_budget(memory_mb: float | None, replicas: bool) -> int | None:
    """The server-wide memory budget in bytes that --memory-mb asks for (None: no budget)."""
    from ..server.budget import default_memory_bytes

    if memory_mb is None:
        return None if replicas else default_memory_bytes()
    if memory_mb < 0:
        raise UsageError(f"--memory-mb must be 0 (no budget) or more, got {memory_mb:g}")
    return None if memory_mb == 0 else round(memory_mb * 1024**2)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ImportError("fastsam serve needs the 'app' extra: pip install 'fastsam[app]'") from None
    from ..engine import FastSAM
    from ..server import ServerConfig, create_app

    plan = _replica_plan(args)
    access = _access_and_limits(args)
    check_clip_checkpoint(args.clip_checkpoint)
    memory_bytes = _memory_budget(args.memory_mb, replicas=plan is not None)
    # Load the model before the server starts: missing or bad weights are one error line, not a failed startup.
    model = FastSAM(args.model, args.device, precision=args.precision) if plan is None else None
    if model is not None and memory_bytes is not None:
        from ..server.budget import MemoryBudget, OverBudgetError

        try:  # the budget must leave room beside what the process holds with the model loaded
            MemoryBudget(memory_bytes).settle()
        except OverBudgetError as err:
            raise UsageError(str(err)) from None

    config = ServerConfig(
        model=args.model,
        device=args.device,
        precision=args.precision,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        cache_bytes=int(args.cache_mb * 1024 * 1024),
        clip_checkpoint=None if args.clip_checkpoint is None else str(args.clip_checkpoint),
        memory_bytes=memory_bytes,
        **access,
    )
    if not config.api_keys and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: serving on {args.host} without API keys: anyone who can reach it can use it (--api-keys-file)",
              file=sys.stderr)  # fmt: skip
    if plan is not None:
        return _serve_ray(args, config, plan)
    from ..server.store import open_store

    scorer = None
    if config.clip_checkpoint is not None:  # images read back from a shared store prompt with the same CLIP
        from ..prompts.text import ClipScorer

        scorer = ClipScorer(checkpoint=config.clip_checkpoint, device=str(model.device))
    store = open_store(args.cache, config.cache_bytes, text_scorer=scorer, device=str(model.device))
    app = create_app(config, model=model, model_name=str(args.model), store=store)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.debug else "info",
                timeout_graceful_shutdown=30, access_log=False, log_config=_log_config())  # fmt: skip
    return 0
