"""The Ray engine: Ray Data reads the keys, model actors segment them, the records are written as partitions.

The dataset of keys goes through ``map_batches`` with :class:`fastsam.batch.worker.SegmentWorker` (a callable class:
Ray keeps one model per actor). Each actor asks Ray for ``num_gpus`` (a fraction shares one GPU between actors)
and ``num_cpus``; there are ``concurrency`` actors. The records go out through Ray's Parquet writer, or a JSON-lines
datasink, as files in the output folder (a local path on one machine, a shared or object-store URI on a cluster).

Workers read the inputs and write the outputs in their own processes, with their own environment: storage settings
(``AWS_ENDPOINT_URL``, credentials) set on the driver only do not reach them unless they are passed in a Ray
``runtime_env`` (``env_vars``), which :func:`connect` gives the job and :func:`run_ray` gives each of its tasks.
Images a worker cannot read are left out of the output and reported to a :class:`fastsam.batch.summary.RunTally`
actor, so the driver can say which ones are left for the next run.

Ray is imported only when this engine runs; without it, :func:`require_ray` says how to install it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .payload import ModelPayload
from .resume import list_partitions, scan_output
from .storage import RetryPolicy, StorageError, is_storage_error, reason, settings_hint, store_of
from .summary import BatchSummary, RunTally
from .worker import SegmentWorker

_QUIET_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")

INSTALL_HINT = 'pip install "fastsam[ray]"'


def require_ray() -> Any:
    """Import and return ``ray`` (with Ray Data), or raise an ImportError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(f"--engine ray needs Ray Data, which is not installed ({err}): {INSTALL_HINT}, "
                          "or run with --engine local") from None  # fmt: skip
    return ray


