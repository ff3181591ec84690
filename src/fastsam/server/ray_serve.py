"""``fastsam serve --engine ray``: the same app on several Ray Serve replicas.

Two deployments make the application:

* :class:`FastSAMReplica` (``--replicas N``, or autoscaled): each replica loads the model and runs the app of
  :func:`~fastsam.server.app.create_app` in its process (lifespan included), answering the requests the gateway
  forwards to it. Segmented images go to the store ``--cache`` names; with Redis, any replica answers the prompts
  for an image another one segmented.
* :class:`Gateway`: Ray Serve's FastAPI ingress. It forwards every HTTP request to a replica through a deployment
  handle (Ray Serve routes it to the least busy replica), and when that replica dies before it answers (a crash,
  a killed process, a lost node) it sends the request again to another one, up to ``retries`` times, then answers
  503 with ``Retry-After``. Without it Ray Serve's proxy would answer such requests 500. The gateway holds no
  model and asks Ray for no CPU.

Every answer carries ``X-FastSAM-Replica`` (the replica that made it, ``id@pid``), and ``X-FastSAM-Retries`` when
its request was sent again after a replica failure. Ray is imported only when this engine runs.
"""

import asyncio
import dataclasses
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.exceptions import RayError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from .app import ServerConfig, create_app

logger = logging.getLogger(__name__)

REPLICA_HEADER = "x-fastsam-replica"
RETRIES_HEADER = "x-fastsam-retries"
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "content-length"}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Forwarded:
    """One HTTP request on its way from the gateway to a replica."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Answer:
    """A replica's HTTP answer."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class ReplicaPlan:
    """How many replicas, how big, and how Ray Serve scales them (``fastsam serve --engine ray`` options).

    Attributes:
        replicas: replicas to run (the starting number when autoscaling).
        num_gpus_per_replica: GPUs each replica asks Ray for (``0.5``: two replicas share a GPU; 0: CPU replicas).
        num_cpus_per_replica: CPUs each replica asks Ray for (also its torch threads).
        min_replicas, max_replicas, target_ongoing_requests: Ray Serve autoscaling; any of them set turns it on
            (the others then default to ``replicas``, ``replicas`` and 2).
        max_ongoing_requests: requests a replica works on at once; more wait in Ray Serve's queue.
        retries: times a request whose replica died is sent to another one before the 503.
    """

    replicas: int = 1
    num_gpus_per_replica: float = 0.0
    num_cpus_per_replica: float = 1.0
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    max_ongoing_requests: int = 32
    retries: int = 2

    def autoscaling(self) -> dict[str, Any] | None:
        """Ray Serve's ``autoscaling_config``, or None for a fixed number of replicas.

        Raises:
            ValueError: the numbers contradict each other.
        """
        if self.min_replicas is None and self.max_replicas is None and self.target_ongoing_requests is None:
            return None
        low = self.replicas if self.min_replicas is None else self.min_replicas
        high = max(self.replicas, low) if self.max_replicas is None else self.max_replicas
        if not 0 <= low <= high or high < 1:
            raise ValueError(f"--min-replicas {low} and --max-replicas {high}: need 0 <= min <= max and max >= 1")
        config: dict[str, Any] = {
            "min_replicas": low, "max_replicas": high, "initial_replicas": min(max(self.replicas, low), high),
            "target_ongoing_requests": 2.0 if self.target_ongoing_requests is None else self.target_ongoing_requests,
        }  # fmt: skip
        return config


def replica_device(device: str, num_gpus: float) -> str:
    """The torch device replicas use: ``auto`` is ``cuda`` when Ray gives them GPUs, else ``cpu``.

    Raises:
        ValueError: a CUDA device asked for without GPUs per replica.
    """
    if num_gpus < 0:
        raise ValueError(f"--num-gpus-per-replica {num_gpus:g}: must be >= 0")
    if device == "auto":
        return "cuda" if num_gpus > 0 else "cpu"
    if device.startswith("cuda") and num_gpus == 0:
        raise ValueError(f"--device {device} needs GPUs for the replicas: set --num-gpus-per-replica (e.g. 1, or 0.5 "
                         "for two replicas per GPU)")  # fmt: skip
    return device


