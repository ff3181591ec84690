"""The API contract, checked against the live server (uvicorn on loopback, random-weight model, API keys on).

* schemathesis reads ``/openapi.json`` and runs every phase (examples, coverage, fuzzing, stateful: upload, then
  get/prompt/overlay/delete through the schema's links) with all its checks; small real images are generated for
  the upload's ``image/*`` bodies and multipart ``file`` field, so uploads succeed and the stateful phase works
  on real images. ``positive_data_acceptance`` also accepts 422: schema-valid prompts can still be refused for
  what a schema cannot say (a point outside this image, an inverted box, a mask index the image lacks).
* a client generated from the schema (openapi-python-client, into a temporary folder) uploads a photo, prompts
  it and fetches an overlay.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
pytest.importorskip("uvicorn", reason="the 'app' extra is not installed")
pytest.importorskip("schemathesis", reason="schemathesis is not installed (the 'test' extra)")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from server_helpers import ColourScorer, photo_600x400, serve  # noqa: E402

from fastsam.server import ServerConfig, create_app  # noqa: E402
from fastsam.server.limits import Limits  # noqa: E402

pytestmark = pytest.mark.slow

KEY = "contract-test-key-0123456789"

HOOKS = '''
"""schemathesis hooks: small real images for the upload's image bodies (random size, mode and colour)."""
import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

MODES = {"JPEG": ["RGB", "L"], "PNG": ["RGB", "L", "RGBA", "P", "1"]}


@st.composite
def images(draw, fmt):
    size = (draw(st.integers(1, 96)), draw(st.integers(1, 96)))
    mode = draw(st.sampled_from(MODES.get(fmt, ["RGB", "L", "RGBA"])))
    picture = Image.new(mode, size, draw(st.integers(0, 255)))
    out = io.BytesIO()
    picture.save(out, format=fmt)
    return out.getvalue()


for media, fmt in [("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP"), ("image/tiff", "TIFF"),
                   ("image/bmp", "BMP"), ("image/gif", "GIF"), ("application/octet-stream", "PNG")]:
    schemathesis.openapi.media_type(media, images(fmt))
