"""The web page, end to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A live server (uvicorn on loopback, random-weight model) serves the page; the test uploads a real photo, clicks
foreground/background points, draws a box, switches modes, asks a (fake) CLIP, downloads the SA-1B JSON and the
overlay PNG, and checks that the selection computed in the browser is exactly what the server's ``/prompt``
answers for the same prompts. A second test checks the browser's RLE decoder and point/box rules against the
Python implementation on synthetic masks with many ties. Screenshots go to ``tests/artifacts/``.

Needs: ``apt-get install chromium`` and ``pip install playwright`` (no ``playwright install``: the system
Chromium is used).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path(os.environ.get("FASTSAM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
API = "/api/v1"

pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the 'app' extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from fastsam.ops.rle import mask_to_rle, rle_to_mask  # noqa: E402
from fastsam.predictor import SegmentedImage  # noqa: E402
from fastsam.results import SegmentationResult  # noqa: E402
from fastsam.server import ServerConfig, create_app  # noqa: E402


# --------------------------------------------------------------------------------------------------------------
# live server
# --------------------------------------------------------------------------------------------------------------


class UploadGate:
    """ASGI wrapper that can hold the response of ``POST /api/v1/images`` (to see the progress indicator)."""

    def __init__(self, app) -> None:
        self.app = app
        self.open = threading.Event()
        self.open.set()
        self.held = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == f"{API}/images" and not self.open.is_set():

            async def held_send(message) -> None:
                if message["type"] == "http.response.start":
                    self.held.set()
                    deadline = time.monotonic() + 30
                    while not self.open.is_set() and time.monotonic() < deadline:
                        await asyncio.sleep(0.02)
                await send(message)

            await self.app(scope, receive, held_send)
        else:
            await self.app(scope, receive, send)


class FakeClip:
    """Stands in for CLIP: deterministic scores, or the server's 'unavailable' error while ``available`` is False."""

    available = False
    # as long as the real offline message (about 800 characters, one line, long paths)
    MESSAGE = (
        "CLIP weights are not available here (test stand-in): CLIP weights for model 'ViT-B-32' with "
        "pretrained='openai' could not be found in the local cache and could not be downloaded (the Hugging Face "
        "hub is unreachable: ConnectError: [Errno -2] Name or service not known); the file expected is "
        "open_clip_model.safetensors or open_clip_pytorch_model.bin from "
        "https://huggingface.co/timm/vit_base_patch32_clip_224.openai, kept in the Hugging Face hub cache under "
        "/home/someone/.cache/huggingface/hub/models--timm--vit_base_patch32_clip_224.openai ($HF_HOME or "
        "$HF_HUB_CACHE move the cache); to fill it, run 'hf download timm/vit_base_patch32_clip_224.openai "
        "open_clip_model.safetensors' on a machine with internet and copy its "
        "models--timm--vit_base_patch32_clip_224.openai folder there. Or pass a downloaded "
        "open_clip_model.safetensors directly: --clip-checkpoint PATH (fastsam segment / fastsam serve), or "
        "ClipScorer(checkpoint=PATH) in Python. END-OF-MESSAGE"
    )

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, crops: list[np.ndarray], texts: list[str]) -> np.ndarray:
        from fastsam.prompts.text import ClipUnavailableError

        if not FakeClip.available:
            raise ClipUnavailableError(FakeClip.MESSAGE)
        means = np.array([c.reshape(-1, 3).mean(0) if c.size else np.zeros(3) for c in crops], dtype=np.float32)
        return np.stack([means[:, len(t) % 3] for t in texts]).astype(np.float32)


