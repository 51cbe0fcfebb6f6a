"""Prometheus metrics of the server, in a registry of its own (GET /metrics).

- `alexnet_serve_requests_total{method, path, code}`: answered requests; `path` is the route
  template (`/v1/images/{split}/{i}.png`), so the label set stays small.
- `alexnet_serve_request_seconds{path}`: latency histogram, from the first byte read to the
  response.
- `alexnet_serve_batch_size`: images per forward pass (dynamic batching).
- `alexnet_serve_queue_depth`: images accepted and not yet answered.
- `alexnet_serve_images_total{kind}`: images run through the model (predict, features).
- `alexnet_serve_connections`: open connections (at most --max-connections).
- `alexnet_serve_connections_refused_total`: connections answered 503 over that bound.
- `alexnet_serve_request_timeouts_total{phase}`: clients cut at --request-timeout-s while
  sending their request's `headers` or `body`.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's counters, histograms and gauges; `render()` -> (Prometheus text, type)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "alexnet_serve_requests",
            "HTTP requests answered",
            ["method", "path", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "alexnet_serve_request_seconds", "request latency", ["path"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "alexnet_serve_batch_size", "images per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "alexnet_serve_queue_depth", "images accepted and not yet answered", registry=r
        )
        self.images = Counter(
            "alexnet_serve_images", "images run through the model", ["kind"], registry=r
        )
        self.connections = Gauge("alexnet_serve_connections", "open connections", registry=r)
        self.refused = Counter(
            "alexnet_serve_connections_refused", "connections refused (503) over the bound",
            registry=r,
        )  # fmt: skip
        self.timeouts = Counter(
            "alexnet_serve_request_timeouts", "clients cut at the request deadline", ["phase"],
            registry=r,
        )  # fmt: skip

    def observe_request(self, method: str, path: str, code: int, seconds: float) -> None:
        self.requests.labels(method, path, str(code)).inc()
        self.latency.labels(path).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