@serve.deployment(name="FastSAMReplica")
class FastSAMReplica:
    """One model and one app; answers the requests :class:`Gateway` forwards.

    Args:
        config: the app's settings (``config.device`` as :func:`replica_device` resolved it).
        cache: ``None`` (this replica's memory) or a Redis URL shared by every replica.
        threads: torch CPU threads.
    """

    async def __init__(self, config: ServerConfig, cache: str | None, threads: int) -> None:
        import httpx
        import torch

        from ..engine import FastSAM
        from ..prompts.text import ClipScorer
        from .store import open_store

        torch.set_num_threads(max(1, threads))
        model = await asyncio.to_thread(FastSAM, config.model, config.device, precision=config.precision)
        scorer = None
        if config.clip_checkpoint is not None:
            scorer = ClipScorer(checkpoint=config.clip_checkpoint, device=str(model.device))
        store = open_store(cache, config.cache_bytes, text_scorer=scorer, device=str(model.device))
        self.app = create_app(config, model=model, text_scorer=scorer, model_name=str(config.model), store=store)
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()  # the inference worker starts
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://replica")
        self.name = f"{serve.get_replica_context().replica_id.unique_id}@{os.getpid()}"

    async def __call__(self, request: Forwarded) -> Answer:
        url = request.path + (f"?{request.query}" if request.query else "")
        try:  # the body as the app sent it (gzip-compressed when the client asked for it), not decoded here
            async with self._client.stream(request.method, url, headers=request.headers, content=request.body) as r:
                body = b"".join([chunk async for chunk in r.aiter_raw()])
        except Exception as err:  # the app answered 500 already inside; say so in one line, keep serving
            logger.exception("request %s %s failed", request.method, request.path)
            return Answer(500, [("content-type", "application/json"), (REPLICA_HEADER, self.name)],
                          JSONResponse({"error": f"internal error: {type(err).__name__}"}).body)  # fmt: skip
        headers = [(k, v) for k, v in r.headers.multi_items() if k.lower() not in _HOP_HEADERS]
        return Answer(r.status_code, [*headers, (REPLICA_HEADER, self.name)], body)

    async def __del__(self) -> None:
        if hasattr(self, "_client"):  # fully started: finish the queued images, stop the inference worker
            await self._client.aclose()
            await self._lifespan.__aexit__(None, None, None)


_gateway = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def _error(status: int, message: str, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _response(answer: Answer, retries: int, request_id: str | None) -> Response:
    response = Response(answer.body, status_code=answer.status)
    # Ray Serve's proxy sets x-request-id on every answer itself: the app's copy of it would be a second header
    headers = [(k, v) for k, v in answer.headers if not (k.lower() == "x-request-id" and v == request_id)]
    if retries:
        headers.append((RETRIES_HEADER, str(retries)))
    response.raw_headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    return response


# Serve's ingress serialises the gateway's routes when the class is made: what they use is defined above.
@serve.deployment(name="Gateway", ray_actor_options={"num_cpus": 0})
@serve.ingress(_gateway)
class Gateway:
    """Forwards each request to a replica; a replica that dies first gets the request retried elsewhere, then 503.

    Args:
        replicas: the handle of :class:`FastSAMReplica`.
        max_body_bytes: larger request bodies are refused (413) before they are read in full.
        retries: sends to another replica after a replica failure.
        retry_after_s: the ``Retry-After`` of the 503 answers.
    """

    def __init__(self, replicas: Any, max_body_bytes: int, retries: int = 2, retry_after_s: int = 2) -> None:
        self.replicas = replicas
        self.max_body_bytes = max_body_bytes
        self.retries = retries
        self.retry_after_s = retry_after_s

    async def _body(self, request: Request) -> bytes | None:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return None
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > self.max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    @_gateway.api_route("/{path:path}", methods=_METHODS, include_in_schema=False)
    async def forward(self, request: Request, path: str) -> Response:
        body = await self._body(request)
        if body is None:
            return _error(413, f"request body larger than the limit of {self.max_body_bytes} bytes (the upload limit, "
                               "--max-upload-mb, plus 1 MiB)")  # fmt: skip
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS]
        forwarded = Forwarded(request.method, request.url.path, request.url.query, headers, body)
        for attempt in range(self.retries + 1):
            try:
                answer: Answer = await self.replicas.remote(forwarded)
            except (BackPressureError, DeploymentUnavailableError) as err:
                return _error(503, f"no replica can take the request now ({type(err).__name__}); retry later",
                              self.retry_after_s)  # fmt: skip
            except RayError as err:
                cause = getattr(err, "cause", None)
                if isinstance(err, RayTaskError) and not isinstance(cause, RayError):  # the replica's code raised
                    logger.error("replica error on %s %s: %s", request.method, request.url.path, err)
                    return _error(500, f"internal error in a replica: {type(cause).__name__}")
                # the replica died or cannot be reached before it answered: another one gets the request
                logger.warning("replica failed on %s %s (attempt %d): %s", request.method, request.url.path,
                               attempt + 1, type(err).__name__)  # fmt: skip
                continue
            return _response(answer, attempt, request.headers.get("x-request-id"))
        return _error(503, f"the replicas answering this request failed {self.retries + 1} times; retry later",
                      self.retry_after_s)  # fmt: skip


