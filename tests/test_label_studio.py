"""The Label Studio ML backend without a Label Studio server: the protocol through FastAPI's test client, images
served by a fake Label Studio (httpx mock transport), brush masks decoded with Label Studio's own decoder."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
brush_lib = pytest.importorskip("fastsam.labelling.label_studio.brush")
try:
    brush_lib.brush_encoder()
except ImportError as err:  # pragma: no cover - the labelstudio extra is part of the test extra
    pytest.skip(str(err), allow_module_level=True)

from fastapi.testclient import TestClient

from fastsam.cli.main import main
from fastsam.labelling.classes import TEMPLATE
from fastsam.labelling.label_studio import (
    BackendSettings,
    FastSAMBackend,
    ImageFetcher,
    LabelStudioAccess,
    LabelStudioError,
    create_app,
    parse_label_config,
)
from fastsam.labelling.label_studio.brush import brush_region, decode_brush
from fastsam.labelling.label_studio.regions import prompt_from_context
from fastsam.predictor import FastSAMPredictor

LS = "http://ls.test"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="Dog"/><Label value="Object"/></BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true"><Label value="Dog"/><Label value="Cat"/></KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="Dog"/></RectangleLabels>
</View>"""
NO_BRUSH = '<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image"><Label value="A"/></RectangleLabels></View>'


class FakeLabelStudio:
    """Serves /data/upload/1/<name> like Label Studio: only with the right token; counts the downloads."""

    def __init__(self, photos: dict[str, bytes]) -> None:
        self.photos = photos
        self.downloads: list[str] = []
        self.headers: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers.get("authorization"))
        if request.url.path == "/api/token/refresh/":
            body = json.loads(request.content)
            if body.get("refresh") == REFRESH:
                return httpx.Response(200, json={"access": "ACCESS"})
            return httpx.Response(401, json={"detail": "bad token"})
        if request.url.host == "down.test":
            raise httpx.ConnectError("connection refused", request=request)
        name = request.url.path.rsplit("/", 1)[-1]
        auth = request.headers.get("authorization")
        if request.url.host == "ls.test" and auth not in (f"Token {TOKEN}", "Bearer ACCESS"):
            return httpx.Response(401, json={"detail": "Authentication credentials were not provided."})
        if name not in self.photos:
            return httpx.Response(404)
        self.downloads.append(name)
        return httpx.Response(200, content=self.photos[name])


def _jwt(claims: dict) -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{part({'alg': 'HS256'})}.{part(claims)}.signature"


REFRESH = _jwt({"token_type": "refresh", "user_id": 1})


@pytest.fixture(autouse=True)
def _pillow_unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    """ultralytics (the test-only oracle, imported by other tests of the session) replaces PIL.Image.open process-wide
    with a version that tries to pip-install pi-heif on an unknown file; the backend never runs beside it."""
    import sys

    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    if patches is not None and hasattr(patches, "_image_open"):
        monkeypatch.setattr(Image, "open", patches._image_open)


@pytest.fixture(scope="module")
def segmented(tiny_model, photo_path: Path):
    """Our predictor's answers for the photo (the reference every brush mask is compared with)."""
    return FastSAMPredictor(tiny_model, imgsz=256, max_det=20).set_image(photo_path)


@pytest.fixture
def fake(photo_path: Path) -> FakeLabelStudio:
    return FakeLabelStudio({"dog.jpg": photo_path.read_bytes(), "notes.jpg": b"not an image at all"})


@pytest.fixture
def backend(tiny_model, fake: FakeLabelStudio, monkeypatch: pytest.MonkeyPatch):
    calls = []
    original = tiny_model.predict

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "predict", counting)
    fetcher = ImageFetcher(LabelStudioAccess(LS, TOKEN), transport=httpx.MockTransport(fake))
    backend = FastSAMBackend(tiny_model, BackendSettings(imgsz=256, max_det=20), model_name="tiny", fetcher=fetcher)
    backend.network_calls = calls
    return backend


@pytest.fixture
def client(backend) -> TestClient:
    return TestClient(create_app(backend))


def _task(name: str = "dog.jpg", task_id: int = 7) -> dict:
    return {"id": task_id, "data": {"image": f"/data/upload/1/{name}"}}


