"""The Prometheus objects behind `/metrics` (built by `slimserve.metrics` on first need).

Label values never come from the client: the route is the matched URL rule (or `unmatched`), the model
and version come from the registry (a name that is not served becomes ""), the status is the status we
sent and the refusal code is one of our own error codes. Each app gets its own CollectorRegistry, so
tests can build many apps in one process.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from slimserve import __version__
from slimserve.registry import ModelRegistry

# Server time from the first to the last Flask hook: 1 ms is a metadata route, 50-500 ms an image at 0.1 vCPU.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ModelLoadCollector:
    """Load time and readiness of every model, read from the registry at scrape time."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def collect(self):
        """Yield the model gauges."""
        seconds = GaugeMetricFamily("slimserve_model_load_seconds", "Time the runtime took to load the model",
                                    labels=["model", "version"])
        ready = GaugeMetricFamily("slimserve_model_ready", "1 when the model is loaded and warmed up",
                                  labels=["model", "version"])
        for name, entry in self.registry.entries.items():
            labels = [name, entry.manifest.version]
            load_seconds = getattr(entry.runtime, "load_seconds", None)
            if load_seconds is not None:
                seconds.add_metric(labels, load_seconds)
            ready.add_metric(labels, 1.0 if entry.ready else 0.0)
        yield seconds
        yield ready


class AppMetrics:
    """The metric objects of one app."""

    def __init__(self, registry: ModelRegistry, commit: str | None, in_flight: Callable[[], int]) -> None:
        disable_created_metrics()  # the *_created series double the exposition and nobody here reads them
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["route", "method", "model", "version", "status"]
        self.requests = Counter("slimserve_requests", "HTTP requests answered by the app", labels,
                                registry=self.registry)
        self.latency = Histogram("slimserve_request_duration_seconds", "Server time per request in the app",
                                 ["route", "model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        Gauge("slimserve_requests_in_flight", "Requests being handled by the app",
              registry=self.registry).set_function(in_flight)
        self.refusals = Counter("slimserve_refusals", "Requests refused with an error, by error code",
                                ["route", "model", "code", "status"], registry=self.registry)
        build = Gauge("slimserve_build_info", "Always 1; the labels say what is running",
                      ["version", "commit"], registry=self.registry)
        build.labels(__version__, commit or "unknown").set(1)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU seconds, open fds
        self.registry.register(ModelLoadCollector(registry))
        # Label children by label values: `labels()` validates and locks on every call, a dict lookup does not.
        self._requests: dict[tuple[str, ...], Counter] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}

    def record(self, route: str, method: str, model: str, version: str, status: str, seconds: float,
               code: str | None) -> None:
        """Count one answered request: by route, method, model, version and status; its time; a refusal."""
        key = (route, method, model, version, status)
        counter = self._requests.get(key) or self._requests.setdefault(key, self.requests.labels(*key))
        counter.inc()
        timer = self._latency.get((route, model)) or self._latency.setdefault(
            (route, model), self.latency.labels(route, model))
        timer.observe(seconds)
        if code:
            self.refusals.labels(route, model, code, status).inc()

    def exposition(self) -> Response:
        """The text exposition of every metric."""
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST})
