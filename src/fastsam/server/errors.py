"""Every error of the HTTP API is ``{"error": "one line"}`` with a status that says whose fault it is.

:class:`ApiError` is raised by the endpoints; :func:`install_error_handlers` turns it, request validation errors,
unknown paths, wrong methods and ``MemoryError`` into that model. ``OPTIONS`` on any API path answers 204 with
the ``Allow`` header listing every method of the path (Starlette's own 405 lists only one route's methods).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .limits import OPTION, Limits
from .schemas import ErrorOut

DESCRIPTIONS = {
    401: "Missing or wrong API key (send `Authorization: Bearer KEY`)",
    404: "Unknown image id (never uploaded, evicted from the cache, deleted, or uploaded with another key)",
    413: "Too large: the upload (bytes or pixels), the JSON body, or the memory the request would need; the "
    "message names the limit and the serve option that sets it",
    415: "The upload is not a readable image",
    422: "Invalid request: a field, a prompt outside the image, or more prompts than the server's limits",
    503: "The model is loading, the inference queue is full, text prompts are unavailable, or the server ran "
    "out of memory: retry after `Retry-After` seconds",
}

LIMITED_FIELDS = {
    "points": "max_points",
    "labels": "max_points",
    "boxes": "max_boxes",
    "texts": "max_texts",
    "indices": "max_indices",
}


class ApiError(Exception):
    """An answer other than success: ``status``, a one-line ``message`` and optional response ``headers``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of an endpoint's possible errors (all :class:`ErrorOut`)."""
    return {code: {"model": ErrorOut, "description": DESCRIPTIONS[code]} for code in codes}


def validation_message(errors: list[dict[str, Any]], limits: Limits) -> str:
    """One line for pydantic's validation errors; a count, ``top_k``, text length or ``imgsz`` over a limit names
    the limit and its ``fastsam serve`` option."""
    parts = []
    for e in errors[:3]:
        loc = list(e.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        where = ".".join(str(p) for p in loc) or "body"
        ctx = e.get("ctx") or {}
        kind = e.get("type", "")
        if kind == "too_long" and len(loc) == 1 and loc[0] in LIMITED_FIELDS:
            given = len(e["input"]) if isinstance(e.get("input"), list) else ctx.get("actual_length")
            limit = LIMITED_FIELDS[str(loc[0])]
            parts.append(f"{where}: {given} given, more than the limit of {ctx.get('max_length')} per request "
                         f"(fastsam serve {OPTION[limit]})")  # fmt: skip
        elif kind == "less_than_equal" and loc in (["top_k"], ["imgsz"]):
            option = OPTION["max_top_k" if loc == ["top_k"] else "max_imgsz"]
            limit = ctx.get("le")
            parts.append(f"{where}: {e.get('input')} is more than the limit of {limit} (fastsam serve {option})")
        elif kind == "string_too_long" and loc[:1] == ["texts"]:
            parts.append(f"{where}: longer than the limit of {ctx.get('max_length')} characters "
                         f"(fastsam serve {OPTION['max_text_chars']})")  # fmt: skip
        else:
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "invalid request: " + "; ".join(parts) + more


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path (HEAD with GET, and OPTIONS)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order)) + ["OPTIONS"]


def install_error_handlers(app: FastAPI, limits: Limits, retry_after_s: int) -> None:
    """Answer every error as :class:`ErrorOut`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_message(list(err.errors()), limits)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> Response:
        if err.status_code == 405:
            allow = ", ".join(allowed_methods(request))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            message = f"{request.method} is not allowed on {request.url.path}: use {allow}"
            return JSONResponse({"error": message}, status_code=405, headers={"Allow": allow})
        if err.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path} (the API is under /api/v1, see /docs)"
            return JSONResponse({"error": message}, status_code=404)
        if err.status_code == 400:  # a body FastAPI could not parse (not UTF-8, bad form data): invalid, like the rest
            return JSONResponse({"error": f"invalid request: {err.detail}"}, status_code=422)
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(MemoryError)
    async def _out_of_memory(request: Request, err: MemoryError) -> JSONResponse:
        message = "the server ran out of memory for this request: retry later, or send fewer prompts"
        return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": str(retry_after_s)})
