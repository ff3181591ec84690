"""The HTTP side of the Label Studio ML backend: a small FastAPI app speaking Label Studio's ML backend protocol.

Endpoints: ``GET /`` and ``GET /health`` (``{"status": "UP", ...}``), ``POST /setup``, ``POST /predict``,
``POST /webhook`` (events such as ANNOTATION_CREATED: acknowledged), ``GET /versions``. Errors answer with their
status and ``{"error": message}``; the backend keeps serving whatever a request holds.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from .backend import FastSAMBackend
from .errors import LabelStudioError

__all__ = ["create_app"]

LOGGER = logging.getLogger("fastsam.label_studio")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, "errors": [message]})


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise LabelStudioError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise LabelStudioError("the request body must be a JSON object")
    return body


def create_app(backend: FastSAMBackend) -> FastAPI:
    """The ASGI app serving ``backend`` (run it with uvicorn, as ``fastsam label-studio`` does)."""
    app = FastAPI(title="FastSAM ML backend for Label Studio", version=backend.model_version)
    app.state.backend = backend

    @app.exception_handler(LabelStudioError)
    async def label_studio_error(request: Request, err: LabelStudioError) -> JSONResponse:
        LOGGER.warning("%s %s: %s", request.method, request.url.path, err)
        return _error(err.status, str(err))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:  # a bug: logged in full, answered in one line
        LOGGER.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"{type(err).__name__}: {err}")

    @app.get("/")
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return backend.health()

    @app.post("/setup")
    async def setup(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(backend.setup, await _json_body(request))

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(backend.predict, await _json_body(request))

    @app.post("/webhook", status_code=201)
    async def webhook(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        LOGGER.info("webhook %s", body.get("action", "?"))
        return {"status": "ok"}

    @app.get("/versions")
    async def versions() -> dict[str, Any]:
        return {"versions": [backend.model_version]}

    return app
