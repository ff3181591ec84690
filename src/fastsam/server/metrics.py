"""Prometheus metrics of one app (served at ``/metrics``), in a registry of its own.

* ``fastsam_http_requests_total{method, route, status}``: answers given (``route`` is the path template, e.g.
  ``/api/v1/images/{image_id}/prompt``; ``unmatched`` for unknown paths; ``method`` ``other`` for non-standard
  methods: clients cannot make new label values);
* ``fastsam_http_request_duration_seconds{method, route, status}``: time to answer (histogram);
* ``fastsam_inference_queue_length``: images waiting for the network;
* ``fastsam_inference_batch_size``: images per forward pass (histogram);
* ``fastsam_inference_network_seconds``: time of each forward pass with its post-processing (histogram);
* ``fastsam_cache_bytes{cache}``, ``fastsam_cache_items{cache}``, ``fastsam_cache_max_bytes{cache}``,
  ``fastsam_cache_evictions_total{cache}``: the segmented-image cache (``images``) and the mask listings
  (``listings``), read when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class _StateCollector(Collector):
    """Gauges read at scrape time: queue length and the caches' sizes and evictions."""

    def __init__(self, caches: dict[str, Any], queue_length: Callable[[], int]) -> None:
        self.caches = caches
        self.queue_length = queue_length

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily("fastsam_inference_queue_length", "images waiting for the network",
                                value=self.queue_length())  # fmt: skip
        held = GaugeMetricFamily("fastsam_cache_bytes", "bytes held by the cache", labels=["cache"])
        items = GaugeMetricFamily("fastsam_cache_items", "entries in the cache", labels=["cache"])
        budget = GaugeMetricFamily("fastsam_cache_max_bytes", "the cache's budget in bytes", labels=["cache"])
        evicted = CounterMetricFamily("fastsam_cache_evictions", "entries evicted to stay under the budget",
                                      labels=["cache"])  # fmt: skip
        for name, cache in self.caches.items():
            held.add_metric([name], getattr(cache, "nbytes", 0))
            items.add_metric([name], len(cache))
            budget.add_metric([name], getattr(cache, "max_bytes", 0))
            evicted.add_metric([name], getattr(cache, "evictions", 0))
        yield from (held, items, budget, evicted)


class Metrics:
    """The app's metrics.

    Args:
        caches: name -> cache (anything with ``len``; ``nbytes``, ``max_bytes``, ``evictions`` read if present).
        queue_length: returns the number of images waiting for the network.
    """

    def __init__(self, caches: dict[str, Any], queue_length: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter("fastsam_http_requests", "HTTP answers given", labels, registry=self.registry)
        self.latency = Histogram("fastsam_http_request_duration_seconds", "time to answer an HTTP request", labels,
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.batch_size = Histogram("fastsam_inference_batch_size", "images per forward pass",
                                    buckets=BATCH_BUCKETS, registry=self.registry)  # fmt: skip
        self.network_seconds = Histogram("fastsam_inference_network_seconds",
                                         "time of one forward pass with its post-processing",
                                         buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.registry.register(_StateCollector(caches, queue_length))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.network_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
