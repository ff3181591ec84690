"""Fetching a task's image from where Label Studio keeps it, with the user's API token.

As Label Studio's own ML backends do: ``LABEL_STUDIO_URL`` (or ``LABEL_STUDIO_HOST``) is Label Studio's address and
``LABEL_STUDIO_API_KEY`` (or ``LABEL_STUDIO_ACCESS_TOKEN``) the token; without them, the ``hostname`` and
``access_token`` that Label Studio sent to ``/setup`` are used. URLs are resolved as follows:

* relative URLs (uploads ``/data/upload/...``, local storage ``/data/local-files/?d=...``) are fetched from Label
  Studio; local-storage files are read from disk when ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` is set here too;
* cloud URIs (``s3://``, ``gs://``, ``azure-blob://``) through Label Studio's ``/tasks/<id>/presign/?fileuri=``;
* other ``http(s)`` URLs directly; the token is only sent to Label Studio's own host;
* ``data:`` URIs are decoded in place.

The token is sent as ``Token <key>``, or, for a JWT personal access token, exchanged at ``/api/token/refresh/``
for an access token sent as ``Bearer <access>``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import posixpath
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote_to_bytes, urljoin, urlparse

import httpx
import numpy as np
from PIL import Image

from ...errors import ImageLoadError
from ...io import load_image
from .errors import LabelStudioError

__all__ = ["ImageFetcher", "LabelStudioAccess"]

CLOUD_SCHEMES = ("s3", "gs", "azure-blob")


@dataclass(frozen=True)
class LabelStudioAccess:
    """Where Label Studio is and the token to show it (either may be unknown: None)."""

    url: str | None = None
    token: str | None = None

    @classmethod
    def from_env(cls) -> LabelStudioAccess:
        url = os.environ.get("LABEL_STUDIO_URL") or os.environ.get("LABEL_STUDIO_HOST") or None
        token = os.environ.get("LABEL_STUDIO_API_KEY") or os.environ.get("LABEL_STUDIO_ACCESS_TOKEN") or None
        return cls(url.rstrip("/") if url else None, token)

    def merged(self, fallback: LabelStudioAccess) -> LabelStudioAccess:
        """These values, each missing one taken from ``fallback``."""
        return LabelStudioAccess(self.url or fallback.url, self.token or fallback.token)


def _is_jwt(token: str) -> dict | None:
    """The claims of a JWT (not verified: only to tell a personal access token from a legacy key), else None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


