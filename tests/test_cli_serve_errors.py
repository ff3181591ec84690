"""``fastsam serve`` without usable weights: one ``error:`` line and exit 1 before the server starts, like the other
commands (``--debug`` shows the traceback); with good weights the loaded model is what the server uses."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the 'app' extra is not installed")

from fastsam import build  # noqa: E402
from fastsam.cli.main import main  # noqa: E402


@pytest.fixture()
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list:
    """Record uvicorn.run calls instead of serving."""
    calls: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    return calls


def stderr_lines(capsys: pytest.CaptureFixture) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_missing_weights_file_is_one_line(no_uvicorn: list, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--model", "nope.pt", "--device", "cpu"]) == 1
    lines = stderr_lines(capsys)
    assert lines == [lines[0]] and lines[0].startswith("error: weights not found: nope.pt")
    assert no_uvicorn == []  # the server never started


def test_offline_default_model_is_one_line(
    no_uvicorn: list, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: the download is refused
    url = f"http://127.0.0.1:{port}/FastSAM-x.pt"
    offline = dataclasses.replace(build.MODEL_REGISTRY["FastSAM-x"], url=url)
    monkeypatch.setitem(build.MODEL_REGISTRY, "FastSAM-x", offline)
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path / "cache"))
    assert main(["serve", "--device", "cpu"]) == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: FastSAM-x.pt is not in"), lines
    assert url in lines[0] and str(tmp_path / "cache" / "FastSAM-x.pt") in lines[0]
    assert no_uvicorn == []


def test_debug_shows_the_traceback(no_uvicorn: list, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--model", "nope.pt", "--device", "cpu", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "WeightsNotFoundError" in err


def test_missing_clip_checkpoint_is_one_line(
    no_uvicorn: list, capsys: pytest.CaptureFixture, tiny_weights: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "clip.safetensors"
    assert main(["serve", "--model", str(tiny_weights), "--device", "cpu", "--clip-checkpoint", str(missing)]) == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"error: --clip-checkpoint {missing}: no such file"), lines
    assert no_uvicorn == []


def test_good_weights_start_the_server_with_that_model(
    no_uvicorn: list, tiny_weights: Path, tmp_path: Path, photo_path: Path
) -> None:
    from fastapi.testclient import TestClient

    clip = tmp_path / "clip.safetensors"
    clip.write_bytes(b"only checked for existence here")
    assert main(["serve", "--model", str(tiny_weights), "--device", "cpu", "--port", "8123",
                 "--clip-checkpoint", str(clip)]) == 0  # fmt: skip
    [(app, kwargs)] = no_uvicorn
    assert kwargs["port"] == 8123
    with TestClient(app) as client:
        health = client.get("/api/v1/health").json()
        assert health["ready"] and health["model"] == str(tiny_weights) and health["device"] == "cpu"
        upload = client.post("/api/v1/images?imgsz=128", content=photo_path.read_bytes())
        assert upload.status_code == 201
        # the configured checkpoint is what text prompts load (this one is not a CLIP file: a clear 503)
        answer = client.post(f"/api/v1/images/{upload.json()['image_id']}/prompt", json={"texts": ["a dog"]})
        assert answer.status_code == 503 and str(clip) in answer.json()["error"]


def test_process_exit_code_and_output(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fastsam.cli.main", "serve", "--model", str(tmp_path / "nope.pt"), "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"error: weights not found: {tmp_path / 'nope.pt'} (not a file, and not one of the named "
                     "models: FastSAM-s, FastSAM-x)"]  # fmt: skip
