"""The FastAPI application: upload an image once, then prompt it as often as you like.

The endpoints live here; what every request goes through is in :mod:`.middleware` (request id, access log,
metrics, API keys, body limit; answers of 1 kB or more gzip-compressed for clients that accept it), the limits in
:mod:`.limits`, the server-wide memory budget in :mod:`.budget`, the error model in :mod:`.errors` and the
OpenAPI additions (upload body, links, headers) in :mod:`.contract`.
"""

import asyncio
import dataclasses
import functools
import io
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel

from ..engine import FastSAM
from ..errors import FastSAMError, ImageLoadError
from ..io import load_image
from ..predictor import SegmentedImage
from ..prompts.text import ClipScorer, TextScorer
from ..results import SegmentationResult
from .auth import KeyRing
from .budget import BudgetBusyError, MemoryBudget, OverBudgetError, estimate_upload_bytes
from .cache import ByteLRU
from .contract import UPLOAD_BODY, UPLOAD_LINKS, finish_schema
from .errors import ApiError, error_responses, install_error_handlers
from .limits import OPTION, Limits, describe_bytes, estimate_prompt_bytes
from .metrics import Metrics
from .middleware import Guard, RequestContext, owner_of
from .schemas import RLE, HealthOut, ImageOut, LimitsOut, MaskOut, PromptOut, request_models
from .store import ImageStore, LocalStore, StoreUnavailableError
from .worker import InferenceSettings, InferenceWorker, QueueFullError

STATIC_DIR = Path(__file__).parent / "static"
API = "/api/v1"
DECODE_BYTES_PER_PIXEL = 8  # an upload's decoding: the pixels as decoded (up to 4 bytes), then as RGB (3)
GZIP_MIN_BYTES = 1024  # answers at least this large are compressed for clients that send Accept-Encoding: gzip
GZIP_LEVEL = 1  # a 36 MP photo's 18 MB mask listing (300 masks): 11.7 MB in 0.6 s; levels 5-9: 4% smaller, 2x the time


@dataclass
class ServerConfig:
    """Settings of ``fastsam serve``.

    Attributes:
        model: model name or weights path (ignored when a loaded model is given to :func:`create_app`).
        device: torch device or ``"auto"``.
        precision: network precision (``auto``, ``fp32``, ``bf16``, ``fp16``, ``int8``; see :class:`FastSAM`).
        max_upload_bytes: largest accepted upload.
        max_pixels: largest accepted image (width x height); larger ones are refused before decoding.
        max_queue: images waiting for the network at most; more get 503 with Retry-After.
        max_batch: images per forward pass at most.
        cache_bytes: memory for segmented images kept for prompting (least recently used evicted).
        retry_after_s: the Retry-After value sent with 503.
        clip_checkpoint: a local file with the weights of the CLIP model used for text prompts (ViT-B-32,
            ``openai``), e.g. ``open_clip_model.safetensors``; ``None``: the Hugging Face hub cache, or a download.
        limits: per-request limits (prompt counts, JSON body size, memory budget, ``imgsz``; see :class:`Limits`).
        memory_bytes: the server-wide memory budget (``fastsam serve --memory-mb``; see :mod:`.budget`): uploads,
            prompts and overlays start only while their estimated memory fits beside what the process holds at rest
            and what the image caches hold (the caches give way first); else 503 after a short wait, or 413 for work
            that could never fit. None: no server-wide budget (``fastsam serve`` defaults to 80% of the machine's
            memory).
        memory_wait_s: how long work that does not fit the memory budget waits for room before 503.
        api_keys: accepted API keys (``Authorization: Bearer KEY``); empty: no key needed.
        cors_origins: origins allowed to call the API from a browser (CORS); empty: none (same origin only).
    """

    model: str = "FastSAM-x"
    device: str = "auto"
    precision: str = "auto"
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_queue: int = 16
    max_batch: int = 4
    cache_bytes: int = 2 * 1024**3
    retry_after_s: int = 2
    clip_checkpoint: str | None = None
    limits: Limits = field(default_factory=Limits)
    memory_bytes: int | None = None
    memory_wait_s: float = 10.0
    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()