class ImageFetcher:
    """Fetch and decode task images (thread-safe).

    Args:
        access: Label Studio's address and token given here (default: the environment variables).
        timeout_s: seconds to wait for an answer.
        max_bytes: largest image accepted.
        local_root: Label Studio's local-files document root on this machine (default:
            ``$LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``; None: fetch local-storage files over HTTP).
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        access: LabelStudioAccess | None = None,
        timeout_s: float = 30.0,
        max_bytes: int = 100 * 1024 * 1024,
        local_root: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.access = access if access is not None else LabelStudioAccess.from_env()
        self.max_bytes = max_bytes
        root = local_root if local_root is not None else os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
        self.local_root = os.path.abspath(root) if root and os.path.abspath(root) != os.sep else None
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=True, transport=transport)
        self._bearer: dict[str, str] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def resolve(self, url: str, task_id: int | None, fallback: LabelStudioAccess | None = None) -> str:
        """The absolute URL (or ``file://`` path, or ``data:`` URI) the image is read from; also the cache key."""
        if not isinstance(url, str) or not url.strip():
            raise LabelStudioError(f"task {task_id} has no image URL in its data")
        url = url.strip()
        access = self.access.merged(fallback or LabelStudioAccess())
        scheme = urlparse(url).scheme.lower()
        if scheme in ("http", "https", "data"):
            return url
        if scheme in CLOUD_SCHEMES:
            if task_id is None:
                raise LabelStudioError(f"the cloud image {url} needs its task id to be presigned by Label Studio")
            encoded = base64.urlsafe_b64encode(url.encode()).decode()
            return self._on_label_studio(f"/tasks/{task_id}/presign/?fileuri={encoded}", url, access)
        if scheme:
            raise LabelStudioError(f"task {task_id}: cannot fetch the image URL {url} (scheme {scheme}://): use an "
                                   "upload, local storage, cloud storage or http(s) URL")  # fmt: skip
        local = self._local_file(url)
        return local if local is not None else self._on_label_studio(url, url, access)

    def _on_label_studio(self, path: str, original: str, access: LabelStudioAccess) -> str:
        if not access.url:
            raise LabelStudioError(
                f"the image URL {original} is served by Label Studio, whose address is unknown: set LABEL_STUDIO_URL "
                "(and LABEL_STUDIO_API_KEY) for the backend, or connect it to the project so that Label Studio calls /setup",
                status=502,
            )
        return urljoin(access.url.rstrip("/") + "/", path.lstrip("/"))

    def _local_file(self, url: str) -> str | None:
        if self.local_root is None or not url.startswith("/data/local-files"):
            return None
        values = parse_qs(urlparse(url).query).get("d")
        if not values:
            return None
        path = os.path.abspath(os.path.join(self.local_root, posixpath.normpath(values[-1]).lstrip("/")))
        if os.path.commonpath([path, self.local_root]) != self.local_root or not os.path.isfile(path):
            return None
        return "file://" + path

    def fetch(self, resolved: str, task_id: int | None, fallback: LabelStudioAccess | None = None) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 RGB image at a URL from :meth:`resolve` (EXIF orientation applied).

        Raises:
            LabelStudioError: unreachable (502), refused (502, naming the token variables), not an image (422).
        """
        shown = resolved if not resolved.startswith("data:") else "data: URI"
        if resolved.startswith("file://"):
            try:
                data = Path(resolved[len("file://"):]).read_bytes()
            except OSError as err:
                raise LabelStudioError(f"task {task_id}: cannot read the local-storage file {resolved}: {err}", status=422) from None
        elif resolved.startswith("data:"):
            data = _data_uri(resolved, task_id)
        else:
            data = self._download(resolved, task_id, self.access.merged(fallback or LabelStudioAccess()))
        try:
            with Image.open(io.BytesIO(data)) as img:
                return load_image(img)
        except (ImageLoadError, OSError, ValueError, Image.DecompressionBombError) as err:
            raise LabelStudioError(f"task {task_id}: the file at {shown} is not a readable image ({err})", status=422) from None

    def _headers(self, url: str, access: LabelStudioAccess) -> dict[str, str]:
        if not access.token or not access.url or urlparse(url).netloc != urlparse(access.url).netloc:
            return {}
        claims = _is_jwt(access.token)
        if claims is None:
            return {"Authorization": f"Token {access.token}"}
        if claims.get("token_type") != "refresh":
            return {"Authorization": f"Bearer {access.token}"}
        with self._lock:
            bearer = self._bearer.get(access.token)
        if bearer is None:
            bearer = self._refresh(access)
            with self._lock:
                self._bearer[access.token] = bearer
        return {"Authorization": f"Bearer {bearer}"}

    def _refresh(self, access: LabelStudioAccess) -> str:
        url = f"{access.url}/api/token/refresh/"
        try:
            response = self._client.post(url, json={"refresh": access.token})
        except httpx.HTTPError as err:
            raise LabelStudioError(f"Label Studio at {access.url} is unreachable ({err}): check LABEL_STUDIO_URL", status=502) from None
        access_token = response.json().get("access") if response.status_code == 200 else None
        if not isinstance(access_token, str):
            raise LabelStudioError(f"Label Studio refused the personal access token ({response.status_code} at {url}): "
                                   "set LABEL_STUDIO_API_KEY to a valid token", status=502)  # fmt: skip
        return access_token

    def _download(self, url: str, task_id: int | None, access: LabelStudioAccess) -> bytes:
        headers = self._headers(url, access)
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code in (401, 403):
                    hint = ("set LABEL_STUDIO_API_KEY to a valid token of a user of this project" if headers else
                            "set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY so that the backend can sign in")  # fmt: skip
                    raise LabelStudioError(f"task {task_id}: {url} answered {response.status_code} "
                                           f"({response.reason_phrase}): {hint}", status=502)  # fmt: skip
                if response.status_code >= 400:
                    raise LabelStudioError(f"task {task_id}: the image at {url} could not be fetched: "
                                           f"{response.status_code} {response.reason_phrase}", status=502)  # fmt: skip
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise LabelStudioError(f"task {task_id}: the image at {url} is larger than "
                                               f"{self.max_bytes // 2**20} MiB", status=422)  # fmt: skip
                    chunks.append(chunk)
        except httpx.HTTPError as err:
            where = "Label Studio" if access.url and url.startswith(access.url) else "the image host"
            raise LabelStudioError(f"task {task_id}: {where} is unreachable for {url} ({type(err).__name__}: {err})",
                                   status=502) from None  # fmt: skip
        return b"".join(chunks)


def _data_uri(uri: str, task_id: int | None) -> bytes:
    header, _, payload = uri.partition(",")
    try:
        return base64.b64decode(payload) if header.endswith(";base64") else unquote_to_bytes(payload)
    except (ValueError, binascii.Error):
        raise LabelStudioError(f"task {task_id}: the image data: URI is not valid base64", status=422) from None