@pytest.fixture(scope="module")
def live_server(tiny_model):
    """(base URL, gate): the app on a free loopback port, in a background thread."""
    app = create_app(ServerConfig(max_upload_bytes=5_000_000, max_pixels=5_000_000), model=tiny_model,
                     text_scorer=FakeClip())  # fmt: skip
    gate = UploadGate(app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(gate, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}{API}/health", timeout=2) as r:
                if json.load(r)["ready"]:
                    break
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the live server did not start")
        time.sleep(0.05)
    yield base, gate
    gate.open.set()
    server.should_exit = True
    thread.join(10)
    sock.close()


def post_json(url: str, body: dict) -> tuple[int, dict | bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
            return r.status, json.loads(data) if r.headers.get_content_type() == "application/json" else data
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# --------------------------------------------------------------------------------------------------------------
# browser
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, live_server):
    base, _ = live_server
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    problems: list[str] = []
    pg.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    pg.on("console", lambda msg: problems.append(f"console: {msg.text}")
          if msg.type == "error" and "Failed to load resource" not in msg.text else None)  # fmt: skip
    outside: list[str] = []
    pg.on("request", lambda req: outside.append(req.url)
          if not req.url.startswith((base, "data:", "blob:")) else None)  # fmt: skip
    pg.problems = problems  # type: ignore[attr-defined]
    yield pg
    context.close()
    assert not outside, f"the page loaded something from elsewhere: {outside}"
    assert not problems, problems


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    ignore = ARTIFACTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return ARTIFACTS


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def wait_ready(page, previous_id: str | None = None) -> str:
    page.wait_for_function(
        "prev => window.fastsam && window.fastsam.ready() && window.fastsam.state.image.id !== prev",
        arg=previous_id,
    )
    return page.evaluate("window.fastsam.state.image.id")


def to_screen(page, x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    box = page.get_by_test_id("stage").bounding_box()
    w, h = size
    return box["x"] + x * box["width"] / w, box["y"] + y * box["height"] / h


def check_against_server(base: str, sel: dict, top_k: int = 1) -> dict:
    """POST the page's prompts to /prompt and check the answer is the page's selection, entry for entry."""
    body: dict = {"multimask": sel["multimask"], "top_k": top_k}
    if sel["points"]:
        body["points"], body["labels"] = sel["points"], sel["labels"]
    if sel["boxes"]:
        body["boxes"] = sel["boxes"]
    if sel["texts"]:
        body["texts"] = sel["texts"]
    assert len(body) > 2, "no prompt to check"
    status, answer = post_json(f"{base}{API}/images/{sel['image_id']}/prompt", body)
    assert status == 200, answer
    assert [m["index"] for m in answer["masks"]] == sel["indices"]
    assert [m["prompt_id"] for m in answer["masks"]] == sel["prompt_ids"]
    return answer


def interior(mask: np.ndarray, margin: int) -> np.ndarray:
    """Pixels of ``mask`` whose (2 margin + 1)^2 neighbourhood lies in the mask."""
    out = mask.copy()
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            shifted = np.zeros_like(mask)
            h, w = mask.shape
            shifted[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
                max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ]
            out &= shifted
    return out


def pick_prompts(masks: np.ndarray, scores: np.ndarray) -> tuple[tuple[int, int], tuple[int, int], tuple[int, ...]]:
    """A foreground point inside at least two masks, a background point that rules out the best of them, a box."""
    n, h, w = masks.shape
    coverage = masks.sum(0)
    yy, xx = np.mgrid[0:h, 0:w]
    dist = (yy - h / 2) ** 2 + (xx - w / 2) ** 2
    deep = np.stack([interior(m, 3) for m in masks])
    good = (deep.sum(0) >= 2) if (deep.sum(0) >= 2).any() else (coverage >= 1)
    fy, fx = np.unravel_index(np.where(good, dist, np.inf).argmin(), good.shape)
    containing = [i for i in range(n) if masks[i, fy, fx]]
    ranked = sorted(containing, key=lambda i: (-scores[i], masks[i].sum(), i))
    first = ranked[0]
    rest = masks[ranked[1]] if len(ranked) > 1 else np.zeros_like(masks[0])
    zone = interior(masks[first] & ~rest, 3)
    if not zone.any():
        zone = ~masks[first]
    by, bx = np.unravel_index(np.where(zone, dist, np.inf).argmin(), zone.shape)
    areas = masks.reshape(n, -1).sum(1)
    target = int(np.abs(areas - 0.05 * h * w).argmin())
    ys, xs = np.nonzero(masks[target])
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return (int(fx), int(fy)), (int(bx), int(by)), box


# --------------------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------------------


def test_page_end_to_end(page, live_server, photo_path: Path, artifacts: Path) -> None:
    FakeClip.available = False
    base, gate = live_server
    started = time.monotonic()

    page.goto(f"{base}/?imgsz=320")
    page.wait_for_function("window.fastsam !== undefined")
    page.screenshot(path=artifacts / "01_empty.png")

    # upload, with the response held until the progress indicator has been seen
    gate.open.clear()
    try:
        page.get_by_test_id("file-input").set_input_files(str(photo_path))
        assert gate.held.wait(30), "the upload never reached the server"
        progress = page.get_by_test_id("progress")
        progress.wait_for(state="visible")
        page.wait_for_function("document.querySelector('[data-testid=progress-text]').textContent.includes('Segmenting')")
        page.screenshot(path=artifacts / "02_progress.png")
    finally:
        gate.open.set()
    image_id = wait_ready(page)
    assert progress.is_hidden()
    page.screenshot(path=artifacts / "03_everything.png")

    state = page.evaluate("({w: fastsam.state.image.width, h: fastsam.state.image.height, n: fastsam.state.masks.length})")
    assert (state["w"], state["h"]) == (800, 534)
    size = (state["w"], state["h"])
    with urllib.request.urlopen(f"{base}{API}/images/{image_id}") as r:
        listing = json.load(r)
    assert state["n"] == len(listing["masks"]) > 0
    everything = page.evaluate("fastsam.selection()")
    assert everything["mode"] == "everything" and everything["indices"] == list(range(state["n"]))

    # the browser's decoding equals the server's masks
    masks = rle_to_mask([m["segmentation"] for m in listing["masks"]])
    scores = np.array([m["score"] for m in listing["masks"]])
    decoded = page.evaluate(
        "fastsam.state.masks.map(m => [m.area, m.x0, m.y0, m.x1, m.y1])"
    )
    for i, (area, x0, y0, x1, y1) in enumerate(decoded):
        assert area == listing["masks"][i]["area"] == int(masks[i].sum())
        if area:
            ys, xs = np.nonzero(masks[i])
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    # points: a foreground (left click) and a background point (right click)
    fg, bg, box = pick_prompts(masks, scores)
    page.get_by_test_id("mode-points").click()
    page.mouse.click(*to_screen(page, fg[0] + 0.5, fg[1] + 0.5, size))
    page.mouse.click(*to_screen(page, bg[0] + 0.5, bg[1] + 0.5, size), button="right")
    sel = page.evaluate("fastsam.selection()")
    assert sel["labels"] == [1, 0] and len(sel["points"]) == 2
    for (px, py), (ex, ey) in zip(sel["points"], [fg, bg]):
        assert abs(px - ex - 0.5) <= 1.5 and abs(py - ey - 0.5) <= 1.5
    check_against_server(base, sel)
    assert page.get_by_test_id("selection-count").inner_text() == str(len(sel["selected"]))
    page.screenshot(path=artifacts / "04_points.png")

    # the toggle makes a plain click a background point; undo takes it back
    page.get_by_test_id("bg-toggle").click()
    page.mouse.click(*to_screen(page, 5, 5, size))
    assert page.evaluate("fastsam.selection().labels") == [1, 0, 0]
    page.get_by_test_id("bg-toggle").click()
    page.get_by_test_id("undo").click()
    assert page.evaluate("fastsam.selection().labels") == [1, 0]

    # multimask (parts) agrees with the server too
    page.get_by_test_id("multimask").check()
    check_against_server(base, page.evaluate("fastsam.selection()"))
    page.get_by_test_id("multimask").uncheck()

    # box mode: drag a box
    page.get_by_test_id("mode-box").click()
    page.mouse.move(*to_screen(page, box[0], box[1], size))
    page.mouse.down()
    page.mouse.move(*to_screen(page, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, size), steps=4)
    page.mouse.move(*to_screen(page, box[2], box[3], size), steps=4)
    page.mouse.up()
    sel = page.evaluate("fastsam.selection()")
    assert len(sel["boxes"]) == 1 and sel["labels"] == [1, 0]
    drawn = sel["boxes"][0]
    assert all(abs(a - b) <= 1.5 for a, b in zip(drawn, box)), (drawn, box)
    answer = check_against_server(base, sel)
    assert sel["prompt_ids"][0] == 0 and sel["entries"][0]["kind"] == "box"
    page.screenshot(path=artifacts / "05_box.png")

    # switching modes: everything shows all masks, back to box restores the prompt selection
    page.get_by_test_id("mode-everything").click()
    assert page.evaluate("fastsam.selection().indices") == list(range(state["n"]))
    page.get_by_test_id("mode-points").click()
    page.get_by_test_id("mode-box").click()
    assert page.evaluate("fastsam.selection()") == sel

    # SA-1B JSON of the selection
    with page.expect_download() as info:
        page.get_by_test_id("download-json").click()
    json_path = artifacts / "selection_sa1b.json"
    info.value.save_as(json_path)
    assert info.value.suggested_filename == "dog_sa1b.json"
    doc = json.loads(json_path.read_text())
    assert doc["image"] == {"width": 800, "height": 534, "file_name": "dog.jpg"}
    answered = [m for m in answer["masks"] if m["index"] >= 0]
    shown = [e for e in sel["entries"] if e["index"] >= 0]
    assert len(doc["annotations"]) == len(answered) == len(shown) > 0
    for k, (ann, server_mask, entry) in enumerate(zip(doc["annotations"], answered, shown)):
        assert ann["id"] == k
        assert ann["segmentation"] == server_mask["segmentation"]
        assert ann["area"] == server_mask["area"] and ann["predicted_iou"] == server_mask["score"]
        x1, y1, x2, y2 = server_mask["bbox"]
        assert np.allclose(ann["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1e-3)
        assert ann["crop_box"] == [0, 0, 800, 534]
        assert ann["point_coords"] == ([entry["point"]] if entry["kind"] == "point" else [])

    # overlay PNG: single colour, as the server paints it
    page.get_by_test_id("color-single").check()
    with page.expect_download() as info:
        page.get_by_test_id("download-png").click()
    png_path = artifacts / "selection_overlay.png"
    info.value.save_as(png_path)
    ours = np.asarray(Image.open(png_path).convert("RGB")).astype(int)
    assert ours.shape == (534, 800, 3)
    selected = sorted(set(sel["selected"]))
    status, server_png = post_json(f"{base}{API}/images/{sel['image_id']}/overlay",
                                   {"indices": selected, "alpha": 0.5, "contours": True, "random_colors": False})  # fmt: skip
    assert status == 200
    theirs = np.asarray(Image.open(io.BytesIO(server_png)).convert("RGB")).astype(int)
    diff = np.abs(ours - theirs).max(2)
    assert np.mean(diff <= 3) > 0.999, f"overlay differs from the server's: max {diff.max()}, mean {diff.mean():.3f}"
    union = masks[selected].any(0)
    photo = np.asarray(Image.open(photo_path).convert("RGB")).astype(int)
    assert np.abs(ours - photo).max(2)[union].mean() > 10  # the masks are painted
    page.screenshot(path=artifacts / "06_single_colour.png")
    page.get_by_test_id("color-random").check()

    # text: first CLIP is unavailable (the server's error is shown), then it answers
    page.get_by_test_id("mode-text").click()
    page.get_by_test_id("text-input").fill("a dog, grass\n")
    page.get_by_test_id("text-submit").click()
    error = page.get_by_test_id("text-error")
    error.wait_for(state="visible")
    panel = page.get_by_test_id("error-panel")
    panel.wait_for(state="visible")
    # the whole message, readable: wrapped in a wide panel above the image, not cut off nor scrolled
    message = page.get_by_test_id("error-message")
    assert message.inner_text() == "text prompts are unavailable on this server: " + FakeClip.MESSAGE
    assert page.get_by_test_id("error-title").inner_text() == "Text prompts failed"
    assert "above the image" in error.inner_text()
    box = panel.bounding_box()
    assert box is not None and box["width"] >= 600 and box["y"] >= 0 and box["y"] + box["height"] <= 1000
    fits = panel.evaluate("e => e.scrollHeight <= e.clientHeight + 1 && e.scrollWidth <= e.clientWidth + 1")
    assert fits, "the error message is cut off or scrolls"
    assert message.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    line_height = float(message.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)"))
    assert message.bounding_box()["height"] > 2.5 * line_height  # wrapped over several lines
    stage_fits = """() => {
        const s = document.getElementById('stage').getBoundingClientRect();
        const z = document.getElementById('dropzone').getBoundingClientRect();
        return s.top >= z.top && s.bottom <= z.bottom && s.left >= z.left && s.right <= z.right;
    }"""
    assert page.evaluate(stage_fits), "the image no longer fits next to the error panel"
    page.screenshot(path=artifacts / "07_text_error.png")
    page.get_by_test_id("error-close").click()
    assert panel.is_hidden() and page.evaluate(stage_fits)
    page.get_by_test_id("text-submit").click()  # fails again: shown again (the server remembers, answers at once)
    panel.wait_for(state="visible")
    FakeClip.available = True
    page.get_by_test_id("top-k").fill("2")
    page.get_by_test_id("text-submit").click()
    page.wait_for_function("fastsam.ready() && fastsam.selection().texts.length === 2")
    assert error.is_hidden() and panel.is_hidden()
    sel = page.evaluate("fastsam.selection()")
    assert sel["texts"] == ["a dog", "grass"]
    assert [e["kind"] for e in sel["entries"]][-4:] == ["text"] * 4
    check_against_server(base, sel, top_k=2)
    page.screenshot(path=artifacts / "08_text.png")

    # a new input size re-segments; the prompts stay and still agree with the server
    page.get_by_test_id("imgsz").fill("288")
    new_id = wait_ready(page, image_id)
    assert page.evaluate("fastsam.state.image.settings.imgsz") == 288
    page.wait_for_function("fastsam.ready() && fastsam.selection().texts.length === 2")
    sel = page.evaluate("fastsam.selection()")
    assert sel["image_id"] == new_id and len(sel["boxes"]) == 1 and sel["labels"] == [1, 0]
    check_against_server(base, sel, top_k=2)
    page.screenshot(path=artifacts / "09_resegmented.png")

    # clear, then undo the clear
    page.get_by_test_id("clear").click()
    assert page.evaluate("fastsam.selection().indices") == []
    page.get_by_test_id("undo").click()
    assert page.evaluate("fastsam.selection()")["labels"] == [1, 0]

    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the browser test took {elapsed:.1f} s"


def _synthetic(rng: np.random.Generator, h: int, w: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((n, h, w), dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        kind = i % 6
        if kind == 0:
            x1, x2 = sorted(rng.integers(0, w + 1, 2))
            y1, y2 = sorted(rng.integers(0, h + 1, 2))
            masks[i, y1:y2, x1:x2] = True
        elif kind == 1:
            cx, cy, rx, ry = rng.uniform(0, w), rng.uniform(0, h), 1 + rng.uniform(0, w / 2), 1 + rng.uniform(0, h / 2)
            masks[i] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        elif kind == 2:
            masks[i] = rng.random((h, w)) < rng.uniform(0.05, 0.6)
        elif kind == 3:
            masks[i, int(rng.integers(h)), int(rng.integers(w))] = True
        elif kind == 4:
            masks[i] = masks[int(rng.integers(i))] if i else True  # duplicates: equal areas and scores
        else:
            masks[i, :, int(rng.integers(w)) :] = True  # whole columns
    masks[-1] = False  # an empty mask
    masks[-2] = True  # the whole image
    scores = rng.choice(np.array([0.5, 0.7, 0.9, 0.95], dtype=np.float32), n)  # many ties
    return masks, scores


def test_client_rules_match_python(page, live_server) -> None:
    """The browser's RLE decoder and point/box rules against the Python implementation, on tricky masks."""
    base, _ = live_server
    page.goto(f"{base}/")
    page.wait_for_function("window.fastsam !== undefined")
    rng = np.random.default_rng(7)
    for h, w, n in [(70, 45, 30), (33, 97, 24), (1, 5, 8), (130, 64, 18)]:
        masks, scores = _synthetic(rng, h, w, n)
        rles = mask_to_rle(masks)
        bitmaps = page.evaluate(
            """rles => rles.map(r => {
                const m = fastsam.decodeMask(r);
                const [H, W] = r.size;
                let s = '';
                for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
                    const inside = x >= m.x0 && x < m.x1 && y >= m.y0 && y < m.y1 &&
                        ((m.bits[(x - m.x0) * m.wpc + ((y - m.y0) >>> 5)] >>> ((y - m.y0) & 31)) & 1);
                    s += inside ? '1' : '0';
                }
                return [m.area, s];
            })""",
            rles,
        )
        for i, (area, bits) in enumerate(bitmaps):
            assert area == int(masks[i].sum())
            assert bits == "".join("1" if v else "0" for v in masks[i].reshape(-1)), f"mask {i} of {h}x{w}"

        session = SegmentedImage(SegmentationResult(masks, np.zeros((n, 4), np.float32), scores, (h, w)))
        cases = []
        for _ in range(40):
            p = int(rng.integers(1, 6))
            points = np.column_stack([rng.uniform(0, w, p), rng.uniform(0, h, p)])
            points[rng.random(p) < 0.2] = [w, h]  # the far edge counts as the last pixel
            points = np.round(points, 1).tolist()
            labels = rng.integers(0, 2, p).tolist()
            multimask = bool(rng.integers(0, 2))
            boxes = []
            for _ in range(int(rng.integers(1, 4))):
                x1, y1 = rng.uniform(-5, w - 0.5), rng.uniform(-5, h - 0.5)
                x2, y2 = max(x1 + rng.uniform(0.6, w), 0.5), max(y1 + rng.uniform(0.6, h), 0.5)  # overlaps the image
                boxes.append([round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)])
            cases.append({"points": points, "labels": labels, "multimask": multimask, "boxes": boxes})
        got = page.evaluate(
            """([rles, scores, cases]) => {
                const masks = rles.map((r, i) => Object.assign(fastsam.decodeMask(r), {score: scores[i]}));
                const [H, W] = rles[0].size;
                return cases.map(c => ({
                    points: fastsam.selectBest(masks, c.points.map((p, k) => ({x: p[0], y: p[1], label: c.labels[k]})),
                                               c.multimask, W, H),
                    boxes: fastsam.selectBoxes(masks, c.boxes, W, H),
                }));
            }""",
            [rles, scores.tolist(), cases],
        )
        for case, answer in zip(cases, got):
            expected = session.points(case["points"], case["labels"], multimask=case["multimask"])
            flat = [(k, i) for k, pick in enumerate(answer["points"]) for i in (pick or [-1])]
            assert flat == list(zip(expected.prompt_ids.tolist(), expected.indices.tolist())), case
            assert answer["boxes"] == session.boxes(case["boxes"]).indices.tolist(), case


def test_bigger_photo_comes_gzipped_and_answers_like_the_server(page, live_server, photo_path: Path,
                                                              tmp_path: Path, artifacts: Path) -> None:  # fmt: skip
    """A 4.8 MP photo (the live server's pixel limit is 5 MP): the mask listing travels gzip-compressed, the page
    decodes it, and a click selects what the server's /prompt answers (bench/big_server.py and the README give the
    page's numbers on a 36 MP photo)."""
    base, _ = live_server
    big = tmp_path / "big.jpg"
    with Image.open(photo_path) as im:
        im.convert("RGB").resize((2700, 1800), Image.BILINEAR).save(big, quality=90)
    page.goto(f"{base}/?imgsz=320")
    page.wait_for_function("window.fastsam !== undefined")
    page.get_by_test_id("file-input").set_input_files(str(big))
    wait_ready(page)
    [entry] = page.evaluate(
        """performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/images?'))
            .map(e => ({transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize}))"""
    )
    assert 0 < entry["encoded"] < 0.8 * entry["decoded"], entry  # the browser asked for gzip and got it
    state = page.evaluate("({w: fastsam.state.image.width, h: fastsam.state.image.height, n: fastsam.state.masks.length})")
    assert (state["w"], state["h"]) == (2700, 1800) and state["n"] > 0
    page.get_by_test_id("mode-points").click()
    page.mouse.click(*to_screen(page, 1350.5, 900.5, (2700, 1800)))
    check_against_server(base, page.evaluate("fastsam.selection()"))
    page.screenshot(path=artifacts / "10_bigger_photo.png")


# --------------------------------------------------------------------------------------------------------------
# API keys
# --------------------------------------------------------------------------------------------------------------

PAGE_KEY = "page-key-3f9a0c1d5e7b2468"


@pytest.fixture(scope="module")
def keyed_server(tiny_model):
    """The app with an API key, on its own port."""
    from server_helpers import serve

    config = ServerConfig(max_upload_bytes=5_000_000, max_pixels=5_000_000, api_keys=(PAGE_KEY,))
    with serve(create_app(config, model=tiny_model, text_scorer=FakeClip())) as base:
        yield base


def test_page_asks_for_the_api_key_and_sends_it(browser, keyed_server, photo_path: Path, artifacts: Path) -> None:
    base = keyed_server
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    problems: list[str] = []
    pg.on("pageerror", lambda err: problems.append(str(err)))
    sent: list[tuple[str, str | None]] = []
    pg.on("request", lambda req: sent.append((req.method + " " + req.url, req.headers.get("authorization"))))
    try:
        pg.goto(f"{base}/?imgsz=256")
        dialog = pg.get_by_test_id("key-dialog")
        dialog.wait_for(state="visible")  # /health says the server needs a key
        assert "needs an API key" in pg.get_by_test_id("key-message").inner_text()
        pg.get_by_test_id("key-input").fill("not-the-key-at-all")
        pg.get_by_test_id("key-submit").click()
        pg.get_by_test_id("key-error").wait_for(state="visible")
        assert "not accepted" in pg.get_by_test_id("key-error").inner_text() and dialog.is_visible()
        pg.screenshot(path=artifacts / "20_api_key.png")
        pg.get_by_test_id("key-input").fill(PAGE_KEY)
        pg.get_by_test_id("key-submit").click()
        dialog.wait_for(state="hidden")
        pg.get_by_test_id("file-input").set_input_files(str(photo_path))
        image_id = wait_ready(pg)
        uploads = [auth for what, auth in sent if what.startswith(f"POST {base}{API}/images?")]
        assert uploads == [f"Bearer {PAGE_KEY}"]
        assert PAGE_KEY not in pg.get_by_test_id("key-input").input_value()  # the field is emptied
        request = urllib.request.Request(f"{base}{API}/images/{image_id}", headers={"Authorization": f"Bearer {PAGE_KEY}"})
        with urllib.request.urlopen(request) as r:
            assert r.status == 200  # the image belongs to the page's key

        # a key that stops working (e.g. the server's keys changed): the next call asks again, then goes on
        pg.evaluate("k => sessionStorage.setItem('fastsam.apiKey', k)", "revoked-key-0000000000")
        pg.reload()
        pg.wait_for_function("window.fastsam !== undefined")
        assert dialog.is_hidden()  # a key is stored: nothing to ask yet
        pg.get_by_test_id("file-input").set_input_files(str(photo_path))
        dialog.wait_for(state="visible")
        assert "not accepted" in pg.get_by_test_id("key-message").inner_text()
        pg.get_by_test_id("key-input").fill(PAGE_KEY)
        pg.get_by_test_id("key-submit").click()
        assert wait_ready(pg) != image_id
        uploads = [auth for what, auth in sent if what.startswith(f"POST {base}{API}/images?")]
        assert uploads[-2:] == ["Bearer revoked-key-0000000000", f"Bearer {PAGE_KEY}"]
    finally:
        context.close()
    assert not problems, problems
