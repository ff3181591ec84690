"""Weight resolution: names, the cache, download on first use, the offline error."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
import torch

from fastsam import build, hub
from fastsam.errors import WeightsNotFoundError
from model_factory import random_network


@pytest.fixture()
def served_checkpoint(tmp_path: Path):
    """A random FastSAM-s-shaped .pt served over HTTP on loopback; yields (url, size)."""
    root = tmp_path / "www"
    root.mkdir()
    net = random_network("s", seed=2)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, root / "FastSAM-s.pt")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/FastSAM-s.pt", (root / "FastSAM-s.pt").stat().st_size
    server.shutdown()


def _use_spec(monkeypatch: pytest.MonkeyPatch, url: str, size: int | None) -> None:
    spec = build.ModelSpec("s", 16, "FastSAM-s.pt", url, size)
    monkeypatch.setitem(build.MODEL_REGISTRY, "FastSAM-s", spec)


def test_download_convert_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_checkpoint) -> None:
    url, size = served_checkpoint
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path / "cache"))
    _use_spec(monkeypatch, url, size)
    path = hub.resolve_weights("FastSAM-s")
    assert path == tmp_path / "cache" / "FastSAM-s.safetensors" and path.is_file()
    assert (tmp_path / "cache" / "FastSAM-s.pt").stat().st_size == size
    # second use: no network needed
    _use_spec(monkeypatch, "http://127.0.0.1:9/unreachable.pt", size)
    assert hub.resolve_weights("FastSAM-s.pt") == path


def test_size_mismatch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_checkpoint) -> None:
    url, size = served_checkpoint
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path / "cache"))
    _use_spec(monkeypatch, url, size + 1)
    with pytest.raises(WeightsNotFoundError, match="expected"):
        hub.resolve_weights("FastSAM-s")
    assert not any((tmp_path / "cache").iterdir())


def test_offline_error_names_file_address_and_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/FastSAM-s.pt"  # the discard port: connection refused
    _use_spec(monkeypatch, url, None)
    with pytest.raises(WeightsNotFoundError) as info:
        hub.resolve_weights("FastSAM-s")
    message = str(info.value)
    assert "FastSAM-s.pt" in message and url in message and str(tmp_path / "cache" / "FastSAM-s.pt") in message


def test_paths_and_unknown_names(tmp_path: Path) -> None:
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"x")
    assert hub.resolve_weights(weights) == weights
    with pytest.raises(WeightsNotFoundError, match="FastSAM-x"):
        hub.resolve_weights("FastSAM-q")


def test_default_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FASTSAM_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / "fastsam"


def test_registry_matches_published_architectures() -> None:
    assert build.MODEL_REGISTRY["FastSAM-x"].reg_max == 26 and build.MODEL_REGISTRY["FastSAM-x"].scale == "x"
    assert build.MODEL_REGISTRY["FastSAM-s"].reg_max == 16 and build.MODEL_REGISTRY["FastSAM-s"].scale == "s"
    assert sum(p.numel() for p in build.build_fastsam("FastSAM-x").parameters()) == 72_234_149
    assert sum(p.numel() for p in build.build_fastsam("FastSAM-s").parameters()) == 11_790_483


def test_cached_weights_have_the_usual_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_checkpoint
) -> None:
    import os

    url, size = served_checkpoint
    monkeypatch.setenv("FASTSAM_HOME", str(tmp_path / "cache"))
    _use_spec(monkeypatch, url, size)
    old = os.umask(0o022)
    try:
        path = hub.resolve_weights("FastSAM-s")
    finally:
        os.umask(old)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["FastSAM-s.pt", "FastSAM-s.safetensors"]
    for cached in (path, tmp_path / "cache" / "FastSAM-s.pt"):
        assert cached.stat().st_mode & 0o777 == 0o644, f"{cached.name}: {oct(cached.stat().st_mode)}"
