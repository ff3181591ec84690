"""API keys and CORS: without a key (or with a wrong one) every API call is 401; an image belongs to the key that
uploaded it; keys never reach the logs; CORS is off unless ``--cors-origin`` allows an origin; the command line
reads keys from options, a file and ``FASTSAM_API_KEYS`` and refuses unusable ones as usage errors."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the 'app' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402
from server_helpers import ColourScorer, photo_600x400  # noqa: E402

from fastsam.cli.main import main  # noqa: E402
from fastsam.server import ServerConfig, create_app  # noqa: E402
from fastsam.server.auth import owner_id  # noqa: E402

ALICE = "alice-key-7d1f0c9e2b4a6853"
BOB = "bob-key-0a9b8c7d6e5f4321"
ORIGIN = "https://label.example.com"


@pytest.fixture(scope="module")
def photo(photo_path: Path) -> bytes:
    return photo_600x400(photo_path)


@pytest.fixture(scope="module")
def keyed(tiny_model, photo: bytes):
    """(client, alice's image id): a server with two keys and CORS for one origin; Alice uploaded the photo."""
    config = ServerConfig(api_keys=(ALICE, BOB), cors_origins=(ORIGIN,))
    with TestClient(create_app(config, model=tiny_model, text_scorer=ColourScorer())) as client:
        upload = client.post("/api/v1/images?imgsz=128", content=photo, headers=bearer(ALICE))
        assert upload.status_code == 201, upload.text
        yield client, upload.json()["image_id"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def calls(image_id: str) -> list[tuple[str, str, dict]]:
    images = f"/api/v1/images/{image_id}"
    return [
        ("POST", "/api/v1/images", {"content": b"not even an image"}),
        ("GET", images, {}),
        ("DELETE", images, {}),
        ("POST", f"{images}/prompt", {"json": {"points": [[10, 10]]}}),
        ("POST", f"{images}/overlay", {"json": {}}),
        ("POST", f"{images}/prompt", {"content": b"{broken json"}),  # refused before the body is read
    ]


WRONG = [None, "Bearer wrong-key-but-long-enough", "Basic YWxpY2U6c2VjcmV0", f"Bearer {ALICE}x", ALICE]


@pytest.mark.parametrize("which", range(6))
@pytest.mark.parametrize("header", WRONG)
def test_every_api_call_without_a_valid_key_is_401(keyed, which: int, header: str | None) -> None:
    client, image_id = keyed
    method, path, kwargs = calls(image_id)[which]
    headers = {} if header is None else {"Authorization": header}
    response = client.request(method, path, headers=headers, **kwargs)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer" and "Authorization: Bearer KEY" in response.json()["error"]
    assert ALICE not in response.text
    assert client.get(f"/api/v1/images/{image_id}", headers=bearer(ALICE)).status_code == 200  # nothing was deleted


def test_open_paths_need_no_key(keyed) -> None:
    client, _ = keyed
    health = client.get("/api/v1/health")
    assert health.status_code == 200 and health.json()["auth"] is True and health.json()["ready"]
    for path in ("/", "/openapi.json", "/metrics", "/static/app.js"):
        assert client.get(path).status_code == 200, path


def test_an_image_belongs_to_the_key_that_uploaded_it(keyed, photo: bytes) -> None:
    client, alice_image = keyed
    for method, path, kwargs in calls(alice_image)[1:5]:  # get, delete, prompt, overlay
        assert client.request(method, path, headers=bearer(BOB), **kwargs).status_code == 404, (method, path)
    for method, path, kwargs in [c for c in calls(alice_image)[1:5] if c[0] != "DELETE"]:
        assert client.request(method, path, headers=bearer(ALICE), **kwargs).status_code == 200, (method, path)
    bob = client.post("/api/v1/images?imgsz=128", content=photo, headers=bearer(BOB))
    assert bob.status_code == 201
    bob_image = bob.json()["image_id"]
    assert client.get(f"/api/v1/images/{bob_image}", headers=bearer(ALICE)).status_code == 404
    assert client.delete(f"/api/v1/images/{bob_image}", headers=bearer(BOB)).status_code == 204
    assert client.get(f"/api/v1/images/{alice_image}", headers=bearer(ALICE)).status_code == 200


def test_keys_never_reach_the_logs(keyed, caplog: pytest.LogCaptureFixture) -> None:
    client, image_id = keyed
    with caplog.at_level(logging.DEBUG):
        client.get(f"/api/v1/images/{image_id}", headers=bearer(ALICE))
        client.get(f"/api/v1/images/{image_id}", headers=bearer(BOB + "-wrong"))
    lines = [r.getMessage() for r in caplog.records if r.name == "fastsam.access"]
    assert len(lines) == 2
    ok, refused = (json.loads(line) for line in lines)
    assert (ok["status"], ok["key"]) == (200, owner_id(ALICE)) and (refused["status"], refused["key"]) == (401, None)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert ALICE not in everything and BOB not in everything


def test_cors_is_off_by_default_and_allows_only_the_given_origin(keyed, tiny_model) -> None:
    client, image_id = keyed
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    allowed = client.options(f"/api/v1/images/{image_id}/prompt", headers=preflight)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    simple = client.get(f"/api/v1/images/{image_id}", headers={"Origin": ORIGIN, **bearer(ALICE)})
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    other = client.get(f"/api/v1/images/{image_id}", headers={"Origin": "https://evil.example", **bearer(ALICE)})
    assert "access-control-allow-origin" not in other.headers
    with TestClient(create_app(ServerConfig(), model=tiny_model)) as plain:
        answer = plain.options("/api/v1/images", headers={**preflight, "Origin": "https://anywhere.example"})
        assert "access-control-allow-origin" not in answer.headers
        assert "access-control-allow-origin" not in plain.get("/api/v1/health", headers={"Origin": ORIGIN}).headers


# --------------------------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list:
    served: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append((app, kwargs)))
    monkeypatch.delenv("FASTSAM_API_KEYS", raising=False)
    return served


@pytest.mark.parametrize(
    "options,message",
    [
        (["--api-key", "short"], "API key #1 has 5 characters: use at least 16"),
        (["--api-key", "a key with spaces in it"], "API key #1 has spaces"),
        (["--api-keys-file", "/nonexistent/keys.txt"], "--api-keys-file: cannot read the API keys file"),
        (["--cors-origin", "label.example.com"], "--cors-origin 'label.example.com' is not an origin"),
        (["--cors-origin", "https://x.org/path"], "is not an origin"),
        (["--max-points", "0"], "--max-points must be a positive whole number"),
        (["--max-imgsz", "1000"], "--max-imgsz must be a multiple of 32"),
        (["--max-json-kb", "0"], "--max-json-kb must be a positive whole number"),
    ],
)
def test_unusable_options_are_usage_errors(no_uvicorn: list, capsys: pytest.CaptureFixture, options: list[str],
                                           message: str) -> None:  # fmt: skip
    assert main(["serve", "--model", "never-loaded.pt", *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastsam serve: error: ") and message in err[0], err
    assert no_uvicorn == []


def test_keys_from_option_file_and_environment(no_uvicorn: list, tiny_weights: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# the team\n{BOB}\n\n")
    monkeypatch.setenv("FASTSAM_API_KEYS", "carol-key-5e6f7a8b9c0d1e2f, dave-key-1a2b3c4d5e6f7a8b")
    assert main(["serve", "--model", str(tiny_weights), "--device", "cpu", "--api-key", ALICE,
                 "--api-keys-file", str(keys_file), "--cors-origin", ORIGIN, "--max-boxes", "7"]) == 0  # fmt: skip
    [(app, kwargs)] = no_uvicorn
    assert kwargs["access_log"] is False and "fastsam.access" in kwargs["log_config"]["loggers"]
    with TestClient(app) as client:
        for key in (ALICE, BOB, "carol-key-5e6f7a8b9c0d1e2f", "dave-key-1a2b3c4d5e6f7a8b"):
            assert client.get("/api/v1/images/none", headers=bearer(key)).status_code == 404, key
        assert client.get("/api/v1/images/none", headers=bearer("eve-key-0000000000000000")).status_code == 401
        assert client.get("/api/v1/health").json()["limits"]["max_boxes"] == 7


@pytest.mark.slow
def test_served_process_logs_one_json_line_per_request_and_no_key(tiny_weights: Path, photo: bytes,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FASTSAM_API_KEYS": ALICE}
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        command = [sys.executable, "-m", "fastsam.cli.main", "serve", "--model", str(tiny_weights), "--device", "cpu",
                   "--port", str(port)]  # fmt: skip
        server = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).json()["ready"]:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        sent = [
            httpx.post(f"{base}/api/v1/images?imgsz=128", content=photo, headers=bearer(ALICE), timeout=60),
            httpx.get(f"{base}/api/v1/images/none", headers=bearer(ALICE + "-not")),
            httpx.get(f"{base}/api/v1/images/none", headers={**bearer(ALICE), "X-Request-ID": "trace-42"}),
        ]
        assert [r.status_code for r in sent] == [201, 401, 404]
        assert sent[2].headers["x-request-id"] == "trace-42"
    finally:
        server.terminate()
        server.wait(30)
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    api = [line for line in lines if line["path"].startswith("/api/v1/images")]
    assert [(line["method"], line["status"]) for line in api] == [("POST", 201), ("GET", 401), ("GET", 404)]
    assert [line["request_id"] for line in api] == [r.headers["x-request-id"] for r in sent]
    assert api[0]["key"] == owner_id(ALICE) and api[1]["key"] is None and api[0]["route"] == "/api/v1/images"
    output = out.read_text() + err.read_text()
    assert ALICE not in output and '"GET /api/v1/images/none HTTP/1.1"' not in output  # uvicorn's own line is off