def _mask_out(result: SegmentationResult) -> list[MaskOut]:
    """The masks as response objects; a mask that answers several prompts is encoded once (its RLE shared)."""
    n = len(result)
    indices = result.indices if result.indices is not None else np.arange(n)
    prompt_ids = result.prompt_ids
    if result.indices is None:
        rles, areas = result.to_rle(), result.areas()
    else:  # -1 entries (no match, or a merged mask) are encoded each; the others once per distinct index
        positions = np.flatnonzero(indices < 0)
        _, first = np.unique(indices, return_index=True)
        first = first[indices[first] >= 0]
        encode = np.concatenate([first, positions]).astype(np.int64)
        chosen = result.select(encode)
        encoded_rles, encoded_areas = chosen.to_rle(), chosen.areas()
        where = {int(p): j for j, p in enumerate(encode.tolist())}
        slot = {int(indices[p]): j for j, p in enumerate(first.tolist())}
        rows = [where[i] if indices[i] < 0 else slot[int(indices[i])] for i in range(n)]
        rles = [encoded_rles[j] for j in rows]
        areas = encoded_areas[np.asarray(rows, dtype=np.int64)] if n else np.zeros(0, np.int64)
    shared = [RLE(size=r["size"], counts=r["counts"]) for r in rles]
    return [
        MaskOut(
            index=int(indices[i]),
            prompt_id=None if prompt_ids is None else int(prompt_ids[i]),
            segmentation=shared[i],
            bbox=[float(v) for v in result.boxes[i]],
            score=float(result.scores[i]),
            area=int(areas[i]),
        )
        for i in range(n)
    ]


