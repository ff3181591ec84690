"""Text prompts without internet: CLIP fails fast, the failure is remembered, and a local checkpoint file works.

No network is simulated by pointing the Hugging Face hub at a closed loopback port (what ``HF_ENDPOINT`` does at
import time) and giving it an empty cache. ``--clip-checkpoint`` is tested with a random-init ViT-B-32 (the CLIP
model FastSAM uses) saved as ``open_clip_model.safetensors``, the file the hub serves for the ``openai`` tag.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
huggingface_hub = pytest.importorskip("huggingface_hub")

from fastsam.prompts import text as text_module  # noqa: E402
from fastsam.prompts.text import ClipScorer, ClipUnavailableError, clear_clip_cache  # noqa: E402

REPO = "timm/vit_base_patch32_clip_224.openai"  # where open_clip fetches ViT-B-32 'openai' from
EXPECTED = "open_clip_model.safetensors"


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The hub at a closed port, an empty hub cache, online mode, and probe/download call counters."""
    from huggingface_hub import constants

    endpoint = f"http://127.0.0.1:{closed_port()}"
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    calls = {"probe": 0, "download": 0, "endpoint": endpoint, "cache": cache}
    probe, download = huggingface_hub.get_hf_file_metadata, open_clip.download_pretrained

    def counted_probe(*args, **kwargs):
        calls["probe"] += 1
        return probe(*args, **kwargs)

    def counted_download(*args, **kwargs):
        calls["download"] += 1
        return download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", counted_probe)
    monkeypatch.setattr(open_clip, "download_pretrained", counted_download)
    clear_clip_cache()
    yield calls
    clear_clip_cache()


def assert_actionable(message: str, cache: Path) -> None:
    """The offline message names the file expected, where it goes, and the flag that takes it instead."""
    assert "ViT-B-32" in message and "openai" in message and "unreachable" in message
    assert EXPECTED in message and REPO in message
    assert str(cache / "models--timm--vit_base_patch32_clip_224.openai") in message
    assert "--clip-checkpoint PATH" in message and "ClipScorer(checkpoint=PATH)" in message
    assert "\n" not in message


def timed_error(call) -> tuple[float, str]:
    start = time.perf_counter()
    with pytest.raises(ClipUnavailableError) as info:
        call()
    return time.perf_counter() - start, str(info.value)


def test_unreachable_hub_fails_fast_and_is_remembered(no_network: dict) -> None:
    first_s, first = timed_error(lambda: ClipScorer().load())
    assert first_s < 10, f"the first failure took {first_s:.1f} s"
    assert_actionable(first, no_network["cache"])
    assert no_network["probe"] == 1 and no_network["download"] == 0  # one quick request, no retried download
    # Another scorer (as every new request makes): the failure is remembered, no network at all.
    second_s, second = timed_error(lambda: ClipScorer().load())
    assert second_s < 1, f"the second failure took {second_s:.2f} s"
    assert second == first
    assert no_network["probe"] == 1 and no_network["download"] == 0
    # clear_clip_cache() forgets it: the network is tried again.
    clear_clip_cache()
    timed_error(lambda: ClipScorer().load())
    assert no_network["probe"] == 2