def connect(address: str | None = None, runtime_env: dict[str, Any] | None = None, quiet: bool = True) -> bool:
    """Join the Ray cluster at ``address`` (or ``$RAY_ADDRESS``), or start a local instance when neither is set.

    Args:
        address: the cluster (``"auto"``, ``"ray://host:10001"``, ...).
        runtime_env: the job's Ray runtime environment (e.g. ``{"env_vars": {"AWS_ENDPOINT_URL": ...}}``).
        quiet: keep Ray's own log lines and the workers' output off this process's terminal (errors still show).

    Returns:
        True if this call started or joined Ray (the caller should ``ray.shutdown()`` when done), False if Ray was
        already initialised in this process (then ``address`` is ignored, and ``runtime_env`` only reaches the
        tasks of :func:`run_ray`, which pass it on).
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": not quiet, "logging_level": logging.ERROR if quiet else logging.INFO}
    if runtime_env:
        options["runtime_env"] = runtime_env
    address = address or os.environ.get("RAY_ADDRESS") or None
    with _quiet_loggers(quiet), _native_stderr_silenced(quiet), _native_log_level("fatal" if quiet else None):
        if address is None:
            ray.init(include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    return True


@contextlib.contextmanager
def _native_log_level(level: str | None) -> Iterator[None]:
    """``RAY_BACKEND_LOG_LEVEL`` set to ``level`` inside the block, unless the user set it (None: left alone).

    Ray's C++ core reads it when it starts: the driver's then prints no error line per model actor on stderr. The
    processes a local instance starts meanwhile (raylet, GCS, their workers) inherit it, so their C++ log files
    keep fatal lines only; ``--debug`` (quiet off) keeps Ray's levels.
    """
    if level is None or "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = level
    try:
        yield
    finally:
        os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)


@contextlib.contextmanager
def _native_stderr_silenced(quiet: bool) -> Iterator[None]:
    """File descriptor 2 to the null device inside the block (when ``quiet``), for the start-up lines Ray's C++ code
    prints there whatever the log level; whatever else is written to the process's stderr meanwhile is lost too
    (exceptions still propagate)."""
    if not quiet:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (e.g. some embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _quiet_loggers(quiet: bool) -> Iterator[None]:
    """Ray's Python loggers at ERROR inside the block (when ``quiet``), as they were afterwards."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def plan_workers(
    num_gpus_per_worker: float | None, num_cpus_per_worker: float, concurrency: int | None, device: str | None
) -> tuple[float, int]:
    """Resources per actor and the number of actors, from the cluster's totals.

    Args:
        num_gpus_per_worker: GPUs per actor (``0.25``: four actors share a GPU); None: 1 when the cluster has GPUs
            and ``device`` is not ``"cpu"``, else 0.
        num_cpus_per_worker: CPUs per actor.
        concurrency: actors; None: as many as the GPUs allow (GPU actors), or all CPUs but one, which is left to
            Ray Data's read and write tasks (CPU actors).

    Returns:
        ``(num_gpus_per_worker, concurrency)``.
    """
    ray = require_ray()
    resources = ray.cluster_resources()
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if num_gpus_per_worker is None:
        num_gpus_per_worker = 1.0 if gpus >= 1 and str(device) != "cpu" else 0.0
    if num_gpus_per_worker < 0 or num_cpus_per_worker <= 0:
        raise ValueError("--num-gpus-per-worker must be >= 0 and --num-cpus-per-worker > 0")
    if num_gpus_per_worker > 0 and gpus < num_gpus_per_worker:
        raise ValueError(f"each worker asks for {num_gpus_per_worker} GPU but the Ray cluster has {gpus:g}; "
                         "use --num-gpus-per-worker 0 for CPU workers")  # fmt: skip
    if str(device).startswith("cuda") and num_gpus_per_worker == 0:
        raise ValueError(f"--device {device} needs GPU actors: set --num-gpus-per-worker (the Ray cluster has "
                         f"{gpus:g} GPU), or use --device auto/cpu")  # fmt: skip
    if concurrency is None:
        if num_gpus_per_worker > 0:
            concurrency = int(gpus // num_gpus_per_worker + 1e-9)
        else:
            concurrency = int(max(cpus - 1, num_cpus_per_worker) // num_cpus_per_worker)
    if concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {concurrency}")
    return num_gpus_per_worker, max(1, concurrency)


def run_ray(
    keys: Sequence[str],
    dest: str,
    model: ModelPayload,
    settings: dict[str, Any],
    fmt: str = "parquet",
    rows_per_file: int = 1000,
    batch_size: int = 4,
    workers: int = 2,
    num_gpus_per_worker: float | None = None,
    num_cpus_per_worker: float = 1.0,
    concurrency: int | None = None,
    memory_per_worker: float | None = None,
    device: str | None = "auto",
    half: bool | None = None,
    precision: str = "auto",
    threads: int | None = None,
    backend: str = "auto",
    compile: bool | str = False,
    progress: bool = True,
    retry: RetryPolicy | None = None,
    runtime_env: dict[str, Any] | None = None,
    quiet: bool = True,
) -> BatchSummary:
    """Segment the images named by ``keys`` on the Ray cluster this process is connected to (see :func:`connect`).

    Args:
        keys: absolute local paths or URIs, readable from every node (on a cluster: a shared filesystem or URIs).
        dest: output folder (on a cluster: shared filesystem or URI such as ``s3://bucket/out``).
        model: the weights to ship to the actors (:func:`fastsam.batch.payload.pack_model`).
        settings: keyword arguments of :meth:`fastsam.engine.FastSAM.predict` (imgsz, conf, iou, max_det, retina).
        fmt: ``"parquet"`` or ``"jsonl"``.
        rows_per_file: target minimum records per partition file.
        batch_size: images per actor call and per forward pass.
        workers: reading/decoding threads in each actor.
        num_gpus_per_worker, num_cpus_per_worker, concurrency: actor sizing (see :func:`plan_workers`).
        memory_per_worker: bytes of memory Ray reserves for each actor (None: no reservation).
        device, half, precision, backend, compile: where and how each actor runs its model (``"auto"``: its GPU if it has
            one; see :func:`fastsam.batch.payload.unpack_model`).
        threads: torch threads per actor (default: ``num_cpus_per_worker`` rounded down, at least 1).
        progress: Ray Data progress bars.
        retry: how the actors retry reads (default: :class:`fastsam.batch.storage.RetryPolicy`).
        runtime_env: Ray runtime environment of the model actors and the write tasks (e.g. ``env_vars`` with
            storage endpoints and credentials), merged by Ray with the job's.
        quiet: Ray Data's log lines off (errors still show).

    Returns:
        The run's summary (images and failures are read back from the partition files it wrote; masks and the
        images left for the next run are reported by the actors).

    Raises:
        StorageError: the workers could not write the output (one line naming the store and what to check).
    """
    ray = require_ray()
    from ray.data import DataContext

    start = time.perf_counter()
    gpus, actors = plan_workers(num_gpus_per_worker, num_cpus_per_worker, concurrency, device)
    context = DataContext.get_current()
    context.enable_progress_bars = progress
    if quiet:
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
    before = list_partitions(dest, fmt)
    tally = ray.remote(num_cpus=0)(RunTally).remote()
    items = [{"path": key} for key in keys]
    dataset = ray.data.from_items(items, **_blocks_option(ray.data.from_items, len(items), batch_size, actors))
    worker_options = {
        "model": ray.put(model),
        "settings": dict(settings),
        "device": device,
        "half": half,
        "precision": precision,
        "batch_size": batch_size,
        "workers": workers,
        "threads": threads if threads is not None else max(1, int(num_cpus_per_worker)),
        "backend": backend,
        "compile": compile,
        "retry": retry,
        "tally": tally,
    }
    resources: dict[str, Any] = {"num_cpus": num_cpus_per_worker}
    if gpus > 0:
        resources["num_gpus"] = gpus
    if memory_per_worker:
        resources["memory"] = int(memory_per_worker)
    remote_args: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
    records = dataset.map_batches(
        SegmentWorker,
        fn_constructor_kwargs=worker_options,
        batch_size=batch_size,
        batch_format="numpy",
        **_actors_option(ray, actors),
        **resources,
        **remote_args,
    )
    try:
        with _quiet_loggers(quiet):
            if fmt == "parquet":
                records.write_parquet(dest, ray_remote_args=remote_args,
                                      **_rows_option(records.write_parquet, rows_per_file))  # fmt: skip
            else:
                records.write_datasink(_jsonl_datasink(dest, rows_per_file), ray_remote_args=remote_args)
    except Exception as err:
        cause = root_cause(err)
        if is_storage_error(cause):
            raise StorageError(f"cannot write to {store_of(dest)} from the Ray workers ({settings_hint(dest)}; "
                               f"give the workers the variables with --env NAME): {reason(cause)}") from None  # fmt: skip
        raise
    else:
        masks, _, examples = ray.get(tally.report.remote())
    finally:
        ray.kill(tally)
    new_files = sorted(list_partitions(dest, fmt) - before)
    written = scan_output(dest, fmt, only=new_files, quarantine=False)
    left = len(set(keys) - set(written.keys))
    return BatchSummary(engine="ray", images=len(written.keys), failed=written.errors, masks=masks, left=left,
                        left_examples=examples, seconds=time.perf_counter() - start, files=new_files)  # fmt: skip


def root_cause(err: BaseException) -> BaseException:
    """The exception a Ray error stands for: ``RayTaskError.cause``, else the end of the ``__cause__`` chain."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = getattr(err, "cause", None) or err.__cause__
        if not isinstance(inner, BaseException):
            break
        err = inner
    return err


def _blocks_option(read: Any, rows: int, batch_size: int, actors: int) -> dict[str, int]:
    """Enough input blocks to keep every actor busy, few enough to stay cheap for millions of keys."""
    blocks = max(1, min(rows // max(1, batch_size) or 1, max(200, 4 * actors)))
    name = "override_num_blocks" if "override_num_blocks" in inspect.signature(read).parameters else "parallelism"
    return {name: blocks}


def _actors_option(ray: Any, actors: int) -> dict[str, Any]:
    """A fixed pool of ``actors`` model actors: ``compute=ActorPoolStrategy(size=...)``, else ``concurrency``."""
    strategy = getattr(ray.data, "ActorPoolStrategy", None)
    if strategy is not None and "size" in inspect.signature(strategy).parameters:
        return {"compute": strategy(size=actors)}
    return {"concurrency": actors}


def _rows_option(write: Any, rows_per_file: int) -> dict[str, int]:
    """``min_rows_per_file`` (Ray >= 2.40) or ``num_rows_per_file`` (older Ray), whichever ``write`` takes."""
    parameters = inspect.signature(write).parameters
    for name in ("min_rows_per_file", "num_rows_per_file"):
        if name in parameters:
            return {name: rows_per_file}
    return {}


def _jsonl_datasink(dest: str, rows_per_file: int) -> Any:
    """A Ray datasink writing each block as a ``.jsonl`` file: one record (plain JSON types) per line."""
    import json

    from ray.data.datasource import BlockBasedFileDatasink

    class JsonLinesDatasink(BlockBasedFileDatasink):
        def __init__(self, path: str) -> None:
            super().__init__(path, file_format="jsonl", **_rows_option(BlockBasedFileDatasink.__init__, rows_per_file))

        def write_block_to_file(self, block: Any, file: Any) -> None:
            for row in block.to_arrow().to_pylist():
                file.write((json.dumps(row, separators=(",", ":")) + "\n").encode("utf-8"))

    return JsonLinesDatasink(dest)
