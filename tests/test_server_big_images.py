"""Big photos in the server (issue 18, part 2): cached as runs and prompted from them, a server-wide memory budget,
gzip-compressed answers.

"Big" here is a real photo scaled up to 3000 x 2000 (6 MP) with the random-weight test network, so that the tests
stay fast; ``bench/big_server.py`` measures the same paths on a 36 MP photo.
"""

from __future__ import annotations

import gzip
import io
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from fastsam.ops.mask_index import MaskIndex, RunIndex  # noqa: E402
from fastsam.ops.rle import mask_to_rle, rle_to_mask  # noqa: E402
from fastsam.predictor import SegmentedImage  # noqa: E402
from fastsam.results import SegmentationResult  # noqa: E402
from fastsam.server import ServerConfig, create_app  # noqa: E402
from fastsam.server import budget as budget_module  # noqa: E402
from fastsam.server.budget import (  # noqa: E402
    BudgetBusyError,
    MemoryBudget,
    OverBudgetError,
    estimate_upload_bytes,
)
from fastsam.server.cache import ByteLRU  # noqa: E402
from fastsam.server.store import decode_segmented, encode_segmented  # noqa: E402

W, H = 3000, 2000
MiB = 1024**2


@pytest.fixture(scope="module")
def big_jpeg(photo_path: Path) -> bytes:
    """The dog photo scaled up to 3000 x 2000, as JPEG bytes."""
    with Image.open(photo_path) as im:
        out = io.BytesIO()
        im.convert("RGB").resize((W, H), Image.BILINEAR).save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def big_result(tiny_model, big_jpeg: bytes) -> SegmentationResult:
    image = np.asarray(Image.open(io.BytesIO(big_jpeg)).convert("RGB"))
    [result] = tiny_model.predict([image], imgsz=256)
    assert result.mask_runs() is not None and len(result) > 20  # the CPU path holds runs
    return result


def dense_twin(result: SegmentationResult) -> SegmentationResult:
    """The same masks as an ``(N, H, W)`` array: the bit-packed index path."""
    return SegmentationResult(result.mask_runs().numpy(), result.boxes.copy(), result.scores.copy(),
                              result.image_size, result.file_name, result.image)  # fmt: skip


def same_answer(a: SegmentationResult, b: SegmentationResult) -> None:
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.prompt_ids, b.prompt_ids)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
    assert a.to_rle() == b.to_rle()  # the same masks, bit for bit (the array is not laid out)


def prompts(result: SegmentationResult) -> list[dict]:
    """Several prompts of each kind, on and off the masks, with ties and background points."""
    rng = np.random.default_rng(0)
    boxes = result.boxes.astype(int)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) // 2, (boxes[:, 1] + boxes[:, 3]) // 2], 1)[:6]
    points = np.concatenate([centres, rng.integers(0, [W, H], (6, 2)), [[W, H], [0, 0]]])
    labels = [1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1]
    some_boxes = np.concatenate([boxes[:4], [[10, 10, 2900, 1900], [100, 100, 200, 180], [-50, -50, 40, 40]]])
    return [
        {"points": points},
        {"points": points, "labels": labels},
        {"points": points, "multimask": True},
        {"points": points, "labels": labels, "multimask": True},
        {"points": points[:4], "labels": [1, 0, 1, 1], "mode": "official"},
        {"points": points, "labels": labels, "mode": "ultralytics"},
        {"boxes": some_boxes},
        {"boxes": some_boxes[:3], "points": points[:5], "labels": [1, 1, 0, 1, 1]},
        {"boxes": some_boxes[:2], "points": points[:3], "mode": "ultralytics"},
        {},
    ]


def test_run_path_answers_exactly_like_the_dense_path(big_result: SegmentationResult) -> None:
    runs, dense = SegmentedImage(big_result), SegmentedImage(dense_twin(big_result))
    assert isinstance(runs.index, RunIndex) and isinstance(dense.index, MaskIndex)
    np.testing.assert_array_equal(runs.index.areas, dense.index.areas)
    np.testing.assert_array_equal(runs.index.bboxes, dense.index.bboxes)
    released = SegmentedImage(dense_twin(big_result))
    released.release_masks()  # the bit-packed index only, as the server kept images before
    for kwargs in prompts(big_result):
        answer = runs.prompt(**kwargs)
        assert answer.mask_runs() is not None  # answered as runs: nothing decoded for RLE
        same_answer(answer, dense.prompt(**kwargs))
        same_answer(answer, released.prompt(**kwargs))
    picked = runs.pick(np.array([3, -1, 3, 0]))
    same_answer(picked, dense.pick(np.array([3, -1, 3, 0])))
    assert picked.mask_runs().runs[0] is picked.mask_runs().runs[2]  # a mask answering twice is shared