def _keypoint(x: float, y: float, w: int, h: int, positive: bool = True, label: str = "Dog") -> dict:
    """A smart KeyPointLabels region at pixel (x, y), as the web UI sends it (percent of the image)."""
    return {"id": "k", "from_name": "click", "to_name": "image", "type": "keypointlabels", "origin": "manual",
            "original_width": w, "original_height": h, "image_rotation": 0, "is_positive": positive,
            "value": {"x": 100 * x / w, "y": 100 * y / h, "width": 0.5, "keypointlabels": [label]}}  # fmt: skip


def _predict(client: TestClient, regions: list[dict] | None, tasks: list[dict] | None = None) -> httpx.Response:
    body = {"tasks": tasks or [_task()], "project": "1.1700000000", "label_config": CONFIG,
            "params": {"login": None, "password": None, "context": {"result": regions} if regions else None}}  # fmt: skip
    return client.post("/predict", json=body)


def _masks(response: httpx.Response, h: int, w: int) -> list[np.ndarray]:
    assert response.status_code == 200, response.text
    [prediction] = response.json()["results"]
    return [decode_brush(r["value"]["rle"], r["original_height"], r["original_width"]) for r in prediction["result"]]


def _inside(mask: np.ndarray) -> tuple[float, float]:
    """The centre of a pixel of the mask (the middle one of its pixels, in row-major order)."""
    rows, cols = np.nonzero(mask)
    k = len(rows) // 2
    return cols[k] + 0.5, rows[k] + 0.5


# --------------------------------------------------------------------------------------------------------- protocol


def test_health_setup_and_versions(client: TestClient, backend) -> None:
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["model_version"] == backend.model_version
    assert client.get("/").json()["status"] == "UP"
    setup = client.post("/setup", json={"project": "1.1700000000", "schema": CONFIG, "hostname": LS,
                                        "access_token": TOKEN, "extra_params": None})  # fmt: skip
    assert setup.status_code == 200 and setup.json() == {"model_version": backend.model_version}
    assert client.get("/versions").json() == {"versions": [backend.model_version]}
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 201


@pytest.mark.parametrize(
    "schema, message",
    [
        (NO_BRUSH, "no <BrushLabels> tag"),
        ("<View><Image name='i' value='$image'", "not valid XML"),
        ("<View><BrushLabels name='m' toName='i'><Label value='A'/></BrushLabels></View>", "no <Image> tag"),
        ("<View><Image name='i' value='$image'/><BrushLabels name='m' toName='i'/></View>", "has no <Label"),
    ],
)
def test_setup_refuses_configs_it_cannot_serve(client: TestClient, schema: str, message: str) -> None:
    response = client.post("/setup", json={"project": "2.1", "schema": schema})
    assert response.status_code == 400 and message in response.json()["error"]
    assert client.get("/health").json()["status"] == "UP"


def test_not_json_is_a_clear_error(client: TestClient) -> None:
    response = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "the request body is not JSON"


# ------------------------------------------------------------------------------------------------------ interactive


def test_click_negative_click_and_box_give_our_masks(client: TestClient, backend, segmented, fake) -> None:
    h, w = segmented.image_size
    every = segmented.everything()
    x, y = _inside(every.masks[0])
    expected = segmented.points([[x, y]])
    assert expected.indices[0] >= 0
    [mask] = _masks(_predict(client, [_keypoint(x, y, w, h)]), h, w)
    np.testing.assert_array_equal(mask, expected.masks[0])
    region = _predict(client, [_keypoint(x, y, w, h)]).json()["results"][0]["result"][0]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Dog"]
    assert (region["from_name"], region["to_name"]) == ("mask", "image") and region["value"]["format"] == "rle"
    assert fake.downloads == ["dog.jpg"] and backend.network_calls == [1]  # fetched and segmented once

    # a negative click inside the first answer: another mask that holds the positive click but not the negative one
    chosen = expected.indices[0]
    outside = [k for k in range(len(every)) if k != chosen and every.masks[k][int(y), int(x)]
               and (every.masks[chosen] & ~every.masks[k]).any()]  # fmt: skip
    assert outside, "the tiny model should give nested masks at this point"
    nx, ny = _inside(every.masks[chosen] & ~every.masks[outside[0]])
    negative = segmented.points([[x, y], [nx, ny]], [1, 0])
    [mask] = _masks(_predict(client, [_keypoint(x, y, w, h), _keypoint(nx, ny, w, h, positive=False)]), h, w)
    assert negative.indices[0] >= 0 and negative.indices[0] != chosen
    np.testing.assert_array_equal(mask, negative.masks[0])

    # a box (percent of the image, as the rectangle tool sends it)
    x1, y1, x2, y2 = every.boxes[1].tolist()
    box = {"id": "b", "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": w,
           "original_height": h, "value": {"x": 100 * x1 / w, "y": 100 * y1 / h, "width": 100 * (x2 - x1) / w,
                                           "height": 100 * (y2 - y1) / h, "rotation": 0, "rectanglelabels": ["Dog"]}}  # fmt: skip
    [mask] = _masks(_predict(client, [box]), h, w)
    np.testing.assert_array_equal(mask, segmented.boxes([[x1, y1, x2, y2]]).masks[0])
    assert fake.downloads == ["dog.jpg"] and backend.network_calls == [1]

    start = time.perf_counter()
    _predict(client, [_keypoint(x, y, w, h)])
    elapsed = time.perf_counter() - start
    print(f"cached click answered in {1000 * elapsed:.1f} ms")
    assert elapsed < 2.0  # no network run (generous: two shared CPU cores)


