"""More than one replica: segmented images in Redis, the app on Ray Serve, a replica killed under load.

A real ``redis-server`` (Debian's package; the tests skip without it) is started on a free port by this module and
stopped at its end; one local Ray instance (2 CPUs) runs Ray Serve with two replicas of the random-weight model.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
redis = pytest.importorskip("redis", reason="the 'serve-ray' extra is not installed")

from fastsam.predictor import SegmentedImage  # noqa: E402
from fastsam.server import ServerConfig, create_app  # noqa: E402
from fastsam.server.store import (  # noqa: E402
    RedisStore,
    StoredDataError,
    decode_segmented,
    encode_segmented,
)

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis() -> tuple[subprocess.Popen, str]:
    """A fresh redis-server on a free loopback port, without persistence; its process and URL."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def redis_url():
    proc, url = start_redis()
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def segmented(tiny_model, photo_path: Path) -> SegmentedImage:
    """The dog photo segmented and released as the server keeps it."""
    [result] = tiny_model.predict([str(photo_path)], imgsz=256)
    image = SegmentedImage(result)
    image.release_masks()
    return image


def same_answer(a, b) -> None:
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.prompt_ids, b.prompt_ids)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.masks, b.masks)


def test_encoded_image_answers_prompts_as_the_original(segmented: SegmentedImage) -> None:
    blob = encode_segmented(segmented)
    back = decode_segmented(blob)
    assert len(back) == len(segmented) > 0
    assert back.image_size == segmented.image_size and back.result.file_name == segmented.result.file_name
    assert np.array_equal(back.result.image, segmented.result.image)
    same_answer(back.everything(), segmented.everything())
    h, w = segmented.image_size
    rng = np.random.default_rng(0)
    points = np.stack([rng.integers(0, w, 20), rng.integers(0, h, 20)], 1)
    boxes = [[10, 20, w // 2, h // 2], [w // 3, h // 4, w - 1, h - 1]]
    for kwargs in ({"points": points}, {"points": points, "multimask": True}, {"boxes": boxes},
                   {"points": points[:3], "labels": [1, 0, 1], "mode": "official"}):  # fmt: skip
        same_answer(back.prompt(**kwargs), segmented.prompt(**kwargs))
    # smaller than the image held in memory (the masks' runs + raw pixels), and read back as runs
    assert len(blob) < segmented.release_masks() / 2
    assert back.result.mask_runs() is not None


class _Bomb:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_stored_data_is_never_executed_and_bad_data_is_refused(segmented: SegmentedImage, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    pickled = pickle.dumps(_Bomb(marker))
    with_object = io.BytesIO()
    np.savez(with_object, meta=np.array([_Bomb(marker)], dtype=object))
    good = encode_segmented(segmented)
    cut = good[: len(good) // 2]
    files = dict(np.load(io.BytesIO(good)))
    files["bounds"] = files["bounds"] + 10_000  # windows outside the image
    moved = io.BytesIO()
    np.savez(moved, **files)
    files = dict(np.load(io.BytesIO(good)))
    files["bits"] = files["bits"][:-8]  # truncated mask bits
    short = io.BytesIO()
    np.savez(short, **files)
    for bad in (pickled, with_object.getvalue(), cut, moved.getvalue(), short.getvalue(), b"", b"PK\x03\x04junk"):
        with pytest.raises(StoredDataError, match="not a fastsam segmented image"):
            decode_segmented(bad)
    assert not marker.exists()


def test_redis_store_is_shared_by_replicas(redis_url: str, tiny_model, photo_path: Path, tmp_path: Path) -> None:
    results = tiny_model.predict([str(photo_path)] * 3, imgsz=256)
    images = [SegmentedImage(r) for r in results]
    sizes = [s.release_masks() for s in images]
    blob = len(encode_segmented(images[0]))
    budget = int(blob * 2.5)  # two images fit in Redis, not three
    a = RedisStore(redis_url, max_bytes=budget, local_bytes=10**9, prefix="shared:")
    b = RedisStore(redis_url, max_bytes=budget, local_bytes=10**9, prefix="shared:")
    assert a.put("one", images[0], sizes[0]) and len(b) == 1 and b.nbytes == blob
    got = b.get("one")  # read from Redis by the other replica
    assert got is not None and got is not images[0]
    same_answer(got.everything(), images[0].everything())
    assert b.get("one") is got  # then from its near cache
    a.put("two", images[1], sizes[1])
    assert b.get("one") is got  # "one" is now the most recently used, for every replica
    a.put("three", images[2], sizes[2])  # evicts "two", the least recently used over both replicas
    assert a.get("two") is None and a.get("one") is not None and b.get("three") is not None
    assert len(a) == 2 and a.nbytes == b.nbytes == 2 * blob
    assert b.pop("one") and a.get("one") is None and b.get("one") is None  # a's near copy is not answered
    assert not a.pop("one") and len(b) == 1
    # data that is not ours in Redis: dropped, answered as unknown
    raw = redis.Redis.from_url(redis_url)
    raw.set("shared:img:three", pickle.dumps(_Bomb(tmp_path / "executed")))
    c = RedisStore(redis_url, max_bytes=budget, prefix="shared:")
    assert c.get("three") is None and len(c) == 0 and c.nbytes == 0 and not (tmp_path / "executed").exists()
    raw.close()


def test_unreachable_store_answers_503_and_the_server_stays_up(tiny_model, photo_path: Path) -> None:
    from fastapi.testclient import TestClient

    proc, url = start_redis()
    store = RedisStore(url, max_bytes=10**8, prefix="gone:", timeout_s=0.5)
    app = create_app(ServerConfig(max_queue=4), model=tiny_model, store=store)
    data = photo_path.read_bytes()
    with TestClient(app) as client:
        up = client.post("/api/v1/images?imgsz=256", content=data)
        assert up.status_code == 201, up.text
        image_id = up.json()["image_id"]
        assert client.post(f"/api/v1/images/{image_id}/prompt", json={"points": [[10, 10]]}).status_code == 200
        stop(proc)
        for answer in (client.post(f"/api/v1/images/{image_id}/prompt", json={"points": [[10, 10]]}),
                       client.post("/api/v1/images?imgsz=256", content=data), client.get("/api/v1/health")):  # fmt: skip
            assert answer.status_code == 503, answer.text
            assert "image store" in answer.json()["error"] and answer.headers["retry-after"]
        assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--replicas", "2"], 2, "--replicas is an option of --engine ray"),
        (["--engine", "ray", "--replicas", "2"], 2, "need a shared store for the segmented images"),
        (["--engine", "ray", "--min-replicas", "3", "--max-replicas", "2", "--cache", "redis://x"], 2, "min <= max"),
        (["--engine", "ray", "--device", "cuda", "--cache", "redis://x"], 2, "set --num-gpus-per-replica"),
        (["--cache", "memcached://x"], 1, "unknown store"),
        (["--cache", "redis://:secret@127.0.0.1:1/0"], 1, "image store (Redis at 127.0.0.1:1) is unreachable"),
    ],
)
def test_serve_replica_options_errors_are_one_line(argv: list[str], code: int, message: str, tiny_weights: Path,
                                                   capsys) -> None:  # fmt: skip
    from fastsam.cli.main import main

    assert main(["serve", "--model", str(tiny_weights), *argv]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "secret" not in err


# ---------------------------------------------------------------------------------------------------- Ray Serve


@pytest.fixture(scope="module")
def service(redis_url: str, tiny_weights: Path):
    """Ray Serve on a local Ray instance: the gateway and two replicas sharing ``redis_url``."""
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    import httpx

    from fastsam.server.ray_serve import ReplicaPlan, build_application

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = ServerConfig(model=str(tiny_weights), device="cpu", precision="fp32", max_queue=8)
        serve.run(build_application(config, redis_url, ReplicaPlan(replicas=2)), name="fastsam", route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            yield client
    finally:
        serve.shutdown()
        ray.shutdown()


def test_a_replica_answers_prompts_for_an_image_another_segmented(service, photo_path: Path) -> None:
    up = service.post("/api/v1/images?imgsz=256", content=photo_path.read_bytes())
    assert up.status_code == 201, up.text
    body = up.json()
    uploader = up.headers["x-fastsam-replica"]
    box = {"boxes": [[100, 100, 500, 400]], "points": [[300, 250], [700, 100]]}
    answers: dict[str, dict] = {}
    for _ in range(40):  # Ray Serve picks the replica; ask until the other one has answered too
        r = service.post(f"/api/v1/images/{body['image_id']}/prompt", json=box)
        assert r.status_code == 200, r.text
        answers.setdefault(r.headers["x-fastsam-replica"], r.json())
        if len(answers) == 2:
            break
    assert len(answers) == 2 and uploader in answers
    [other] = set(answers) - {uploader}
    assert answers[other] == answers[uploader]
    by_index = {m["index"]: m for m in body["masks"]}
    for mask in answers[other]["masks"]:  # the masks the other replica chose are the uploader's masks
        if mask["index"] >= 0:
            assert mask["segmentation"] == by_index[mask["index"]]["segmentation"]
    for _ in range(40):
        listing = service.get(f"/api/v1/images/{body['image_id']}")
        if listing.headers["x-fastsam-replica"] == other:
            assert listing.status_code == 200 and listing.json()["masks"] == body["masks"]
            break
    else:
        pytest.fail("the other replica never answered the listing")
    assert service.delete(f"/api/v1/images/{body['image_id']}").status_code == 204
    for _ in range(6):  # gone for every replica
        assert service.post(f"/api/v1/images/{body['image_id']}/prompt", json=box).status_code == 404


def test_a_replica_killed_under_load_costs_retries_or_503_only(service, photo_path: Path) -> None:
    import httpx

    data = photo_path.read_bytes()
    warm = service.post("/api/v1/images?imgsz=256", content=data)
    assert warm.status_code == 201
    image_id = warm.json()["image_id"]
    victim = int(warm.headers["x-fastsam-replica"].rsplit("@", 1)[1])  # the replica that segmented this image
    statuses: Counter[int] = Counter()
    retried, spans = [], []
    lock = threading.Lock()
    stop_at = time.monotonic() + 14
    killed_at: list[float] = []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=service.base_url, timeout=120) as http:
            while time.monotonic() < stop_at:
                start = time.monotonic()
                if rng.random() < 0.5:
                    r = http.post("/api/v1/images?imgsz=256", content=data)
                else:
                    x, y = int(rng.integers(0, 800)), int(rng.integers(0, 534))
                    r = http.post(f"/api/v1/images/{image_id}/prompt", json={"points": [[x, y]]})
                with lock:
                    statuses[r.status_code] += 1
                    spans.append((start, time.monotonic()))
                    if "x-fastsam-retries" in r.headers:
                        retried.append(r.status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(4)
    os.kill(victim, signal.SIGKILL)  # a crash: no drain, no goodbye
    killed_at.append(time.monotonic())
    for t in threads:
        t.join()
    in_flight = [s for s in spans if s[0] < killed_at[0] < s[1]]
    print(f"statuses {dict(statuses)}, retried answers {Counter(retried)}, in flight at the kill {len(in_flight)}")
    assert set(statuses) <= {200, 201, 503}, statuses
    assert statuses[200] and statuses[201]
    assert in_flight, "no request was in flight when the replica was killed"
    assert retried or statuses[503], "the killed replica's requests were neither retried nor answered 503"
    # the service keeps serving, the image the dead replica segmented included (it is in Redis)
    after = service.post(f"/api/v1/images/{image_id}/prompt", json={"points": [[400, 260]]})
    assert after.status_code == 200 and after.headers["x-fastsam-replica"].rsplit("@", 1)[1] != str(victim)
    assert service.post("/api/v1/images?imgsz=256", content=data).status_code == 201
