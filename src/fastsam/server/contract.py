"""What the OpenAPI schema says beyond what FastAPI infers from the endpoints.

* the upload's request body: ``multipart/form-data`` with a binary ``file`` field, or the raw image bytes
  (``image/png``, ``image/jpeg``, ...);
* links from the upload's answer (``image_id``) to the operations on that image, for clients and stateful tests;
* the ``X-Request-ID`` header of every answer, ``WWW-Authenticate`` with 401 and ``Retry-After`` with 503;
* no FastAPI default validation-error schema: every error is :class:`~fastsam.server.schemas.ErrorOut`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/tiff", "image/bmp", "image/gif")
BINARY = {"type": "string", "format": "binary"}

UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "description": "The image: a multipart form with the file in field `file`, or the file's bytes as the body.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {**BINARY, "description": "the image file (JPEG, PNG, TIFF, WebP, BMP, GIF)"}},
            },
            "encoding": {"file": {"contentType": ", ".join(IMAGE_TYPES)}},
        },
        **{media: {"schema": BINARY} for media in IMAGE_TYPES},
        "application/octet-stream": {"schema": BINARY},
    },
}

_IMAGE_ID = {"image_id": "$response.body#/image_id"}
UPLOAD_LINKS: dict[str, Any] = {
    name: {"operationId": operation, "parameters": _IMAGE_ID, "description": description}
    for name, operation, description in (
        ("GetImage", "getImage", "every mask of the uploaded image"),
        ("DeleteImage", "deleteImage", "forget the uploaded image"),
        ("PromptImage", "promptImage", "prompt the uploaded image"),
        ("OverlayImage", "overlayImage", "render masks of the uploaded image"),
    )
}

_HEADERS = {
    "X-Request-ID": {
        "description": "the request's id (the client's own X-Request-ID when it sent a sensible one); the access log "
        "names it",
        "required": True,
        "schema": {"type": "string"},
    },
}
_STATUS_HEADERS = {
    "401": {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}},
    "503": {"Retry-After": {"description": "seconds to wait", "required": True, "schema": {"type": "string"}}},
}


def finish_schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI schema with the additions of this module (made once, then cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            default_422 = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if default_422.get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
            for status, response in responses.items():
                response.setdefault("headers", {}).update({**_HEADERS, **_STATUS_HEADERS.get(status, {})})
    for unused in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(unused, None)
    app.openapi_schema = schema
    return schema
