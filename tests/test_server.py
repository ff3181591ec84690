"""The HTTP API: every endpoint and every bad input, with a random-weight model."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from fastsam.ops.rle import rle_to_mask  # noqa: E402
from fastsam.server import ServerConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(tiny_model):
    app = create_app(ServerConfig(max_upload_bytes=2_000_000, max_pixels=3_000_000, max_queue=4), model=tiny_model)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def uploaded(client, photo_path: Path) -> dict:
    with open(photo_path, "rb") as f:
        response = client.post("/api/v1/images?imgsz=256", files={"file": ("dog.jpg", f, "image/jpeg")})
    assert response.status_code == 201, response.text
    return response.json()


def test_health_and_page(client) -> None:
    body = client.get("/api/v1/health").json()
    assert body["ready"] is True and body["status"] == "ok" and body["device"] == "cpu"
    page = client.get("/")
    assert page.status_code == 200 and "FastSAM" in page.text
    assert "/api/v1/images" in client.get("/openapi.json").json()["paths"]


def test_upload_returns_all_masks(uploaded: dict) -> None:
    assert uploaded["width"] == 800 and uploaded["height"] == 534 and uploaded["file_name"] == "dog.jpg"
    masks = uploaded["masks"]
    assert len(masks) > 0 and [m["index"] for m in masks] == list(range(len(masks)))
    decoded = rle_to_mask([m["segmentation"] for m in masks[:5]])
    assert decoded.shape == (5, 534, 800)
    assert [int(d.sum()) for d in decoded] == [m["area"] for m in masks[:5]]


def test_raw_body_upload_and_get_and_delete(client, photo_path: Path) -> None:
    response = client.post("/api/v1/images?imgsz=128", content=photo_path.read_bytes(),
                           headers={"content-type": "image/jpeg", "x-file-name": "raw.jpg"})  # fmt: skip
    assert response.status_code == 201
    image_id = response.json()["image_id"]
    again = client.get(f"/api/v1/images/{image_id}").json()
    assert again["masks"] == response.json()["masks"] and again["file_name"] == "raw.jpg"
    assert client.delete(f"/api/v1/images/{image_id}").status_code == 204
    assert client.get(f"/api/v1/images/{image_id}").status_code == 404


def test_prompts(client, uploaded: dict) -> None:
    image_id = uploaded["image_id"]
    first = rle_to_mask([uploaded["masks"][0]["segmentation"]])[0]
    y, x = np.argwhere(first)[len(np.argwhere(first)) // 2]
    body = client.post(f"/api/v1/images/{image_id}/prompt", json={"points": [[int(x), int(y)]], "labels": [1]}).json()
    [mask] = body["masks"]
    assert rle_to_mask([mask["segmentation"]])[0][y, x] and mask["prompt_id"] == 0
    boxes = client.post(f"/api/v1/images/{image_id}/prompt", json={"boxes": [[0, 0, 400, 300], [400, 200, 800, 534]]})
    assert boxes.status_code == 200 and len(boxes.json()["masks"]) == 2
    multi = client.post(f"/api/v1/images/{image_id}/prompt", json={"points": [[int(x), int(y)]], "multimask": True})
    assert 1 <= len(multi.json()["masks"]) <= 3


def test_overlay(client, uploaded: dict) -> None:
    image_id = uploaded["image_id"]
    for body in ({}, {"indices": [0, 1]}, {"boxes": [[0, 0, 400, 300]], "contours": False}):
        response = client.post(f"/api/v1/images/{image_id}/overlay", json=body)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (800, 534)


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"points": [[5000, 10]]}, "outside"),
        ({"points": [[10, 10]], "labels": [3]}, "label"),
        ({"points": [[10, 10], [20, 20]], "labels": [1]}, "label"),
        ({"boxes": [[50, 50, 10, 10]]}, "inverted"),
        ({"boxes": [[1, 2, 3]]}, "boxes"),
        ({"mode": "merge"}, "mode"),
        ({"top_k": 0}, "top_k"),
    ],
)
def test_bad_prompts_are_422(client, uploaded: dict, body: dict, fragment: str) -> None:
    response = client.post(f"/api/v1/images/{uploaded['image_id']}/prompt", json=body)
    assert response.status_code == 422 and fragment in response.json()["error"]


def test_bad_uploads(client, photo_path: Path, tmp_path: Path) -> None:
    def post(data: bytes, ctype: str = "image/jpeg"):
        return client.post("/api/v1/images?imgsz=128", content=data, headers={"content-type": ctype})

    assert post(b"this is text").status_code == 415
    assert post(photo_path.read_bytes()[:2000]).status_code == 415  # truncated
    assert post(b"").status_code == 422
    assert post(b"\0" * 2_100_000).status_code == 413  # over the byte limit
    big = io.BytesIO()
    Image.new("L", (2000, 2000)).save(big, format="PNG")  # 4 Mpx > 3 Mpx limit, but a small file
    assert post(big.getvalue(), "image/png").status_code == 413
    assert client.post("/api/v1/images", files={"other": ("a", b"x")}).status_code == 422
    assert client.post("/api/v1/images?imgsz=100", content=photo_path.read_bytes()).status_code == 422
    assert client.get("/api/v1/images/nope").status_code == 404
    assert client.post("/api/v1/images/nope/prompt", json={}).status_code == 404
    # the server is still fine
    assert client.get("/api/v1/health").json()["ready"]


def test_full_queue_answers_503(tiny_model, photo_path: Path) -> None:
    gate = threading.Event()
    original = tiny_model.predict

    def slow_predict(*args, **kwargs):
        gate.wait(10)
        return original(*args, **kwargs)

    app = create_app(ServerConfig(max_queue=1, max_batch=1), model=tiny_model)
    tiny_model.predict = slow_predict
    try:
        with TestClient(app) as c:
            data = photo_path.read_bytes()
            codes: list[int] = []

            def send() -> None:
                codes.append(c.post("/api/v1/images?imgsz=64", content=data).status_code)

            threads = [threading.Thread(target=send) for _ in range(4)]
            for t in threads:
                t.start()
                time.sleep(0.2)
            gate.set()
            for t in threads:
                t.join(30)
            assert sorted(codes)[-1] == 503 and 201 in codes
            rejected = c.post("/api/v1/images?imgsz=64", content=data)
            assert rejected.status_code == 201  # the queue drained; new work is accepted again
    finally:
        tiny_model.predict = original


def test_cache_evicts_by_bytes(tiny_model, photo_path: Path) -> None:
    app = create_app(ServerConfig(cache_bytes=3_000_000), model=tiny_model)
    with TestClient(app) as c:
        ids = [c.post("/api/v1/images?imgsz=64", content=photo_path.read_bytes()).json()["image_id"] for _ in range(3)]
        health = c.get("/api/v1/health").json()
        assert health["cache_bytes"] <= 3_000_000
        assert c.get(f"/api/v1/images/{ids[-1]}").status_code == 200
        assert c.get(f"/api/v1/images/{ids[0]}").status_code == 404


@pytest.mark.slow
def test_fastsam_serve_process_starts_serves_and_shuts_down_gracefully(tiny_weights: Path, photo_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "fastsam.cli.main", "serve", "--model", str(tiny_weights), "--device", "cpu",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).json()["ready"]:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        uploaded = httpx.post(f"{base}/api/v1/images?imgsz=128", content=photo_path.read_bytes(), timeout=60)
        assert uploaded.status_code == 201
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
        # uvicorn finishes the requests and the lifespan (our worker drains its queue), then re-raises SIGTERM
        assert server.returncode in (0, -signal.SIGTERM), output
        assert "Waiting for application shutdown" in output and "Application shutdown complete" in output
        assert "Traceback" not in output
    finally:
        if server.poll() is None:
            server.kill()