def test_prompt_parsing_in_pixels() -> None:
    config = parse_label_config(CONFIG)
    rotated = {"type": "rectanglelabels", "from_name": "box", "value": {"x": 10, "y": 10, "width": 20, "height": 10,
               "rotation": 90, "rectanglelabels": ["Dog"]}}  # fmt: skip
    prompt = prompt_from_context({"result": [rotated]}, config, 100, 200)
    # rotated 90 degrees about its top-left corner: x from 10 - 10 = 0 to 10 %, y from 10 to 30 %
    np.testing.assert_allclose(prompt.boxes, [[0.0, 10.0, 20.0, 30.0]], atol=1e-9)
    click = {"type": "keypointlabels", "from_name": "click", "value": {"x": 50, "y": 25, "keypointlabels": ["dog"]}}
    prompt = prompt_from_context({"result": [click]}, config, 100, 200)
    np.testing.assert_allclose(prompt.points, [[100.0, 25.0]]) and prompt.labels.tolist() == [1]
    assert prompt.label == "Dog"  # the BrushLabels spelling of the keypoint's label
    assert prompt_from_context(None, config, 100, 200) is None


def test_errors_in_label_studio_terms_and_backend_keeps_serving(client: TestClient, segmented) -> None:
    h, w = segmented.image_size
    x, y = _inside(segmented.everything().masks[0])
    cases = [
        ([_keypoint(x, y, w, h, label="Cat")], None, 400,
         "label 'Cat' of keypointlabels 'click' is not a label of BrushLabels 'mask' (its labels: Dog, Object)"),
        ([_keypoint(1.5 * w, y, w, h)], None, 400, "is outside the image"),
        ([_keypoint(x, y, w, h, positive=False)], None, 400, "only negative clicks"),
        ([{"type": "brushlabels", "from_name": "mask", "value": {}}], None, 400, "no KeyPointLabels or RectangleLabels"),
        ([_keypoint(x, y, w, h)], [{"id": 3, "data": {"image": "http://down.test/x.jpg"}}], 502,
         "task 3: the image host is unreachable for http://down.test/x.jpg"),
        ([_keypoint(x, y, w, h)], [_task("missing.jpg", 4)], 502, "task 4: the image at http://ls.test/data/upload/1/missing.jpg could not be fetched: 404"),
        ([_keypoint(x, y, w, h)], [_task("notes.jpg", 5)], 422, "task 5: the file at http://ls.test/data/upload/1/notes.jpg is not a readable image"),
        ([_keypoint(x, y, w, h)], [{"id": 6, "data": {"picture": "x"}}], 400, "task 6 has no data field 'image'"),
        ([_keypoint(x, y, w, h)], [{"id": 8, "data": {"image": "ftp://host/x.jpg"}}], 400, "scheme ftp://"),
    ]  # fmt: skip
    for regions, tasks, status, message in cases:
        response = _predict(client, regions, tasks)
        assert response.status_code == status, response.text
        assert message in response.json()["error"], response.json()["error"]
    assert client.get("/health").json()["status"] == "UP"
    assert len(_masks(_predict(client, [_keypoint(x, y, w, h)]), h, w)) == 1  # still answering