def _json(model: BaseModel, status: int = 200) -> Response:
    """``model`` as JSON written in one pass (no intermediate dicts: large answers stay small in memory)."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def create_app(
    config: ServerConfig | None = None,
    model: FastSAM | None = None,
    text_scorer: TextScorer | None = None,
    model_name: str | None = None,
    store: ImageStore | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        config: limits and the model to load at startup.
        model: a loaded model to use instead of ``config.model``.
        text_scorer: scores crops against texts for text prompts (default: CLIP ViT-B/32, loaded on first use,
            from ``config.clip_checkpoint`` when set). A CLIP that cannot be loaded answers 503 at once after
            the first failure (see :class:`~fastsam.prompts.text.ClipScorer`).
        model_name: the name ``/health`` reports for a loaded ``model`` (default: ``"custom"``).
        store: where segmented images are kept (default: this process's memory, ``config.cache_bytes``; a
            :class:`~fastsam.server.store.RedisStore` shares them between replicas). A store that cannot be
            reached answers 503.
    """
    config = config or ServerConfig()
    limits = config.limits
    keys = KeyRing(config.api_keys) if config.api_keys else None
    PromptIn, OverlayIn = request_models(limits)
    shown_name = str(config.model) if model is None else (model_name or "custom")
    state: dict = {"worker": None, "model_name": shown_name, "text_scorer": text_scorer}
    cache: ImageStore = store if store is not None else LocalStore(config.cache_bytes)
    listings: ByteLRU[list[MaskOut]] = ByteLRU(max(config.cache_bytes // 8, 1))
    metrics = Metrics({"images": cache, "listings": listings},
                      queue_length=lambda: state["worker"].pending if state["worker"] else 0)  # fmt: skip
    # prompt work and decoding in flight hold at most --max-request-mb together (a request waits up to 10 s)
    pool = MemoryBudget(limits.max_request_bytes, option=OPTION["max_request_bytes"])

    def resident_cache_bytes() -> int:
        return int(getattr(cache, "resident_bytes", cache.nbytes)) + listings.nbytes

    def make_room(nbytes: int) -> int:  # listings first (remade from the masks when asked), then images
        freed = listings.shrink(nbytes)
        shrink = getattr(cache, "shrink", None)
        return freed + (shrink(nbytes - freed) if freed < nbytes and shrink is not None else 0)

    budget = MemoryBudget(config.memory_bytes, wait_s=config.memory_wait_s, held=resident_cache_bytes,
                          make_room=make_room)  # fmt: skip
    retry = {"Retry-After": str(config.retry_after_s)}

    def admit(need: int, what: str) -> None:
        """Reserve ``need`` bytes of the server-wide budget (413 if it could never fit, 503 when busy)."""
        try:
            budget.acquire(need, what)
        except OverBudgetError as err:
            raise ApiError(413, str(err)) from None
        except BudgetBusyError as err:
            raise ApiError(503, str(err), retry) from None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loaded = model if model is not None else await run_in_threadpool(
            functools.partial(FastSAM, config.model, config.device, precision=config.precision)
        )
        if text_scorer is None and config.clip_checkpoint is not None:
            state["text_scorer"] = ClipScorer(checkpoint=config.clip_checkpoint, device=str(loaded.device))
        budget.settle()  # what the process holds at rest, with the model loaded
        worker = InferenceWorker(loaded, max_queue=config.max_queue, max_batch=config.max_batch,
                                 on_batch=metrics.observe_batch)  # fmt: skip
        worker.start()
        state["worker"] = worker
        yield
        state["worker"] = None
        await run_in_threadpool(worker.stop)

    app = FastAPI(
        title="FastSAM",
        version="1",
        description="Segment anything: upload an image once (the network runs), then prompt it with points, "
        "boxes or text (milliseconds, no network). Coordinates are pixels of the original image; masks are COCO "
        "RLE. Every answer carries `X-Request-ID` (the client's own when it sends a sensible one). Errors are "
        "`{\"error\": \"...\"}`; limits name the `fastsam serve` option that sets them."
        + (" API calls need `Authorization: Bearer KEY`." if keys else ""),
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_handlers(app, limits, config.retry_after_s)
    app.add_middleware(Guard, keys=keys, max_json_bytes=limits.max_json_bytes, api_prefix=f"{API}/",
                       open_paths=frozenset({f"{API}/health"}), upload_path=f"{API}/images",
                       max_upload_bytes=config.max_upload_bytes)  # fmt: skip
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "X-File-Name"],
            expose_headers=["X-Request-ID", "Retry-After"], max_age=600,
        )  # fmt: skip
    app.add_middleware(RequestContext, metrics=metrics)
    # keys are checked by Guard before routing; the bearer scheme here only documents them in the schema
    api_dependencies = [Depends(HTTPBearer(auto_error=False))] if keys else []

    def api(method: str, path: str, **kwargs):
        """Register an API endpoint (routes stay flat on the app: the 405/OPTIONS handler lists their methods)."""
        return getattr(app, method)(API + path, dependencies=api_dependencies, **kwargs)

    def worker() -> InferenceWorker:
        if state["worker"] is None:
            raise ApiError(503, "the model is still loading; retry shortly", retry)
        return state["worker"]

    def stored(call, *args):  # a shared store that cannot be reached: 503, the server stays up
        try:
            return call(*args)
        except StoreUnavailableError as err:
            raise ApiError(503, str(err), retry) from None

    def cache_key(request: Request, image_id: str) -> str:
        """Images are kept under their owner's key id: another key does not find them."""
        owner = owner_of(request.state)
        return f"{owner}/{image_id}" if owner else image_id

    def session(request: Request, image_id: str) -> SegmentedImage:
        found = stored(cache.get, cache_key(request, image_id))
        if found is None:
            raise ApiError(404, f"unknown image id {image_id!r} (never uploaded, evicted from the cache, or uploaded "
                                "with another API key): upload it again")  # fmt: skip
        return found

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/metrics", operation_id="metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})  # fmt: skip
    async def metrics_text() -> Response:
        """Prometheus metrics: requests and latency by route and status, queue, batches, network time, cache."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get(f"{API}/health", response_model=HealthOut, operation_id="health")
    async def health() -> HealthOut:
        """Whether the model is loaded, the queue and cache, and the limits (needs no API key)."""
        w = state["worker"]
        return HealthOut(
            status="ok" if w else "starting",
            ready=w is not None,
            model=state["model_name"],
            device=str(w.model.device) if w else "",
            precision=w.model.precision if w else "",
            queued=w.pending if w else 0,
            cached_images=stored(len, cache),
            cache_bytes=stored(lambda: cache.nbytes),
            auth=keys is not None,
            limits=LimitsOut(max_upload_bytes=config.max_upload_bytes, max_pixels=config.max_pixels,
                             **limits.__dict__),  # fmt: skip
        )

    async def _read_upload(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_upload_bytes + 64 * 1024:
            raise ApiError(413, f"upload of {int(length)} bytes is larger than the limit of {config.max_upload_bytes} "
                                "bytes (fastsam serve --max-upload-mb)")  # fmt: skip
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=1, max_fields=10)
            except HTTPException:  # over the upload limit while read (Guard)
                raise
            except Exception as err:  # malformed multipart
                raise ApiError(422, f"unreadable multipart upload: {getattr(err, 'detail', err)}") from None
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "multipart upload needs a file field named 'file'")
            data = await upload.read()
            request.state.file_name = upload.filename or ""
        else:
            chunks, total = [], 0
            async for chunk in request.stream():
                total += len(chunk)
                if total > config.max_upload_bytes:
                    raise ApiError(413, f"upload larger than the limit of {config.max_upload_bytes} bytes "
                                        "(fastsam serve --max-upload-mb)")  # fmt: skip
                chunks.append(chunk)
            data = b"".join(chunks)
        if len(data) > config.max_upload_bytes:
            raise ApiError(413, f"upload of {len(data)} bytes is larger than the limit of {config.max_upload_bytes} "
                                "bytes (fastsam serve --max-upload-mb)")  # fmt: skip
        if not data:
            raise ApiError(422, "empty upload: send an image file as the request body or as multipart field 'file'")
        return data

    def _probe(data: bytes) -> tuple[int, int]:
        """The upload's ``(width, height)`` from its header, within ``--max-pixels`` (nothing decoded yet)."""
        try:
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
        except Image.DecompressionBombError:
            raise ApiError(413, f"image has too many pixels (at most {config.max_pixels})") from None
        except Exception:
            raise ApiError(415, "the upload is not a readable image (JPEG, PNG, TIFF, WebP, BMP, GIF)") from None
        if width * height > config.max_pixels:
            raise ApiError(413, f"image of {width}x{height} pixels exceeds the limit of {config.max_pixels} pixels "
                                "(fastsam serve --max-pixels)")  # fmt: skip
        return width, height

    def _decode(data: bytes, width: int, height: int) -> np.ndarray:
        need = DECODE_BYTES_PER_PIXEL * width * height  # the file, its decoded pixels and their RGB conversion
        if need > limits.max_request_bytes:
            raise ApiError(413, f"decoding this {width}x{height} image would need about {describe_bytes(need)}, more "
                                f"than the budget of {describe_bytes(limits.max_request_bytes)} per request (fastsam "
                                f"serve {OPTION['max_request_bytes']})")  # fmt: skip
        try:
            pool.acquire(need)
        except BudgetBusyError:
            raise ApiError(503, "server busy: the memory for decoding uploads is in use; retry shortly",
                           retry) from None  # fmt: skip
        try:
            return load_image(Image.open(io.BytesIO(data)))
        except (ImageLoadError, ValueError, OSError) as err:
            raise ApiError(415, f"the upload is not a readable image: {err}") from None
        finally:
            pool.release(need)

    @api(
        "post", "/images", response_model=ImageOut, status_code=201, operation_id="uploadImage",
        responses={201: {"links": UPLOAD_LINKS}, **error_responses(401, 413, 415, 422, 503)},
        openapi_extra={"requestBody": UPLOAD_BODY},
    )  # fmt: skip
    async def upload(
        request: Request,
        imgsz: int = Query(min(1024, limits.max_imgsz), ge=32, le=limits.max_imgsz, multiple_of=32,
                           description="longest side of the network input, pixels"),  # fmt: skip
        conf: float = Query(0.4, ge=0.0, le=1.0, description="minimum mask confidence"),
        iou: float = Query(0.9, ge=0.0, le=1.0, description="NMS IoU threshold"),
        max_det: int = Query(300, ge=1, le=1000, description="masks at most"),
        retina: bool = Query(True, description="full-resolution masks"),
        x_file_name: str | None = Header(None, description="the file name to report for a raw-body upload"),
    ) -> Response:
        """Segment an image (multipart field ``file``, or the raw bytes as the body). Returns every mask."""
        w = worker()
        data = await _read_upload(request)
        name = getattr(request.state, "file_name", None) or x_file_name or ""
        width, height = _probe(data)
        need = estimate_upload_bytes(width, height, imgsz, len(data))
        await run_in_threadpool(admit, need, f"segmenting this {width}x{height} image")
        future = None
        try:
            image = await run_in_threadpool(_decode, data, width, height)
            start = time.perf_counter()
            try:
                future = w.submit(image, InferenceSettings(imgsz, conf, iou, max_det, retina))
            except QueueFullError:
                raise ApiError(503, "server busy: too many images waiting; retry later", retry) from None
            del image  # the queued job holds it
            result = await asyncio.wrap_future(future)
            elapsed = (time.perf_counter() - start) * 1000
            result.file_name = name
            key_of = functools.partial(cache_key, request)
            return _json(await run_in_threadpool(_finish_upload, result, w, key_of, name, elapsed), 201)
        finally:  # the reservation ends with the answer made, or when the network is done with an abandoned image
            if future is not None and not future.done():
                future.add_done_callback(lambda _: budget.release(need))
            else:
                budget.release(need)

    def _finish_upload(result: SegmentationResult, w: InferenceWorker, key_of, name: str, elapsed: float) -> ImageOut:
        """Cache the segmented image and list its masks."""
        masks = _mask_out(result)
        segmented = SegmentedImage(result, state["text_scorer"], device=str(w.model.device))
        nbytes = segmented.release_masks()
        image_id = uuid.uuid4().hex
        stored(cache.put, key_of(image_id), segmented, nbytes)
        listings.put(key_of(image_id), masks, sum(len(m.segmentation.counts) + 200 for m in masks))
        h, wd = result.image_size
        return ImageOut(image_id=image_id, width=wd, height=h, file_name=name, masks=masks, elapsed_ms=elapsed)

    @api("get", "/images/{image_id}", response_model=ImageOut, operation_id="getImage",
             responses=error_responses(401, 404, 503))  # fmt: skip
    def get_image(request: Request, image_id: str) -> Response:
        """Every mask of an uploaded image."""
        s = session(request, image_id)
        masks = listings.get(cache_key(request, image_id))
        if masks is None:
            with _budget(s, PromptIn()):
                masks = _mask_out(dataclasses.replace(s.everything(), prompt_ids=None))  # as the upload listed them
        h, w = s.image_size
        return _json(ImageOut(image_id=image_id, width=w, height=h, file_name=s.result.file_name, masks=masks))

    @api("delete", "/images/{image_id}", status_code=204, operation_id="deleteImage",
                responses=error_responses(401, 404, 503))  # fmt: skip
    def delete_image(request: Request, image_id: str) -> Response:
        """Forget an uploaded image (its id answers 404 afterwards)."""
        session(request, image_id)
        stored(cache.pop, cache_key(request, image_id))
        listings.pop(cache_key(request, image_id))
        return Response(status_code=204)

    class _budget:
        """Refuse (413) a request whose estimated memory exceeds the budget; else hold its share of the pool."""

        def __init__(self, s: SegmentedImage, body: BaseModel, overlay: bool = False) -> None:
            indices = getattr(body, "indices", None)
            self.need = estimate_prompt_bytes(
                s.image_size, len(s), n_points=len(body.points or ()), n_boxes=len(body.boxes or ()),
                n_texts=len(body.texts or ()), top_k=body.top_k, multimask=body.multimask, mode=body.mode,
                overlay=overlay, n_indices=len(indices) if indices is not None else 0,
                held_as_runs=s.result.mask_runs() is not None,
            )  # fmt: skip

        def __enter__(self) -> None:
            if self.need > limits.max_request_bytes:
                need, most = describe_bytes(self.need), describe_bytes(limits.max_request_bytes)
                raise ApiError(413, f"this request would need about {need} of memory, more than the budget of {most} "
                                    f"per request (fastsam serve {OPTION['max_request_bytes']}): send fewer prompts, "
                                    "texts or top_k")  # fmt: skip
            try:
                pool.acquire(self.need)
            except BudgetBusyError:
                raise ApiError(503, "server busy: the memory for prompt requests is in use; retry shortly",
                               retry) from None  # fmt: skip
            try:
                admit(self.need, "this request")
            except ApiError:
                pool.release(self.need)
                raise

        def __exit__(self, *exc: object) -> None:
            budget.release(self.need)
            pool.release(self.need)

    def _run_prompt(s: SegmentedImage, body: BaseModel) -> SegmentationResult:
        try:
            return s.prompt(
                points=body.points, labels=body.labels, boxes=body.boxes, texts=body.texts,
                multimask=body.multimask, mode=body.mode, top_k=body.top_k,
            )  # fmt: skip
        except ValueError as err:
            raise ApiError(422, str(err)) from None
        except FastSAMError as err:
            raise ApiError(503, f"text prompts are unavailable on this server: {err}", retry) from None

    @api("post", "/images/{image_id}/prompt", response_model=PromptOut, operation_id="promptImage",
              responses=error_responses(401, 404, 413, 422, 503))  # fmt: skip
    def prompt(request: Request, image_id: str, body: PromptIn) -> Response:  # type: ignore[valid-type]
        """Select masks of an uploaded image with points, boxes and/or texts (no network run)."""
        s = session(request, image_id)
        with _budget(s, body):
            answer = PromptOut(image_id=image_id, masks=_mask_out(_run_prompt(s, body)))
            return _json(answer)

    @api(
        "post", "/images/{image_id}/overlay", response_class=Response, operation_id="overlayImage",
        responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                         "description": "The image with the masks painted (PNG)"},
                   **error_responses(401, 404, 413, 422, 503)},
    )  # fmt: skip
    def overlay_png(request: Request, image_id: str, body: OverlayIn) -> Response:  # type: ignore[valid-type]
        """A PNG of the image with the chosen masks painted: ``indices``, else the prompt's answer, else all."""
        s = session(request, image_id)
        if s.result.image is None:
            raise ApiError(422, "this image was stored without its pixels: upload it again to render overlays")
        with _budget(s, body, overlay=True):
            if body.indices is not None:
                bad = [i for i in body.indices if not 0 <= i < len(s)]
                if bad:
                    raise ApiError(422, f"mask index {bad[0]} does not exist (the image has {len(s)} masks)")
                result = s.pick(np.array(body.indices, dtype=np.int64), np.arange(len(body.indices)))
            else:
                result = _run_prompt(s, body)
            picture = result.render(alpha=body.alpha, contours=body.contours, random_colors=body.random_colors)
            buffer = io.BytesIO()
            Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
        return Response(buffer.getvalue(), media_type="image/png")

    app.openapi = functools.partial(finish_schema, app)  # type: ignore[method-assign]
    return app