'''

CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


@pytest.fixture(scope="module")
def live(tiny_model):
    config = ServerConfig(max_upload_bytes=2_000_000, max_pixels=1_000_000, limits=Limits(max_imgsz=256),
                          api_keys=(KEY,))  # fmt: skip
    with serve(create_app(config, model=tiny_model, text_scorer=ColourScorer())) as base:
        yield base


def _answers(base: str) -> dict[tuple[str, str, str], float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "fastsam_http_requests"]
    return {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
            for s in family.samples if s.name.endswith("_total")}  # fmt: skip


def test_schemathesis_all_checks_and_phases_pass(live: str, tmp_path: Path) -> None:
    (tmp_path / "contract_hooks.py").write_text(HOOKS)
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp_path / "schemathesis.toml"), "run",
        f"{live}/openapi.json", "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
        "-H", f"Authorization: Bearer {KEY}", "--max-examples", "25", "--seed", "20240601", "--workers", "1",
        "--generation-database", "none", "--no-color", "--output-truncate", "true", "--request-timeout", "60",
    ]  # fmt: skip
    env = {**__import__("os").environ, "SCHEMATHESIS_HOOKS": "contract_hooks", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0 and "No issues found" in done.stdout, report
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}", done.stdout), report
    generated, passed = (int(v) for v in re.search(r"(\d+) generated, (\d+) passed", done.stdout).groups())
    assert generated == passed > 300, report
    assert re.search(r"API Links:\s+(\d+) covered / \1 selected", done.stdout), report
    # the stateful phase really worked on uploaded images: the server's own counters say so
    answered = _answers(live)
    images = "/api/v1/images/{image_id}"
    assert answered[("POST", "/api/v1/images", "201")] >= 5
    expected = [("GET", images, "200"), ("DELETE", images, "204"), ("POST", images + "/prompt", "200"),
                ("POST", images + "/overlay", "200"), ("POST", "/api/v1/images", "401")]
    for method, route, status in expected:
        assert answered.get((method, route, status), 0) >= 1, (method, route, status)
    assert not any(status.startswith("5") for _, _, status in answered), answered
    print(f"schemathesis: {generated} cases generated and passed in every phase", file=sys.stderr)


def test_generated_client_uploads_prompts_and_fetches_an_overlay(live: str, tmp_path: Path, photo_path: Path) -> None:
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if generator is None:
        pytest.skip("openapi-python-client is not installed (the 'test' extra)")
    with urllib.request.urlopen(f"{live}/openapi.json", timeout=10) as r:
        (tmp_path / "openapi.json").write_bytes(r.read())
    # it has no parser for image/* bodies: they are handled as the raw bytes they are
    (tmp_path / "config.yaml").write_text("content_type_overrides:\n" + "".join(
        f"  {media}: application/octet-stream\n" for media in ("image/png", "image/jpeg", "image/webp", "image/tiff",
                                                                "image/bmp", "image/gif")))  # fmt: skip
    out = tmp_path / "fastsam_client"
    done = subprocess.run([generator, "generate", "--path", str(tmp_path / "openapi.json"), "--output-path", str(out),
                           "--meta", "none", "--config", str(tmp_path / "config.yaml")],
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0 and (out / "client.py").is_file(), done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        client_pkg = importlib.import_module("fastsam_client")
        api = importlib.import_module("fastsam_client.api.default")
        models = importlib.import_module("fastsam_client.models")
        types = importlib.import_module("fastsam_client.types")
        for name in ("upload_image", "prompt_image", "overlay_image", "get_image", "delete_image"):
            importlib.import_module(f"fastsam_client.api.default.{name}")
        client = client_pkg.AuthenticatedClient(base_url=live, token=KEY, timeout=120)
        photo = types.File(payload=io.BytesIO(photo_600x400(photo_path)), file_name="dog.jpg", mime_type="image/jpeg")
        uploaded = api.upload_image.sync(client=client, body=models.UploadImageFilesBody(file=photo), imgsz=256)
        assert isinstance(uploaded, models.ImageOut), uploaded
        assert (uploaded.width, uploaded.height, uploaded.file_name) == (600, 400, "dog.jpg") and uploaded.masks
        box = [float(v) for v in uploaded.masks[0].bbox]
        answer = api.prompt_image.sync(uploaded.image_id, client=client, body=models.PromptIn(boxes=[box]))
        assert isinstance(answer, models.PromptOut) and [m.prompt_id for m in answer.masks] == [0]
        assert answer.masks[0].index >= 0 and answer.masks[0].segmentation.size == [400, 600]
        picture = api.overlay_image.sync(uploaded.image_id, client=client, body=models.OverlayIn(indices=[0]))
        with Image.open(picture.payload) as png:
            assert png.format == "PNG" and png.size == (600, 400)
        # the generated client sees the error model too
        anonymous = client_pkg.Client(base_url=live)
        refused = api.get_image.sync(uploaded.image_id, client=anonymous)
        assert isinstance(refused, models.ErrorOut) and "API key" in refused.error
        assert api.delete_image.sync_detailed(uploaded.image_id, client=client).status_code == 204
        gone = api.get_image.sync(uploaded.image_id, client=client)
        assert isinstance(gone, models.ErrorOut) and "unknown image id" in gone.error
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "fastsam_client" or m.startswith("fastsam_client.")]:
            del sys.modules[name]


def test_schema_documents_bodies_errors_and_methods(live: str) -> None:
    with urllib.request.urlopen(f"{live}/openapi.json", timeout=10) as r:
        schema = json.load(r)
    upload = schema["paths"]["/api/v1/images"]["post"]
    content = upload["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    assert {"image/png", "image/jpeg"} <= set(content) and content["image/png"]["schema"]["format"] == "binary"
    assert sorted(upload["responses"]) == ["201", "401", "413", "415", "422", "503"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                assert "X-Request-ID" in response["headers"], (method, path, status)
                if status[0] in "45":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorOut"), (method, path, status)
    prompt = schema["components"]["schemas"]["PromptIn"]["properties"]
    assert prompt["boxes"]["anyOf"][0]["maxItems"] == Limits().max_boxes
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    request = urllib.request.Request(f"{live}/api/v1/images/any-id", method="OPTIONS")
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 204 and r.headers["Allow"] == "GET, DELETE, OPTIONS"
