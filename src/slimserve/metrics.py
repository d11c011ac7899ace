"""Prometheus metrics on `/metrics`: requests, latency, in-flight, refusals, model load time, build info.

Label values never come from the client: the route is the matched URL rule (or `unmatched`), the model
and version come from the registry (a name that is not served becomes ""), the status is the status we
sent and the refusal code is one of our own error codes. Each app gets its own CollectorRegistry, so
tests can build many apps in one process.
"""

from __future__ import annotations

import hmac
import time

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from slimserve import __version__
from slimserve.errors import Unauthorized
from slimserve.registry import ModelRegistry

# Server time from the first to the last Flask hook: 1 ms is a metadata route, 50-500 ms an image at 0.1 vCPU.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"


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

    def __init__(self, registry: ModelRegistry, commit: str | None) -> None:
        self.models = registry
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["route", "method", "model", "version", "status"]
        self.requests = Counter("slimserve_requests", "HTTP requests answered by the app", labels,
                                registry=self.registry)
        self.latency = Histogram("slimserve_request_duration_seconds", "Server time per request in the app",
                                 ["route", "model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("slimserve_requests_in_flight", "Requests being handled by the app",
                               registry=self.registry)
        self.refusals = Counter("slimserve_refusals", "Requests refused with an error, by error code",
                                ["route", "model", "code", "status"], registry=self.registry)
        build = Gauge("slimserve_build_info", "Always 1; the labels say what is running",
                      ["version", "commit"], registry=self.registry)
        build.labels(__version__, commit or "unknown").set(1)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU seconds, open fds
        self.registry.register(ModelLoadCollector(registry))

    def model_of(self, view_args: dict | None, endpoint: str | None) -> tuple[str, str]:
        """Model name and version for the labels: only a served model's name, else ""."""
        name = (view_args or {}).get("name")
        if name is None and endpoint in _DEFAULT_MODEL_ENDPOINTS:
            name = self.models.default_name
        entry = self.models.entries.get(name) if name else None
        return (name, entry.manifest.version) if entry else ("", "")

    def exposition(self) -> Response:
        """The text exposition of every metric."""
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_DEFAULT_MODEL_ENDPOINTS = frozenset({"predict.predict_default", "invocations.invocations_default"})


def init_app(app: Flask) -> AppMetrics:
    """Count every request the app answers and serve `/metrics`."""
    from slimserve.views.context import git_commit

    disable_created_metrics()  # the *_created series double the exposition and nobody here reads them
    with app.app_context():
        metrics = AppMetrics(app.extensions["slimserve.registry"], git_commit())
    app.extensions["slimserve.metrics"] = metrics

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()
        metrics.in_flight.inc()

    @app.after_request
    def _count(response):
        started = g.pop("metrics_started", None)
        if started is None:
            return response
        metrics.in_flight.dec()
        route = request.url_rule.rule if request.url_rule else UNMATCHED
        model, version = metrics.model_of(request.view_args, request.endpoint)
        status = str(response.status_code)
        method = request.method if request.method in _METHODS else "OTHER"
        metrics.requests.labels(route, method, model, version, status).inc()
        metrics.latency.labels(route, model).observe(time.perf_counter() - started)
        code = g.get("error_code")
        if code and response.status_code >= 400:
            metrics.refusals.labels(route, model, code, status).inc()
        return response

    @app.teardown_request
    def _unfinished(_exc) -> None:
        # A response that never reached after_request (an exception past the error handlers) still leaves.
        if g.pop("metrics_started", None) is not None:
            metrics.in_flight.dec()

    token = app.config.get("METRICS_TOKEN")

    def scrape() -> Response:
        """The exposition; with SLIMSERVE_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
        if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                             f"Bearer {token}".encode()):
            raise Unauthorized("/metrics needs the bearer token set in SLIMSERVE_METRICS_TOKEN",
                               code="credentials_required", challenge='Bearer realm="slimserve-metrics"')
        return metrics.exposition()

    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])
    return metrics
