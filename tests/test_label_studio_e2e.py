"""End to end with the real tool: a Label Studio server (SQLite, started and stopped here) connected to
``fastsam label-studio``; clicks, boxes, negative clicks and pre-annotations come back as the masks our predictor gives.

Label Studio's pins (Django, numpy, OpenCV) do not fit this project's environment, so it lives in its own virtual
environment, made on first use under ``~/.cache/fastsam-tests/label-studio-<version>`` (``$FASTSAM_LABEL_STUDIO_HOME``
moves it; about 1 GB, a few minutes once) together with a migrated database template (Label Studio's first start
migrates for a minute or more; later starts copy the template and take seconds). The test is skipped, saying why,
when Label Studio cannot be installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastsam.labelling.label_studio.brush import decode_brush
from fastsam.predictor import FastSAMPredictor, SegmentedImage

pytestmark = pytest.mark.slow

LS_VERSION = "1.23.2"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="Dog"/><Label value="Object"/></BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true"><Label value="Dog" smart="true"/><Label value="Cat" smart="true"/></KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="Dog" smart="true"/></RectangleLabels>
</View>"""
NO_BRUSH = '<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image"><Label value="A"/></RectangleLabels></View>'
BACKEND_ARGS = ["--device", "cpu", "--precision", "fp32", "--imgsz", "256", "--max-det", "20"]


def _home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastsam-tests" / f"label-studio-{LS_VERSION}"
    return Path(os.environ.get("FASTSAM_LABEL_STUDIO_HOME") or default)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # one installer at a time (parallel test runs)
        yield


def _install(home: Path) -> Path:
    """Label Studio's own virtual environment (made once); skips the test when it cannot be installed."""
    venv, done = home / "venv", home / "venv.complete"
    with _locked(home / ".lock"):
        if not done.is_file():
            shutil.rmtree(venv, ignore_errors=True)
            log = home / "install.log"
            steps = [[sys.executable, "-m", "venv", str(venv)],
                     [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"label-studio=={LS_VERSION}"]]  # fmt: skip
            with open(log, "w") as out:
                for step in steps:
                    try:
                        code = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=1200, check=False).returncode
                    except subprocess.TimeoutExpired:
                        code = -1
                    if code != 0:
                        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                        pytest.skip(f"label-studio {LS_VERSION} could not be installed into {venv} ({tail[0][:200]}); "
                                    f"see {log}")  # fmt: skip
            done.write_text(LS_VERSION)
    return venv / "bin" / "label-studio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ls_env(home: Path, documents: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO", "PYTHON", "VIRTUAL_ENV", "DJANGO"))}
    env.update({
        "HOME": str(home),  # Label Studio writes under ~/.local/share
        "LABEL_STUDIO_USERNAME": "fastsam@example.com", "LABEL_STUDIO_PASSWORD": "fastsam-test-password",
        "LABEL_STUDIO_USER_TOKEN": TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(documents),
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false", "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_SENTRY_DSN": "", "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false", "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
    })  # fmt: skip
    return env


