"""The FastAPI application: upload an image once, then prompt it as often as you like."""

from __future__ import annotations

import asyncio
import functools
import io
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from ..engine import FastSAM
from ..errors import FastSAMError, ImageLoadError
from ..io import load_image
from ..predictor import SegmentedImage
from ..prompts.text import TextScorer
from ..results import SegmentationResult
from ..visualize import overlay
from .cache import ByteLRU
from .schemas import HealthOut, ImageOut, MaskOut, OverlayIn, PromptIn, PromptOut
from .worker import InferenceSettings, InferenceWorker, QueueFullError

STATIC_DIR = Path(__file__).parent / "static"
API = "/api/v1"


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


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _mask_out(result: SegmentationResult) -> list[MaskOut]:
    rles = result.to_rle()
    areas = result.areas()
    indices = result.indices if result.indices is not None else np.arange(len(result))
    prompt_ids = result.prompt_ids
    return [
        MaskOut(
            index=int(indices[i]),
            prompt_id=None if prompt_ids is None else int(prompt_ids[i]),
            segmentation=rles[i],
            bbox=[float(v) for v in result.boxes[i]],
            score=float(result.scores[i]),
            area=int(areas[i]),
        )
        for i in range(len(result))
    ]


def create_app(
    config: ServerConfig | None = None, model: FastSAM | None = None, text_scorer: TextScorer | None = None
) -> FastAPI:
    """Build the app.

    Args:
        config: limits and the model to load at startup.
        model: a loaded model to use instead of ``config.model``.
        text_scorer: scores crops against texts for text prompts (default: CLIP ViT-B/32, loaded on first use).
    """
    config = config or ServerConfig()
    state: dict = {"worker": None, "model_name": str(config.model)}
    cache: ByteLRU[SegmentedImage] = ByteLRU(config.cache_bytes)
    listings: ByteLRU[list[MaskOut]] = ByteLRU(max(config.cache_bytes // 8, 1))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loaded = model if model is not None else await run_in_threadpool(
            functools.partial(FastSAM, config.model, config.device, precision=config.precision)
        )
        worker = InferenceWorker(loaded, max_queue=config.max_queue, max_batch=config.max_batch)
        worker.start()
        state["worker"] = worker
        yield
        state["worker"] = None
        await run_in_threadpool(worker.stop)

    app = FastAPI(
        title="FastSAM",
        version="1",
        description="Segment anything: upload an image once (the network runs), then prompt it with points, "
        "boxes or text (milliseconds, no network). Coordinates are pixels of the original image; masks are COCO RLE.",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors()]
        return JSONResponse({"error": "invalid request: " + "; ".join(parts)}, status_code=422)

    def worker() -> InferenceWorker:
        if state["worker"] is None:
            raise ApiError(503, "the model is still loading; retry shortly", {"Retry-After": str(config.retry_after_s)})
        return state["worker"]

    def session(image_id: str) -> SegmentedImage:
        found = cache.get(image_id)
        if found is None:
            raise ApiError(404, f"unknown image id {image_id!r} (never uploaded, or evicted from the cache): upload it again")
        return found

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get(f"{API}/health", response_model=HealthOut)
    async def health() -> HealthOut:
        w = state["worker"]
        return HealthOut(
            status="ok" if w else "starting",
            ready=w is not None,
            model=state["model_name"] if model is None else "custom",
            device=str(w.model.device) if w else "",
            precision=w.model.precision if w else "",
            queued=w.pending if w else 0,
            cached_images=len(cache),
            cache_bytes=cache.nbytes,
        )

    async def _read_upload(request: Request) -> tuple[bytes, str]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_upload_bytes + 64 * 1024:
            raise ApiError(413, f"upload of {int(length)} bytes is larger than the limit of {config.max_upload_bytes} bytes")
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "multipart upload needs a file field named 'file'")
            data, name = await upload.read(), upload.filename or ""
        else:
            chunks, total = [], 0
            async for chunk in request.stream():
                total += len(chunk)
                if total > config.max_upload_bytes:
                    raise ApiError(413, f"upload larger than the limit of {config.max_upload_bytes} bytes")
                chunks.append(chunk)
            data, name = b"".join(chunks), request.headers.get("x-file-name", "")
        if len(data) > config.max_upload_bytes:
            raise ApiError(413, f"upload of {len(data)} bytes is larger than the limit of {config.max_upload_bytes} bytes")
        if not data:
            raise ApiError(422, "empty upload: send an image file as the request body or as multipart field 'file'")
        return data, name

    def _decode(data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
        except Image.DecompressionBombError:
            raise ApiError(413, f"image has too many pixels (at most {config.max_pixels})") from None
        except Exception:
            raise ApiError(415, "the upload is not a readable image (JPEG, PNG, TIFF, WebP, BMP, GIF)") from None
        if width * height > config.max_pixels:
            raise ApiError(413, f"image of {width}x{height} pixels exceeds the limit of {config.max_pixels} pixels")
        try:
            return load_image(Image.open(io.BytesIO(data)))
        except (ImageLoadError, ValueError) as err:
            raise ApiError(415, f"the upload is not a readable image: {err}") from None

    @app.post(f"{API}/images", response_model=ImageOut, status_code=201)
    async def upload(
        request: Request,
        imgsz: int = Query(1024, ge=32, le=4096, multiple_of=32),
        conf: float = Query(0.4, ge=0.0, le=1.0),
        iou: float = Query(0.9, ge=0.0, le=1.0),
        max_det: int = Query(300, ge=1, le=1000),
        retina: bool = Query(True),
    ) -> ImageOut:
        """Segment an image (multipart field ``file``, or the raw bytes as the body). Returns every mask."""
        w = worker()
        data, name = await _read_upload(request)
        image = await run_in_threadpool(_decode, data)
        start = time.perf_counter()
        try:
            future = w.submit(image, InferenceSettings(imgsz, conf, iou, max_det, retina))
        except QueueFullError:
            raise ApiError(503, "server busy: too many images waiting; retry later", {"Retry-After": str(config.retry_after_s)}) from None
        result = await asyncio.wrap_future(future)
        elapsed = (time.perf_counter() - start) * 1000
        result.file_name = name

        def finish() -> tuple[str, list[MaskOut]]:
            masks = _mask_out(result)
            segmented = SegmentedImage(result, text_scorer, device=str(w.model.device))
            nbytes = segmented.release_masks()
            image_id = uuid.uuid4().hex
            cache.put(image_id, segmented, nbytes)
            listings.put(image_id, masks, sum(len(m.segmentation.counts) + 200 for m in masks))
            return image_id, masks

        image_id, masks = await run_in_threadpool(finish)
        h, wd = result.image_size
        return ImageOut(image_id=image_id, width=wd, height=h, file_name=name, masks=masks, elapsed_ms=elapsed)

    @app.get(f"{API}/images/{{image_id}}", response_model=ImageOut)
    def get_image(image_id: str) -> ImageOut:
        """Every mask of an uploaded image."""
        s = session(image_id)
        masks = listings.get(image_id) or _mask_out(s.everything())
        h, w = s.image_size
        return ImageOut(image_id=image_id, width=w, height=h, file_name=s.result.file_name, masks=masks)

    @app.delete(f"{API}/images/{{image_id}}", status_code=204)
    def delete_image(image_id: str) -> Response:
        session(image_id)
        cache.pop(image_id)
        listings.pop(image_id)
        return Response(status_code=204)

    def _run_prompt(s: SegmentedImage, body: PromptIn) -> SegmentationResult:
        try:
            return s.prompt(
                points=body.points, labels=body.labels, boxes=body.boxes, texts=body.texts,
                multimask=body.multimask, mode=body.mode, top_k=body.top_k,
            )  # fmt: skip
        except ValueError as err:
            raise ApiError(422, str(err)) from None
        except FastSAMError as err:
            raise ApiError(503, f"text prompts are unavailable on this server: {err}") from None

    @app.post(f"{API}/images/{{image_id}}/prompt", response_model=PromptOut)
    def prompt(image_id: str, body: PromptIn) -> PromptOut:
        """Select masks of an uploaded image with points, boxes and/or texts (no network run)."""
        result = _run_prompt(session(image_id), body)
        return PromptOut(image_id=image_id, masks=_mask_out(result))

    @app.post(f"{API}/images/{{image_id}}/overlay", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def overlay_png(image_id: str, body: OverlayIn) -> Response:
        """A PNG of the image with the chosen masks painted: ``indices``, else the prompt's answer, else all."""
        s = session(image_id)
        if body.indices is not None:
            bad = [i for i in body.indices if not 0 <= i < len(s)]
            if bad:
                raise ApiError(422, f"mask index {bad[0]} does not exist (the image has {len(s)} masks)")
            result = s.pick(np.array(body.indices, dtype=np.int64), np.arange(len(body.indices)))
        else:
            result = _run_prompt(s, body)
        picture = overlay(s.result.image, result.masks, alpha=body.alpha, contours=body.contours,
                          random_colors=body.random_colors)  # fmt: skip
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
        return Response(buffer.getvalue(), media_type="image/png")

    return app