def test_cache_holds_runs_not_a_bit_packed_index(big_result: SegmentedImage) -> None:
    session = SegmentedImage(big_result)
    held = session.release_masks()
    runs = big_result.mask_runs()
    assert session.result.mask_runs() is runs  # the result keeps its runs; no array, no bit-packed index
    image = big_result.image.nbytes
    assert runs.nbytes <= held - image < runs.nbytes + 200 * len(runs) + 64 * 1024
    packed = len(big_result) * H * W / 8  # what the bit-packed index's words alone took
    assert held - image < packed / 20, f"{(held - image) / MiB:.1f} MB of masks vs {packed / MiB:.0f} MB packed"
    assert len(session.points([[W // 2, H // 2]])) == 1  # and it still answers


def test_small_images_keep_a_packed_index_beside_their_runs(tiny_model, photo_path: Path) -> None:
    """Below ``packed_index_max_bytes`` the queries go through the bit-packed index (boxes vectorised over masks),
    counted in the bytes held; the run index gives the same answers."""
    [result] = tiny_model.predict([str(photo_path)], imgsz=256)
    packed = SegmentedImage(result)
    held = packed.release_masks()
    assert isinstance(packed.index, MaskIndex) and packed.result.mask_runs() is result.mask_runs()
    assert held >= packed.index.nbytes + result.mask_runs().nbytes + result.image.nbytes
    from_runs = SegmentedImage(result)
    from_runs.packed_index_max_bytes = 0
    assert isinstance(from_runs.index, RunIndex)
    rng = np.random.default_rng(2)
    corner = rng.uniform(0, [790, 520], (300, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 300, (300, 2))], 1)
    points = rng.integers(0, [800, 534], (40, 2))
    for kwargs in ({"boxes": boxes}, {"points": points, "multimask": True}, {"points": points[:5], "mode": "official"}):
        same_answer(packed.prompt(**kwargs), from_runs.prompt(**kwargs))


def test_prompts_decode_only_what_they_return(big_result: SegmentationResult) -> None:
    """A point prompt's RLE comes from the runs; official mode and overlays decode one window at a time."""
    session = SegmentedImage(big_result)
    session.release_masks()
    x, y = (int(v) for v in big_result.boxes[0, :2] + 1)
    tracemalloc.start()
    try:
        answer = session.points([[x, y], [W // 3, H // 3]])
        rles = answer.to_rle()
        point_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        merged = session.points([[x, y], [W // 3, H // 3], [W // 2, H // 2]], mode="official")
        official_peak = tracemalloc.get_traced_memory()[1]
        overlay_peaks = []
        for n in (1, 5):
            tracemalloc.reset_peak()
            picture = session.pick(np.arange(n)).render()
            overlay_peaks.append(tracemalloc.get_traced_memory()[1])
            del picture
    finally:
        tracemalloc.stop()
    assert len(rles) == 2 and len(merged) == 1
    assert point_peak < H * W / 4, f"{point_peak / MiB:.1f} MB"  # not even one full-size mask
    # the canvas and one window at a time (with the temporaries of decoding it), not N full-size masks
    assert official_peak < 6 * H * W < len(session) * H * W / 20, f"{official_peak / MiB:.1f} MB"
    # an overlay decodes one window at a time: five masks cost what one does (beside the overlay's own arrays)
    assert overlay_peaks[1] - overlay_peaks[0] < H * W, [f"{p / MiB:.1f} MB" for p in overlay_peaks]


def test_store_encoding_reads_back_as_runs(big_result: SegmentationResult) -> None:
    """The shared store's encoding, from runs and from a bit-packed index, one window at a time both ways."""
    session = SegmentedImage(big_result)
    session.release_masks()
    dense = SegmentedImage(dense_twin(big_result))
    dense.release_masks()
    tracemalloc.start()
    try:
        blob = encode_segmented(session)
        encode_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    windows = sum(int((b[2] - b[0]) * (b[3] - b[1])) for b in big_result.mask_runs().bounds)
    assert encode_peak < windows / 4, f"{encode_peak / MiB:.1f} MB for {windows / MiB:.0f} MB of windows"
    assert encode_segmented(dense) != b""
    for back in (decode_segmented(blob), decode_segmented(encode_segmented(dense))):
        assert back.result.mask_runs() is not None
        assert back.result.mask_runs().to_rle() == big_result.mask_runs().to_rle()
        for kwargs in prompts(big_result)[:3]:
            same_answer(back.prompt(**kwargs), session.prompt(**kwargs))


# ------------------------------------------------------------------------------------------------ the memory budget


def test_budget_refuses_what_can_never_fit_and_names_the_option() -> None:
    budget = MemoryBudget(1000 * MiB)
    budget.settle(resting_bytes=400 * MiB)
    assert budget.capacity == 600 * MiB
    with pytest.raises(OverBudgetError, match=r"--memory-mb 1000.*400\.0 MB for the model"):
        budget.acquire(601 * MiB, "segmenting this 9000x9000 image")
    with budget.reserve(600 * MiB):
        assert budget.reserved == 600 * MiB
    assert budget.reserved == 0
    with pytest.raises(OverBudgetError, match="at rest"):
        MemoryBudget(300 * MiB).settle(resting_bytes=400 * MiB)
    unlimited = MemoryBudget(None)
    unlimited.acquire(10**15)
    unlimited.release(10**15)
    assert unlimited.reserved == 0


def test_budget_waits_for_room_then_is_busy() -> None:
    budget = MemoryBudget(100, wait_s=0.3)
    budget.acquire(70)
    started = time.monotonic()
    with pytest.raises(BudgetBusyError, match=r"server busy.*--memory-mb"):
        budget.acquire(40)
    assert 0.25 < time.monotonic() - started < 2
    got = threading.Event()

    def second() -> None:
        budget.acquire(40)
        got.set()

    budget.wait_s = 5
    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.1)
    assert not got.is_set()  # waiting while the first holds the room
    budget.release(70)
    waiter.join(5)
    assert got.is_set() and budget.reserved == 40


def test_budget_counts_the_caches_and_makes_them_give_way() -> None:
    cache: ByteLRU[str] = ByteLRU(1000)
    for key in "abcd":
        cache.put(key, key, 20)
    budget = MemoryBudget(100, wait_s=0.2, held=lambda: cache.nbytes, make_room=cache.shrink)
    budget.acquire(30)  # 80 cached + 30 > 100: the least recently used image goes
    assert budget.reserved == 30 and cache.nbytes == 60 and cache.get("a") is None and cache.get("b") == "b"
    budget.acquire(30)  # 30 + 60 + 30 > 100: "c" is now the least recently used
    assert cache.nbytes == 40 and cache.get("c") is None and cache.get("b") == "b"
    # held reservations are not evictable: dropping every image would not be enough, so nothing is dropped
    with pytest.raises(BudgetBusyError):
        budget.acquire(50)
    assert cache.nbytes == 40


def test_upload_estimate_follows_pixels_and_input_size() -> None:
    small, big = estimate_upload_bytes(600, 400), estimate_upload_bytes(6000, 6000)
    assert big - small == budget_module.UPLOAD_BYTES_PER_PIXEL * (6000 * 6000 - 600 * 400)
    assert estimate_upload_bytes(600, 400, imgsz=2048) - small == 3 * budget_module.NETWORK_BYTES_AT_1024
    # README "Big photos": fastsam segment measured about 8 MB per megapixel at 300 masks
    assert big >= 8 * 36 * MiB


class GatedModel:
    """The test network, whose forward pass waits until ``go`` is set (to hold an upload in flight)."""

    def __init__(self, model) -> None:
        self.model, self.entered, self.go = model, threading.Event(), threading.Event()
        self.go.set()

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def predict(self, *args, **kwargs):
        self.entered.set()
        self.go.wait(30)
        return self.model.predict(*args, **kwargs)


def keep_test_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budgeted server reconfigures glibc's malloc process-wide: not this test process's."""
    monkeypatch.setattr(budget_module, "configure_allocator", lambda: True)
    monkeypatch.setattr(budget_module, "trim_allocator", lambda: None)


@pytest.fixture()
def at_rest_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget's "at rest" measure reads 0 (this test process holds far more than a server would)."""
    monkeypatch.setattr(budget_module, "resident_bytes", lambda: 0)
    keep_test_allocator(monkeypatch)


def upload(client: TestClient, data: bytes, **headers: str):
    return client.post("/api/v1/images?imgsz=256", content=data, headers={"content-type": "image/jpeg", **headers})


def test_server_admits_uploads_against_the_budget(tiny_model, big_jpeg: bytes, at_rest_zero) -> None:
    need = estimate_upload_bytes(W, H, 256, len(big_jpeg))
    gated = GatedModel(tiny_model)
    config = ServerConfig(memory_bytes=need + 4 * MiB, memory_wait_s=0.5, max_pixels=10_000_000,
                          max_upload_bytes=20_000_000)  # fmt: skip
    with TestClient(create_app(config, model=gated)) as client:
        gated.go.clear()
        first: dict = {}
        holder = threading.Thread(target=lambda: first.update(r=upload(client, big_jpeg)))
        holder.start()
        assert gated.entered.wait(30)
        busy = upload(client, big_jpeg)  # the first holds its reservation: no room for a second
        assert busy.status_code == 503 and busy.headers["retry-after"]
        assert "--memory-mb" in busy.json()["error"] and "retry" in busy.json()["error"]
        gated.go.set()
        holder.join(60)
        assert first["r"].status_code == 201, first["r"].text
        image_id = first["r"].json()["image_id"]
        # promptable right after the upload
        x, y = (int(v) + 1 for v in first["r"].json()["masks"][0]["bbox"][:2])
        answer = client.post(f"/api/v1/images/{image_id}/prompt", json={"points": [[x, y]]})
        assert answer.status_code == 200 and answer.json()["masks"][0]["index"] >= 0
        # the second upload gets in once the first is done, and the cache gives way: the first image (more than
        # the 4 MB left beside the upload) is dropped
        again = upload(client, big_jpeg)
        assert again.status_code == 201, again.text
        assert client.get(f"/api/v1/images/{image_id}").status_code == 404
        assert client.get("/api/v1/health").json()["cached_images"] == 1
    # a photo that could never fit is refused at once with the limit named
    small = ServerConfig(memory_bytes=need // 2, max_pixels=10_000_000, max_upload_bytes=20_000_000)
    with TestClient(create_app(small, model=tiny_model)) as client:
        started = time.monotonic()
        refused = upload(client, big_jpeg)
        assert refused.status_code == 413, refused.text
        message = refused.json()["error"]
        assert "3000x2000" in message and f"--memory-mb {need // 2 // MiB}" in message
        assert time.monotonic() - started < 5
        assert client.get("/api/v1/health").json()["status"] == "ok"


def test_big_image_is_cached_and_promptable_at_once(tiny_model, big_jpeg: bytes, big_result) -> None:
    """With the default 2 GB cache, the image's id answers prompts (from the runs), the same masks as the upload."""
    with TestClient(create_app(ServerConfig(max_pixels=10_000_000, max_upload_bytes=20_000_000),
                               model=tiny_model)) as client:  # fmt: skip
        first = upload(client, big_jpeg)
        assert first.status_code == 201, first.text
        body = first.json()
        health = client.get("/api/v1/health").json()
        assert health["cached_images"] == 1
        runs = big_result.mask_runs()
        assert health["cache_bytes"] < W * H * 3 + runs.nbytes + 64 * len(runs) * 1024  # image + runs, not GBs
        assert [m["segmentation"] for m in body["masks"]] == runs.to_rle()
        dense = SegmentedImage(dense_twin(big_result))
        for kwargs in prompts(big_result)[:8]:
            json_body = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
            answer = client.post(f"/api/v1/images/{body['image_id']}/prompt", json=json_body)
            assert answer.status_code == 200, answer.text
            expected = dense.prompt(**kwargs)
            got = answer.json()["masks"]
            assert [m["index"] for m in got] == expected.indices.tolist()
            assert [m["segmentation"] for m in got] == mask_to_rle(expected.masks)
        png = client.post(f"/api/v1/images/{body['image_id']}/overlay", json={"indices": [0, 1]})
        assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (W, H)


# -------------------------------------------------------------------------------------------------------------- gzip


def test_large_answers_are_gzipped_for_clients_that_ask(tiny_model, photo_path: Path) -> None:
    with TestClient(create_app(ServerConfig(), model=tiny_model)) as client:
        plain = client.post("/api/v1/images?imgsz=256", content=photo_path.read_bytes(),
                            headers={"content-type": "image/jpeg", "accept-encoding": "identity"})  # fmt: skip
        assert plain.status_code == 201 and "content-encoding" not in plain.headers
        assert plain.headers["content-type"] == "application/json"
        image_id = plain.json()["image_id"]
        listing = client.get(f"/api/v1/images/{image_id}", headers={"accept-encoding": "gzip"})
        assert listing.headers["content-encoding"] == "gzip" and listing.headers["vary"] == "Accept-Encoding"
        sent = int(listing.headers["content-length"])
        assert sent < 0.8 * len(listing.content)  # RLE strings compress
        assert listing.json()["masks"] == plain.json()["masks"]  # decoded by the client: the same answer
        raw = client.get(f"/api/v1/images/{image_id}", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in raw.headers and raw.json()["masks"] == plain.json()["masks"]
        # small answers (under 1 kB) and PNGs go as they are
        missing = client.get("/api/v1/images/nope", headers={"accept-encoding": "gzip"})
        assert missing.status_code == 404 and "content-encoding" not in missing.headers
        png = client.post(f"/api/v1/images/{image_id}/overlay", json={"indices": [0]},
                          headers={"accept-encoding": "gzip"})  # fmt: skip
        assert png.headers["content-type"] == "image/png" and "content-encoding" not in png.headers


def test_gzip_body_is_plain_gzip(tiny_model, photo_path: Path) -> None:
    """What a client without automatic decoding receives is a standard gzip stream of the JSON."""
    import urllib.request

    from server_helpers import serve

    with serve(create_app(ServerConfig(), model=tiny_model)) as base:
        request = urllib.request.Request(f"{base}/api/v1/images?imgsz=256", data=photo_path.read_bytes(),
                                         headers={"Content-Type": "image/jpeg", "Accept-Encoding": "gzip"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            body = r.read()
    import json

    answer = json.loads(gzip.decompress(body))
    masks = rle_to_mask([m["segmentation"] for m in answer["masks"][:3]])
    assert [int(m.sum()) for m in masks] == [m["area"] for m in answer["masks"][:3]]


# --------------------------------------------------------------------------------------------------------------- CLI


def test_serve_memory_mb_option(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                tiny_weights: Path) -> None:  # fmt: skip
    import uvicorn

    import fastsam.server
    from fastsam.cli.main import main

    keep_test_allocator(monkeypatch)
    configs: list = []
    real_create_app = fastsam.server.create_app
    monkeypatch.setattr(fastsam.server, "create_app",
                        lambda config, **kw: configs.append(config) or real_create_app(config, **kw))  # fmt: skip
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    serve = ["serve", "--model", str(tiny_weights), "--device", "cpu"]
    assert main([*serve, "--memory-mb", "6000"]) == 0 and configs[-1].memory_bytes == 6000 * MiB
    assert main([*serve, "--memory-mb", "0"]) == 0 and configs[-1].memory_bytes is None
    assert main(serve) == 0  # default: 80% of the machine's (or container's) memory
    assert configs[-1].memory_bytes == int(budget_module.machine_memory_bytes() * 0.8)
    capsys.readouterr()
    assert main([*serve, "--memory-mb", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "fastsam serve: error: --memory-mb must be 0 (no budget) or more, got -1"
    assert main([*serve, "--memory-mb", "64"]) == 2  # less than the process holds with the model loaded
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("fastsam serve: error: --memory-mb 64 is not more than the") and "give at least" in line
    assert len(configs) == 3


def test_budgeted_process_gives_freed_memory_back() -> None:
    """After configure_allocator, memory freed by worker threads leaves the process (glibc; skipped elsewhere)."""
    import subprocess
    import sys

    script = """
import sys, threading
import numpy as np
from fastsam.server.budget import configure_allocator, resident_bytes
if sys.argv[1] == "1" and not configure_allocator():
    print("unsupported"); sys.exit()
before = resident_bytes()
def work():  # many medium blocks (2-8 MB), as mask runs and windows are, from several threads
    blocks = [np.ones(int(n), np.uint8) for n in np.linspace(2e6, 8e6, 40)]
    del blocks
for _ in range(3):
    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]; [t.join() for t in threads]
print((resident_bytes() - before) / 2**20)
"""
    kept = []
    for configured in ("0", "1"):
        done = subprocess.run([sys.executable, "-c", script, configured], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        if done.stdout.strip() == "unsupported":
            pytest.skip("not glibc")
        kept.append(float(done.stdout))
    # MB still resident after the threads freed everything (glibc's defaults kept 259 MB here)
    assert kept[1] < 20, kept
