"""Helpers of the server tests: a live server (uvicorn on a free loopback port, in a background thread), a
stand-in text scorer, and the 600x400 photo the hostile-request tests use."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def serve(app, ready_path: str = "/api/v1/health", timeout_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields the base URL once ``ready_path`` answers ``"ready": true``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with urllib.request.urlopen(base + ready_path, timeout=2) as r:
                    if json.load(r).get("ready"):
                        break
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the live server did not start within {timeout_s:g} s")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class ColourScorer:
    """Stands in for CLIP (no weights needed): scores each crop by one colour channel's mean, chosen by the text."""

    def __call__(self, crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        means = np.array([c.reshape(-1, 3).mean(0) if c.size else np.zeros(3) for c in crops], dtype=np.float32)
        return np.stack([means[:, len(t) % 3] for t in texts]).astype(np.float32).reshape(len(texts), len(crops))


def photo_600x400(photo_path: Path) -> bytes:
    """The real photo resized to 600x400, as JPEG bytes."""
    import io

    from PIL import Image

    with Image.open(photo_path) as im:
        out = io.BytesIO()
        im.convert("RGB").resize((600, 400)).save(out, format="JPEG", quality=90)
    return out.getvalue()
