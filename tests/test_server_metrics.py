"""Watching the server: after a small concurrent load on a live server, ``/metrics`` (parsed with
prometheus-client's own parser) counts exactly the requests made, by method, route and status; the latency
histograms count them too; batch sizes add up to the images segmented; the cache gauges match ``/health``.
Every answer has an ``X-Request-ID`` (the client's own when sent) and one access-log line."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the 'app' extra is not installed")
pytest.importorskip("uvicorn", reason="the 'app' extra is not installed")
import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from server_helpers import photo_600x400, serve  # noqa: E402

from fastsam.server import ServerConfig, create_app  # noqa: E402

IMAGES = "/api/v1/images"
ONE = "/api/v1/images/{image_id}"


def scrape(base: str) -> dict[str, list]:
    text = httpx.get(f"{base}/metrics").text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


@pytest.mark.slow
def test_metrics_count_the_requests_made(tiny_model, photo_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    photo = photo_600x400(photo_path)
    config = ServerConfig(cache_bytes=12_000_000, max_batch=4)  # about two images: uploads evict older ones
    made: Counter = Counter()
    ids: list[str] = []
    lock = threading.Lock()
    with caplog.at_level(logging.INFO, logger="fastsam.access"), serve(create_app(config, model=tiny_model)) as base:
        before = scrape(base)  # the readiness polls of serve() came first
        with httpx.Client(base_url=base, timeout=120) as client:

            def record(method: str, route: str, response: httpx.Response) -> httpx.Response:
                with lock:
                    made[(method, route, str(response.status_code))] += 1
                    ids.append(response.headers["x-request-id"])
                return response

            def upload(_: int) -> str:
                r = record("POST", IMAGES, client.post(f"{IMAGES}?imgsz=128", content=photo))
                assert r.status_code == 201, r.text
                return r.json()["image_id"]

            with ThreadPoolExecutor(4) as pool:  # concurrent uploads: the worker batches them
                uploaded = list(pool.map(upload, range(8)))

            def mixed(seed: int) -> None:
                rng = random.Random(seed)
                for _ in range(10):
                    image_id = rng.choice(uploaded)  # evicted ones answer 404: counted as such
                    kind = rng.randrange(5)
                    if kind == 0:
                        record("GET", ONE, client.get(f"{IMAGES}/{image_id}"))
                    elif kind == 1:
                        body = {"points": [[rng.uniform(0, 600), rng.uniform(0, 400)]]}
                        record("POST", ONE + "/prompt", client.post(f"{IMAGES}/{image_id}/prompt", json=body))
                    elif kind == 2:
                        record("POST", ONE + "/prompt", client.post(f"{IMAGES}/{image_id}/prompt", json={"top_k": 0}))
                    elif kind == 3:
                        record("GET", "/api/v1/health", client.get("/api/v1/health"))
                    else:
                        record("GET", "unmatched", client.get(f"/no/such/{rng.randrange(100)}"))

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(mixed, range(4)))
            echoed = client.get(f"{IMAGES}/{uploaded[-1]}", headers={"X-Request-ID": "client-chosen.id-7"})
            record("GET", ONE, echoed)
            assert echoed.headers["x-request-id"] == "client-chosen.id-7"
            unsafe = client.get("/api/v1/health", headers={"X-Request-ID": "bad id\twith spaces"})
            record("GET", "/api/v1/health", unsafe)
            assert unsafe.headers["x-request-id"] != "bad id\twith spaces" and len(unsafe.headers["x-request-id"]) == 32
            health = record("GET", "/api/v1/health", client.get("/api/v1/health")).json()

            metrics = scrape(base)
        access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fastsam.access"]

    def requests(samples: dict, family: str, suffix: str) -> Counter:
        found = Counter({(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
                         for s in samples.get(family, []) if s.name.endswith(suffix)})  # fmt: skip
        return Counter({k: v for k, v in found.items() if k[1] != "/metrics"})

    counted = requests(metrics, "fastsam_http_requests", "_total")
    counted.subtract(requests(before, "fastsam_http_requests", "_total"))
    assert {k: v for k, v in counted.items() if v} == {key: float(n) for key, n in made.items()}
    assert {k[2] for k in made} >= {"201", "200", "422", "404"}
    assert requests(metrics, "fastsam_http_request_duration_seconds", "_count") == requests(
        metrics, "fastsam_http_requests", "_total")  # fmt: skip
    batch = {s.name: s.value for s in metrics["fastsam_inference_batch_size"]}
    assert batch["fastsam_inference_batch_size_sum"] == 8  # every uploaded image went through one forward pass
    assert 1 <= batch["fastsam_inference_batch_size_count"] <= 8
    network = {s.name: s.value for s in metrics["fastsam_inference_network_seconds"]}
    assert network["fastsam_inference_network_seconds_count"] == batch["fastsam_inference_batch_size_count"]
    assert network["fastsam_inference_network_seconds_sum"] > 0
    assert [s.value for s in metrics["fastsam_inference_queue_length"]] == [0]
    cache = {(s.name, s.labels["cache"]): s.value for family in ("fastsam_cache_bytes", "fastsam_cache_items",
             "fastsam_cache_evictions") for s in metrics[family]}  # fmt: skip
    assert cache[("fastsam_cache_bytes", "images")] == health["cache_bytes"] <= config.cache_bytes
    assert cache[("fastsam_cache_items", "images")] == health["cached_images"] >= 1
    assert cache[("fastsam_cache_evictions_total", "images")] == 8 - health["cached_images"] > 0
    # one access-log line per request, with its request id (besides: the readiness polls and the scrapes)
    assert len(set(ids)) == len(ids)
    logged = [line for line in access if line["request_id"] in set(ids)]
    assert sorted(line["request_id"] for line in logged) == sorted(ids)
    assert Counter((line["method"], line["route"], str(line["status"])) for line in logged) == made
    others = [line for line in access if line["request_id"] not in set(ids)]
    assert all(line["route"] in ("/metrics", "/api/v1/health") for line in others), others