def test_hf_hub_offline_fails_without_any_request(no_network: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    elapsed, message = timed_error(lambda: ClipScorer().load())
    assert elapsed < 1 and "HF_HUB_OFFLINE" in message and EXPECTED in message and "--clip-checkpoint" in message
    assert no_network["probe"] == 0 and no_network["download"] == 0


def test_predictor_text_fails_fast_twice(no_network: dict, tiny_model, photo_path: Path) -> None:
    from fastsam.predictor import FastSAMPredictor

    predictor = FastSAMPredictor(tiny_model, imgsz=256)
    predictor.set_image(photo_path)
    first_s, first = timed_error(lambda: predictor.text("a dog"))
    second_s, second = timed_error(lambda: predictor.text(["a dog", "grass"]))
    assert first_s < 10 and second_s < 1, (first_s, second_s)
    assert second == first
    assert_actionable(first, no_network["cache"])
    assert len(predictor.points([[400, 300]])) == 1  # the other prompts still work


def test_http_text_prompt_fails_fast_twice_and_server_stays_up(no_network: dict, tiny_model, photo_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
    from fastapi.testclient import TestClient

    from fastsam.server import ServerConfig, create_app

    with TestClient(create_app(ServerConfig(), model=tiny_model)) as client:
        upload = client.post("/api/v1/images?imgsz=256", content=photo_path.read_bytes())
        assert upload.status_code == 201
        url = f"/api/v1/images/{upload.json()['image_id']}/prompt"
        answers = []
        for _ in range(2):
            start = time.perf_counter()
            response = client.post(url, json={"texts": ["a dog"]})
            answers.append((time.perf_counter() - start, response))
        (first_s, first), (second_s, second) = answers
        assert first.status_code == 503 and second.status_code == 503
        assert first_s < 10 and second_s < 1, (first_s, second_s)
        assert first.json()["error"] == second.json()["error"]
        assert first.json()["error"].startswith("text prompts are unavailable on this server: ")
        assert_actionable(first.json()["error"], no_network["cache"])
        assert client.post(url, json={"points": [[400, 300]]}).status_code == 200
        blank = client.post(url, json={"texts": ["  "]})  # a bad query is still the client's error, not CLIP's
        assert blank.status_code == 422 and "texts[0]" in blank.json()["error"]
        assert no_network["probe"] == 1


def test_cli_text_offline_is_one_line_and_fast(tiny_weights: Path, photo_path: Path, tmp_path: Path) -> None:
    """The real environment variable (HF_ENDPOINT read at import) in a fresh process, through ``fastsam segment``."""
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_HUB_CACHE", None)
    code = (
        "import sys, time; import open_clip; from fastsam.cli.main import main; "  # imports are not the wait
        "start = time.perf_counter(); rc = main(sys.argv[1:]); "
        "print(f'ELAPSED {time.perf_counter() - start:.2f}')"
        "; sys.exit(rc)"
    )
    args = ["segment", str(photo_path), "--model", str(tiny_weights), "--device", "cpu", "--text", "a dog",
            "--out", str(tmp_path / "out"), "--imgsz", "256"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: CLIP weights for model 'ViT-B-32'"), done.stderr
    assert_actionable(lines[0], tmp_path / "hf" / "hub")
    elapsed = float(done.stdout.split("ELAPSED")[1])
    assert elapsed < 10, elapsed
    assert not (tmp_path / "out" / "dog.json").exists()  # CLIP is checked before any image is segmented


# --------------------------------------------------------------------------------------------------------------
# A local checkpoint: --clip-checkpoint, ClipScorer(checkpoint=...), and the hub cache layout of the message
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_b32_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ViT-B-32 (QuickGELU, as the 'openai' weights) saved as the hub's open_clip_model.safetensors."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    path = tmp_path_factory.mktemp("clip") / EXPECTED
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.slow
def test_checkpoint_loads_with_the_tag_settings_offline(no_network: dict, vit_b32_checkpoint: Path) -> None:
    scorer = ClipScorer(checkpoint=vit_b32_checkpoint).load()
    assert no_network["probe"] == 0 and no_network["download"] == 0  # no network needed
    from safetensors.torch import load_file

    saved = load_file(str(vit_b32_checkpoint))
    loaded = scorer.model.state_dict()
    assert set(loaded) == set(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    # The 'openai' tag's settings: QuickGELU (open_clip's ViT-B-32-quickgelu config gives the same features).
    assert type(scorer.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    reference, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32-quickgelu", pretrained=str(vit_b32_checkpoint)
    )
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 60), (224, 224), (9, 300)]]
    texts = ["a dog", "a bowl of fruit"]
    from PIL import Image

    with torch.inference_mode():
        image = torch.nn.functional.normalize(reference.eval().encode_image(
            torch.stack([preprocess(Image.fromarray(c)) for c in crops])), dim=-1)  # fmt: skip
        words = torch.nn.functional.normalize(reference.encode_text(open_clip.get_tokenizer("ViT-B-32")(texts)), dim=-1)
    np.testing.assert_allclose(scorer(crops, texts), (words @ image.T).numpy(), atol=1e-5)


@pytest.mark.slow
def test_file_in_the_cache_folder_of_the_message_is_used(no_network: dict, vit_b32_checkpoint: Path) -> None:
    """Put the file where the offline message says (the hub cache layout) and the default scorer loads it."""
    _, message = timed_error(lambda: ClipScorer().load())
    folder = no_network["cache"] / "models--timm--vit_base_patch32_clip_224.openai"
    assert str(folder) in message
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    (folder / "snapshots" / revision / EXPECTED).symlink_to(vit_b32_checkpoint)
    scorer = ClipScorer().load()  # the remembered unreachable hub does not matter: the cache is looked at first
    assert scorer.model.visual.conv1.weight.shape == (768, 3, 32, 32)
    assert no_network["download"] == 0


@pytest.mark.slow
def test_segment_with_clip_checkpoint_end_to_end(
    no_network: dict, vit_b32_checkpoint: Path, tiny_weights: Path, photo_path: Path, tmp_path: Path
) -> None:
    from fastsam.cli.main import main

    out = tmp_path / "out"
    rc = main(["segment", str(photo_path), "--model", str(tiny_weights), "--device", "cpu", "--imgsz", "256",
               "--text", "a dog", "--text", "grass", "--top-k", "2", "--clip-checkpoint", str(vit_b32_checkpoint),
               "--out", str(out), "--format", "json"])  # fmt: skip
    assert rc == 0
    saved = json.loads((out / "dog.json").read_text())
    assert len(saved["annotations"]) == 4  # 2 queries x top 2
    assert no_network["probe"] == 0 and no_network["download"] == 0


@pytest.mark.slow
def test_server_with_clip_checkpoint(no_network: dict, vit_b32_checkpoint: Path, tiny_model, photo_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
    from fastapi.testclient import TestClient

    from fastsam.server import ServerConfig, create_app

    with TestClient(create_app(ServerConfig(clip_checkpoint=str(vit_b32_checkpoint)), model=tiny_model)) as client:
        upload = client.post("/api/v1/images?imgsz=256", content=photo_path.read_bytes())
        image_id = upload.json()["image_id"]
        response = client.post(f"/api/v1/images/{image_id}/prompt", json={"texts": ["a dog", "grass"], "top_k": 1})
        assert response.status_code == 200, response.text
        masks = response.json()["masks"]
        assert [m["prompt_id"] for m in masks] == [0, 1] and all(m["index"] >= 0 for m in masks)
    assert no_network["probe"] == 0


def test_missing_clip_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClipUnavailableError, match="CLIP checkpoint file not found: .*nope.safetensors"):
        ClipScorer(checkpoint=tmp_path / "nope.safetensors").load()
    with pytest.raises(ClipUnavailableError, match="not one for CLIP model"):
        ClipScorer(pretrained="no-such-tag", checkpoint=tmp_path / "x.safetensors").load()
    assert text_module._HUB_UNREACHABLE is None  # no network was involved