def test_wrong_token_names_the_variable(tiny_model, fake) -> None:
    fetcher = ImageFetcher(LabelStudioAccess(LS, "wrong-token"), transport=httpx.MockTransport(fake))
    app = create_app(FastSAMBackend(tiny_model, BackendSettings(imgsz=256, max_det=20), fetcher=fetcher))
    response = _predict(TestClient(app), None)
    assert response.status_code == 502 and "answered 401" in response.json()["error"]
    assert "LABEL_STUDIO_API_KEY" in response.json()["error"]


# --------------------------------------------------------------------------------------------------- pre-annotations


def test_prelabel_everything_gives_every_mask(client: TestClient, segmented) -> None:
    h, w = segmented.image_size
    every = segmented.everything()
    expected = every.masks[every.masks.reshape(len(every), -1).sum(1) >= 100]
    response = _predict(client, None)
    masks = _masks(response, h, w)
    assert len(masks) == len(expected) > 0
    for got, want in zip(masks, expected):
        np.testing.assert_array_equal(got, want)
    prediction = response.json()["results"][0]
    assert {r["value"]["brushlabels"][0] for r in prediction["result"]} == {"Object"}
    assert 0 < prediction["score"] <= 1 and prediction["model_version"].endswith("everything")


def test_prelabel_batch_goes_on_past_a_bad_task(client: TestClient, backend) -> None:
    tasks = [_task("dog.jpg", 1), {"id": 2, "data": {"image": "http://down.test/x.jpg"}}, _task("dog.jpg", 3)]
    response = client.post("/predict", json={"tasks": tasks, "project": "1.1", "label_config": CONFIG})
    assert response.status_code == 200
    first, second, third = response.json()["results"]
    assert second == [] and len(first["result"]) == len(third["result"]) > 0  # no prediction stored for task 2
    bad = client.post("/predict", json={"tasks": tasks[1:2], "project": "1.1", "label_config": CONFIG})
    assert bad.status_code == 502 and "unreachable" in bad.json()["error"]


def test_prelabel_classes_map_masks_to_the_label_names(tiny_model, fake, segmented) -> None:
    class Shapes:  # known answers: "Wide" for crops wider than tall, "Tall" for taller ones, else background
        def __call__(self, crops, texts):
            sim = np.zeros((len(texts), len(crops)), np.float32)
            for c, crop in enumerate(crops):
                hh, ww = crop.shape[:2]
                sim[texts.index(TEMPLATE.format("Wide")) if ww > hh else texts.index(TEMPLATE.format("Tall")) if hh > ww else 2, c] = 0.3
            return sim

    config = CONFIG.replace('<Label value="Dog"/><Label value="Object"/>', '<Label value="Wide"/><Label value="Tall"/>')
    fetcher = ImageFetcher(LabelStudioAccess(LS, TOKEN), transport=httpx.MockTransport(fake))
    backend = FastSAMBackend(tiny_model, BackendSettings(imgsz=256, max_det=20, prelabel="classes", overlap="keep"),
                             text_scorer=Shapes(), fetcher=fetcher)  # fmt: skip
    response = TestClient(create_app(backend)).post("/predict", json={"tasks": [_task()], "label_config": config})
    assert response.status_code == 200, response.text
    regions = response.json()["results"][0]["result"]
    every = segmented.everything()
    expected = []
    for mask, (x1, y1, x2, y2) in zip(every.masks, every.boxes.tolist()):
        hh, ww = mask.shape
        bw = min(ww, np.ceil(x2)) - max(0, np.floor(x1))
        bh = min(hh, np.ceil(y2)) - max(0, np.floor(y1))
        if mask.sum() >= 100 and bw != bh:
            expected.append(("Wide" if bw > bh else "Tall", mask))
    assert len(regions) == len(expected) > 0
    for region, (label, mask) in zip(regions, expected):
        assert region["value"]["brushlabels"] == [label]
        np.testing.assert_array_equal(decode_brush(region["value"]["rle"], *mask.shape), mask)


# ------------------------------------------------------------------------------------------------------ image access


