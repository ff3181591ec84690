"""ASGI middleware of the app: what happens to every request before and after the endpoint.

* :class:`RequestContext` (outermost): a request id on every answer (``X-Request-ID``: the client's own when it
  sends a sensible one, else a new one), the request's metrics, one JSON access-log line (logger
  ``fastsam.access``: request id, method, path, route, status, milliseconds, bytes sent, client address and the
  owner id of the API key, never the key), and a JSON 500 for anything unhandled (the server keeps serving).
* :class:`Guard` (inside CORS): API keys and the body limits, before any routing or body parsing.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import KeyRing
from .limits import OPTION, describe_bytes
from .metrics import Metrics

ACCESS_LOG = logging.getLogger("fastsam.access")
ERROR_LOG = logging.getLogger("fastsam.server")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def route_template(scope: Scope) -> str:
    """The path template of the route that serves (or would serve) this request; ``unmatched`` if none."""
    route = scope.get("route")
    if route is None and "app" in scope:
        for candidate in scope["app"].router.routes:
            match, _ = candidate.matches({**scope, "type": "http"})
            if match is not Match.NONE:
                route = candidate
                break
    return getattr(route, "path", None) or "unmatched"


class RequestContext:
    """Request id, metrics, access log and a last-resort JSON 500 (see the module docstring)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        given = _header(scope, b"x-request-id")
        request_id = given if given is not None and REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        answer = {"status": 500, "bytes": 0, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["started"], answer["status"] = True, message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # a bug: logged with its traceback, answered in the error model; the server goes on
            ERROR_LOG.exception("unhandled error in %s %s (request id %s)", scope["method"], scope["path"], request_id)
            if not answer["started"]:
                message = f"internal server error (request id {request_id}); the server keeps running"
                await JSONResponse({"error": message}, status_code=500)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"  # clients cannot add label values
            self.metrics.observe_request(method, route, int(answer["status"]), seconds)
            client = scope.get("client")
            ACCESS_LOG.info(json.dumps({
                "request_id": request_id, "method": scope["method"][:32], "path": scope["path"][:2048], "route": route,
                "status": answer["status"], "ms": round(seconds * 1000, 2), "bytes": answer["bytes"],
                "client": client[0] if client else None, "key": state.get("owner") or None,
            }))  # fmt: skip


class Guard:
    """API keys and the body limits, checked before routing and parsing.

    Args:
        app: the inner app.
        keys: accepted keys (None or empty: no keys needed). Paths under ``api_prefix`` other than ``open_paths``
            need one (``OPTIONS`` requests excepted); the owner id goes to ``scope["state"]["owner"]``.
        max_json_bytes: the largest body of any request except the upload (413 above, read or announced).
        upload_path: the upload endpoint (``POST``), whose body may be ``max_upload_bytes`` (plus 64 kB for a
            multipart form's own bytes).
    """

    def __init__(self, app: ASGIApp, keys: KeyRing | None, max_json_bytes: int, api_prefix: str,
                 open_paths: frozenset[str], upload_path: str, max_upload_bytes: int) -> None:  # fmt: skip
        self.app = app
        self.keys = keys if keys else None
        self.max_json_bytes = max_json_bytes
        self.api_prefix = api_prefix
        self.open_paths = open_paths
        self.upload_path = upload_path
        self.max_upload_bytes = max_upload_bytes

    def _refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def _too_large(self, size: str, upload: bool) -> str:
        if upload:
            return (f"upload of {size} is larger than the limit of {describe_bytes(self.max_upload_bytes)} (fastsam "
                    "serve --max-upload-mb)")  # fmt: skip
        limit = describe_bytes(self.max_json_bytes)
        return (f"request body of {size} is larger than the limit of {limit} (fastsam serve "
                f"{OPTION['max_json_bytes']}): send fewer prompts per request")  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        state = scope.setdefault("state", {})
        if self.keys is not None and path.startswith(self.api_prefix) and path not in self.open_paths \
                and method != "OPTIONS":  # fmt: skip
            authorization = _header(scope, b"authorization")
            owner = self.keys.owner(authorization)
            if owner is None:
                message = ("this server needs an API key: send it as 'Authorization: Bearer KEY'" if not authorization
                           else "API key not accepted: send a valid key as 'Authorization: Bearer KEY'")  # fmt: skip
                await self._refuse(401, message, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
            state["owner"] = owner
        upload = method == "POST" and path == self.upload_path
        limit = self.max_upload_bytes + 64 * 1024 if upload else self.max_json_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._refuse(413, self._too_large(describe_bytes(int(length)), upload))(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a body sent without its length: refused once over
                    raise HTTPException(413, self._too_large(f"more than {describe_bytes(limit)}", upload))
            return message

        await self.app(scope, limited_receive, send)


def owner_of(state: Any) -> str:
    """The owner id the :class:`Guard` found for this request ("" without keys)."""
    return getattr(state, "owner", "") or ""