def _start_studio(exe: Path, data: Path, env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    cmd = [str(exe), "start", "--no-browser", "--data-dir", str(data), "-db", str(data / "label_studio.sqlite3"),
           "--internal-host", "127.0.0.1", "-p", str(port)]  # fmt: skip
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_up(url: str, process: subprocess.Popen, log: Path, timeout_s: float, what: str) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).json().get("status") == "UP":
                return time.perf_counter() - start
        time.sleep(1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout_s:.0f} s: {log.read_text(errors='replace')[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _template(home: Path, exe: Path, tmp: Path) -> Path:
    """A data folder with a migrated database and the test user (made once: the first start migrates)."""
    template, done = home / "template", home / "template.complete"
    with _locked(home / ".lock"):
        if not done.is_file():
            shutil.rmtree(template, ignore_errors=True)
            template.mkdir(parents=True)
            (tmp / "template-home").mkdir()
            port, log = _free_port(), home / "template.log"
            process = _start_studio(exe, template, _ls_env(tmp / "template-home", tmp), port, log)
            try:
                _wait_up(f"http://127.0.0.1:{port}/health", process, log, 900, "Label Studio (first start)")
            finally:
                _stop(process)
            done.write_text(LS_VERSION)
    return template


@dataclass
class Studio:
    api: httpx.Client
    backend_url: str
    backend_log: Path
    project: int
    ml: int
    tasks: dict[str, int]  # "upload", "local", "unreachable" -> task id
    photos: dict[str, Path]  # "upload", "local" -> the photo file


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path, shared_images_dir: Path) -> Iterator[Studio]:
    home = _home()
    exe = _install(home)
    tmp = tmp_path_factory.mktemp("label_studio")
    template = _template(home, exe, tmp)
    data, documents = tmp / "data", tmp / "documents"
    shutil.copytree(template, data)
    (documents / "images").mkdir(parents=True)
    photos = {"upload": shared_images_dir / "segment-anything" / "dog.jpg", "local": shared_images_dir / "fastsam" / "cat.jpg"}
    shutil.copy(photos["local"], documents / "images" / "cat.jpg")
    (tmp / "home").mkdir()
    ls_port, backend_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{ls_port}"
    ls_log, backend_log = tmp / "label_studio.log", tmp / "backend.log"
    started = time.perf_counter()
    ls = _start_studio(exe, data, _ls_env(tmp / "home", documents), ls_port, ls_log)
    backend_env = dict(os.environ, LABEL_STUDIO_URL=base, LABEL_STUDIO_API_KEY=TOKEN)
    with open(backend_log, "w") as out:
        backend = subprocess.Popen(
            [sys.executable, "-m", "fastsam.cli.main", "label-studio", "--model", str(tiny_weights), "--port",
             str(backend_port), *BACKEND_ARGS],
            env=backend_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        backend_url = f"http://127.0.0.1:{backend_port}"
        _wait_up(f"{backend_url}/health", backend, backend_log, 180, "fastsam label-studio")
        _wait_up(f"{base}/health", ls, ls_log, 300, "Label Studio")
        print(f"Label Studio and the backend up in {time.perf_counter() - started:.1f} s")
        api = httpx.Client(base_url=base, headers={"Authorization": f"Token {TOKEN}"}, timeout=120)
        project = api.post("/api/projects", json={"title": "FastSAM e2e", "label_config": CONFIG}).json()["id"]
        with open(photos["upload"], "rb") as f:
            upload = api.post(f"/api/projects/{project}/import", params={"return_task_ids": True},
                              files={"file": ("dog.jpg", f, "image/jpeg")})  # fmt: skip
        assert upload.status_code == 201, upload.text
        storage = api.post("/api/storages/localfiles", json={"project": project, "path": str(documents / "images"),
                                                             "use_blob_urls": True, "regex_filter": r".*\.jpg"})  # fmt: skip
        assert storage.status_code == 201, storage.text
        assert api.post(f"/api/storages/localfiles/{storage.json()['id']}/sync").status_code == 200
        dead = api.post(f"/api/projects/{project}/import", params={"return_task_ids": True},
                        json=[{"image": f"http://127.0.0.1:{_free_port()}/gone.jpg"}])  # fmt: skip
        assert dead.status_code == 201, dead.text
        tasks = {}
        listing = api.get("/api/tasks", params={"project": project, "page_size": 100}).json()
        for task in listing["tasks"] if isinstance(listing, dict) else listing:
            url = task["data"]["image"]
            kind = "upload" if url.startswith("/data/upload/") else "local" if "local-files" in url else "unreachable"
            tasks[kind] = task["id"]
        assert set(tasks) == {"upload", "local", "unreachable"}, listing
        ml = api.post("/api/ml", json={"url": backend_url, "project": project, "is_interactive": True, "title": "FastSAM"})
        assert ml.status_code == 201, ml.text
        assert ml.json()["state"] == "CO"  # connected: /health and /setup answered
        yield Studio(api, backend_url, backend_log, project, ml.json()["id"], tasks, photos)
    finally:
        _stop(backend)
        _stop(ls)


@pytest.fixture(scope="module")
def reference(tiny_model, studio: Studio) -> dict[str, SegmentedImage]:
    """Our predictor, in this process, on the same photos: what every brush mask must equal."""
    predictor = FastSAMPredictor(tiny_model, imgsz=256, max_det=20)
    return {kind: predictor.set_image(path) for kind, path in studio.photos.items()}


def _keypoint(x: float, y: float, w: int, h: int, positive: bool = True, label: str = "Dog") -> dict:
    return {"id": f"k{int(x)}_{int(y)}", "from_name": "click", "to_name": "image", "type": "keypointlabels",
            "origin": "manual", "original_width": w, "original_height": h, "image_rotation": 0,
            "is_positive": positive, "value": {"x": 100 * x / w, "y": 100 * y / h, "width": 0.6,
                                               "keypointlabels": [label]}}  # fmt: skip


def _interactive(studio: Studio, task: int, regions: list[dict]) -> dict:
    response = studio.api.post(f"/api/ml/{studio.ml}/interactive-annotating", json={"task": task, "context": {"result": regions}})
    assert response.status_code == 200, response.text
    return response.json()


def _decode(region: dict) -> np.ndarray:
    return decode_brush(region["value"]["rle"], region["original_height"], region["original_width"])


def _inside(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    k = len(rows) // 2
    return cols[k] + 0.5, rows[k] + 0.5


def test_click_stored_by_label_studio_is_our_mask(studio: Studio, reference) -> None:
    ref = reference["upload"]
    h, w = ref.image_size
    x, y = _inside(ref.everything().masks[0])
    expected = ref.points([[x, y]])
    answer = _interactive(studio, studio.tasks["upload"], [_keypoint(x, y, w, h)])
    [region] = answer["data"]["result"]
    assert region["value"]["brushlabels"] == ["Dog"] and answer["data"]["model_version"].startswith("fastsam-")
    np.testing.assert_array_equal(_decode(region), expected.masks[0])
    # the annotator accepts it: Label Studio stores the region; read back from its database, it is still our mask
    created = studio.api.post(f"/api/tasks/{studio.tasks['upload']}/annotations/", json={"result": [region]})
    assert created.status_code == 201, created.text
    stored = studio.api.get(f"/api/annotations/{created.json()['id']}/").json()
    [kept] = [r for r in stored["result"] if r["type"] == "brushlabels"]
    np.testing.assert_array_equal(_decode(kept), expected.masks[0])
    # later clicks on the same task: the image is already segmented (times printed with -s; no bound asserted)
    start = time.perf_counter()
    _interactive(studio, studio.tasks["upload"], [_keypoint(x, y, w, h)])
    through = time.perf_counter() - start
    task = studio.api.get(f"/api/tasks/{studio.tasks['upload']}").json()
    start = time.perf_counter()
    direct = httpx.post(f"{studio.backend_url}/predict", timeout=60, json={
        "tasks": [task], "label_config": CONFIG, "params": {"context": {"result": [_keypoint(x, y, w, h)]}}})  # fmt: skip
    print(f"cached click: {1000 * through:.0f} ms through Label Studio, {1000 * (time.perf_counter() - start):.0f} ms "
          "at the backend")
    assert direct.status_code == 200


def test_negative_click_and_box(studio: Studio, reference) -> None:
    ref = reference["upload"]
    h, w = ref.image_size
    every = ref.everything()
    x, y = _inside(every.masks[0])
    chosen = ref.points([[x, y]]).indices[0]
    other = [k for k in range(len(every)) if k != chosen and every.masks[k][int(y), int(x)]
             and (every.masks[chosen] & ~every.masks[k]).any()]  # fmt: skip
    assert other, "the tiny model gives nested masks at this point"
    nx, ny = _inside(every.masks[chosen] & ~every.masks[other[0]])
    expected = ref.points([[x, y], [nx, ny]], [1, 0])
    answer = _interactive(studio, studio.tasks["upload"], [_keypoint(x, y, w, h), _keypoint(nx, ny, w, h, positive=False)])
    [region] = answer["data"]["result"]
    assert expected.indices[0] not in (-1, chosen)
    np.testing.assert_array_equal(_decode(region), expected.masks[0])

    x1, y1, x2, y2 = every.boxes[1].tolist()
    box = {"id": "b1", "from_name": "box", "to_name": "image", "type": "rectanglelabels", "origin": "manual",
           "original_width": w, "original_height": h, "image_rotation": 0,
           "value": {"x": 100 * x1 / w, "y": 100 * y1 / h, "width": 100 * (x2 - x1) / w, "height": 100 * (y2 - y1) / h,
                     "rotation": 0, "rectanglelabels": ["Dog"]}}  # fmt: skip
    [region] = _interactive(studio, studio.tasks["upload"], [box])["data"]["result"]
    np.testing.assert_array_equal(_decode(region), ref.boxes([[x1, y1, x2, y2]]).masks[0])

    # a click on the local-storage task (the image read through Label Studio's /data/local-files/)
    local = reference["local"]
    lh, lw = local.image_size
    lx, ly = _inside(local.everything().masks[0])
    [region] = _interactive(studio, studio.tasks["local"], [_keypoint(lx, ly, lw, lh)])["data"]["result"]
    np.testing.assert_array_equal(_decode(region), local.points([[lx, ly]]).masks[0])


def test_preannotations_stored_are_our_masks(studio: Studio, reference) -> None:
    action = studio.api.post("/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": studio.project},
                             json={"selectedItems": {"all": True, "excluded": []}})  # fmt: skip
    assert action.status_code == 200, action.text
    for kind in ("upload", "local"):
        every = reference[kind].everything()
        expected = every.masks[every.masks.reshape(len(every), -1).sum(1) >= 100]
        predictions = studio.api.get("/api/predictions/", params={"task": studio.tasks[kind]}).json()
        assert len(predictions) == 1, predictions
        regions = predictions[0]["result"]
        assert len(regions) == len(expected) > 0
        assert {r["value"]["brushlabels"][0] for r in regions} == {"Object"}
        for region, mask in zip(regions, expected):
            np.testing.assert_array_equal(_decode(region), mask)
    # the task whose image cannot be fetched gets no prediction (Label Studio may ask again), the others theirs
    assert studio.api.get("/api/predictions/", params={"task": studio.tasks["unreachable"]}).json() == []


def test_bad_inputs_are_clear_errors_and_the_backend_keeps_serving(studio: Studio, reference) -> None:
    ref = reference["upload"]
    h, w = ref.image_size
    x, y = _inside(ref.everything().masks[0])
    cases = [
        (studio.tasks["upload"], [_keypoint(x, y, w, h, label="Cat")], "400",
         "label 'Cat' of keypointlabels 'click' is not a label of BrushLabels 'mask'"),
        (studio.tasks["upload"], [_keypoint(x + w, y, w, h)], "400", "is outside the image"),
        (studio.tasks["unreachable"], [_keypoint(10, 10, 100, 100)], "502", "the image host is unreachable"),
    ]
    for task, regions, status, message in cases:
        answer = _interactive(studio, task, regions)
        # Label Studio shows the backend's status; the backend's log (and its answer) says what to do
        assert status in answer["errors"][0] and "/predict" in answer["errors"][0], answer
        direct = httpx.post(f"{studio.backend_url}/predict", timeout=60, json={
            "tasks": [studio.api.get(f"/api/tasks/{task}").json()], "label_config": CONFIG,
            "params": {"context": {"result": regions}}})  # fmt: skip
        assert str(direct.status_code) == status and message in direct.json()["error"]
        assert message in studio.backend_log.read_text()
    # a project whose labelling config has no brush tag: Label Studio refuses to connect, naming /setup
    other = studio.api.post("/api/projects", json={"title": "no brush", "label_config": NO_BRUSH}).json()["id"]
    refused = studio.api.post("/api/ml", json={"url": studio.backend_url, "project": other, "is_interactive": True})
    assert refused.status_code == 400 and "400 Client Error" in refused.text and "/setup" in refused.text
    assert "no <BrushLabels> tag" in studio.backend_log.read_text()
    # still serving
    assert httpx.get(f"{studio.backend_url}/health").json()["status"] == "UP"
    [region] = _interactive(studio, studio.tasks["upload"], [_keypoint(x, y, w, h)])["data"]["result"]
    np.testing.assert_array_equal(_decode(region), ref.points([[x, y]]).masks[0])