def test_setup_hostname_and_token_are_used_without_environment(tiny_model, fake, segmented) -> None:
    fetcher = ImageFetcher(LabelStudioAccess(), transport=httpx.MockTransport(fake))
    client = TestClient(create_app(FastSAMBackend(tiny_model, BackendSettings(imgsz=256, max_det=20), fetcher=fetcher)))
    unknown = _predict(client, None)
    assert unknown.status_code == 502 and "set LABEL_STUDIO_URL" in unknown.json()["error"]
    client.post("/setup", json={"project": "1.1700000000", "schema": CONFIG, "hostname": LS, "access_token": TOKEN})
    assert len(_masks(_predict(client, None), *segmented.image_size)) > 0
    assert fake.headers[-1] == f"Token {TOKEN}"


def test_fetcher_urls_tokens_and_storages(tmp_path: Path, photo_path: Path, fake) -> None:
    mock = httpx.MockTransport(fake)
    fetcher = ImageFetcher(LabelStudioAccess(LS, REFRESH), transport=mock, local_root=str(tmp_path))
    # a personal access token (JWT refresh token) is exchanged for an access token, sent as Bearer
    image = fetcher.fetch(fetcher.resolve("/data/upload/1/dog.jpg", 1), 1)
    assert image.shape[2] == 3 and fake.headers[-1] == "Bearer ACCESS"
    # the token goes to Label Studio only
    fake.photos["elsewhere.jpg"] = photo_path.read_bytes()
    fetcher.fetch(fetcher.resolve("http://images.test/elsewhere.jpg", 1), 1)
    assert fake.headers[-1] is None
    # cloud storage through Label Studio's presign endpoint, the URI in URL-safe base64
    uri = "s3://bucket/a b.jpg"
    resolved = fetcher.resolve(uri, 12)
    assert resolved == f"{LS}/tasks/12/presign/?fileuri={base64.urlsafe_b64encode(uri.encode()).decode()}"
    # local storage read from disk when the document root is known here, never outside it
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "dog.jpg").write_bytes(photo_path.read_bytes())
    local = fetcher.resolve("/data/local-files/?d=pics/dog.jpg", 1)
    assert local == "file://" + str(tmp_path / "pics" / "dog.jpg")
    np.testing.assert_array_equal(fetcher.fetch(local, 1), image)
    assert fetcher.resolve("/data/local-files/?d=../../etc/passwd", 1).startswith(LS)
    # data: URIs
    data = "data:image/jpeg;base64," + base64.b64encode(photo_path.read_bytes()).decode()
    np.testing.assert_array_equal(fetcher.fetch(fetcher.resolve(data, 1), 1), image)
    bad = ImageFetcher(LabelStudioAccess(LS, _jwt({"token_type": "refresh", "x": 1})), transport=mock)
    with pytest.raises(LabelStudioError, match="refused the personal access token"):
        bad.fetch(bad.resolve("/data/upload/1/dog.jpg", 1), 1)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://studio.example:8080/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k")
    assert LabelStudioAccess.from_env() == LabelStudioAccess("http://studio.example:8080", "k")
    fetcher = ImageFetcher()
    assert fetcher.resolve("/data/upload/3/x.png", 1) == "http://studio.example:8080/data/upload/3/x.png"


# ----------------------------------------------------------------------------------------------------- brush and CLI


def test_brush_rle_round_trip_with_label_studio_decoder() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (120, 97)]:
        mask = rng.random(shape) > 0.6
        region = brush_region(mask, "Object", "mask", "image", 0.5)
        assert (region["original_height"], region["original_width"]) == shape
        np.testing.assert_array_equal(decode_brush(region["value"]["rle"], *shape), mask)
    with pytest.raises(ValueError, match="not 3x3x4"):
        decode_brush(brush_region(np.ones((2, 2), bool), "a", "m", "i")["value"]["rle"], 3, 3)


@pytest.mark.parametrize(
    "extra, message",
    [(["--port", "0"], "--port"), (["--clip-checkpoint", "x.pt"], "--clip-checkpoint is for --prelabel classes"),
     (["--cache-images", "0"], "--cache-images"), (["--conf", "2"], "conf must be in [0, 1]")],
)
def test_label_studio_cli_usage_errors(extra: list[str], message: str, capsys) -> None:
    assert main(["label-studio", *extra]) == 2
    assert message in capsys.readouterr().err