def build_application(config: ServerConfig, cache: str | None, plan: ReplicaPlan) -> Any:
    """The Ray Serve application (gateway and replicas), ready for ``serve.run``.

    Raises:
        ValueError: contradictory settings (see :meth:`ReplicaPlan.autoscaling` and :func:`replica_device`).
    """
    if plan.replicas < 1 and plan.min_replicas is None:
        raise ValueError(f"--replicas {plan.replicas}: need at least 1")
    if plan.num_cpus_per_replica <= 0:
        raise ValueError(f"--num-cpus-per-replica {plan.num_cpus_per_replica:g}: must be > 0")
    device = replica_device(config.device, plan.num_gpus_per_replica)
    autoscaling = plan.autoscaling()
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": plan.num_cpus_per_replica, "num_gpus": plan.num_gpus_per_replica},
        "max_ongoing_requests": plan.max_ongoing_requests,
        "graceful_shutdown_timeout_s": 10,
    }
    if autoscaling is None:
        options["num_replicas"] = plan.replicas
    else:
        options["autoscaling_config"] = autoscaling
    replicas = FastSAMReplica.options(**options).bind(
        dataclasses.replace(config, device=device), cache, int(max(1, plan.num_cpus_per_replica))
    )
    body_limit = config.max_upload_bytes + 1024 * 1024  # multipart framing and JSON bodies
    return Gateway.bind(replicas, body_limit, plan.retries, config.retry_after_s)


def connect(address: str | None = None, quiet: bool = True) -> bool:
    """Join the Ray cluster at ``address`` (or ``$RAY_ADDRESS``), or start a local one; True if this call did."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
             logging_level=logging.ERROR if quiet else logging.INFO)  # fmt: skip
    return True


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(
    config: ServerConfig,
    cache: str | None,
    plan: ReplicaPlan,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    quiet: bool = True,
) -> None:
    """Deploy on Ray Serve at ``http://host:port`` and serve until interrupted (SIGINT/SIGTERM), then shut down."""
    application = build_application(config, cache, plan)  # usage errors before Ray starts
    if quiet:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    started = connect(address, quiet)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(application, name="fastsam", route_prefix="/")
        scaling = plan.autoscaling()
        count = (f"{scaling['min_replicas']}..{scaling['max_replicas']} replicas (autoscaled)" if scaling
                 else f"{plan.replicas} replica{'s' * (plan.replicas != 1)}")  # fmt: skip
        print(f"fastsam: serving at http://{host}:{port} with {count} on Ray Serve; Ctrl+C stops", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        if started:
            import ray

            ray.shutdown()
