"""Request metrics on `/metrics`: the hooks that count every request, and when Prometheus's objects are built.

prometheus_client and our metric objects (`slimserve.prometheus_metrics`) cost ~10-40 ms of CPU to import and
build: 0.1-0.4 s of cold start at 0.1 vCPU, all before the first prediction if done in `create_app`. So the
hooks record plain tuples until the first response has been sent; the objects are built then (or at the
first scrape, whichever comes first) and every recorded request is counted in them. Nothing is lost, and
`/metrics` always shows every request answered so far.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request

from slimserve.errors import Unauthorized

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_DEFAULT_MODEL_ENDPOINTS = frozenset({"predict.predict_default", "invocations.invocations_default"})
# (route, method, model, version, status, seconds, error code or None): one answered request
Observation = tuple[str, str, str, str, str, float, str | None]


class RequestMetrics:
    """What the request hooks count; the Prometheus objects behind it are built on first need."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._models = app.extensions["slimserve.registry"]  # built before the hooks: looked up once, not per request
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._pending: list[Observation] | None = []
        self._collectors: list[Callable[[], Any]] = []  # factories of extra collectors (drift)
        self.in_flight = 0
        self.prometheus: Any = None

    def add_collector(self, factory: Callable[[], Any]) -> None:
        """Register the collector `factory()` makes, now if the objects exist, else when they are built."""
        with self._lock:
            if self.prometheus is None:
                self._collectors.append(factory)
                return
        self.prometheus.registry.register(factory())

    def enter(self) -> None:
        """A request has started."""
        with self._lock:
            self.in_flight += 1

    def leave(self, observation: Observation | None) -> bool:
        """A request has ended (counted if answered); True if the objects still have to be built."""
        with self._lock:
            self.in_flight -= 1
            if observation is not None and self.prometheus is None:
                self._pending.append(observation)
                return True
        if observation is not None:
            self.prometheus.record(*observation)
        return False

    def build(self) -> Any:
        """Import prometheus_client, build the metric objects and count what was recorded (idempotent)."""
        if self.prometheus is not None:
            return self.prometheus
        with self._build_lock:  # one builder; requests ending meanwhile still record (they need only `_lock`)
            if self.prometheus is None:
                from slimserve.prometheus_metrics import AppMetrics
                from slimserve.views.context import git_commit

                with self._app.app_context():
                    built = AppMetrics(self._models, git_commit(),
                                       lambda: self.in_flight)
                with self._lock:  # the hand-over: nothing recorded before is missed, nothing after is pending
                    for factory in self._collectors:
                        built.registry.register(factory())
                    for observation in self._pending:
                        built.record(*observation)
                    self._pending, self._collectors = None, []
                    self.prometheus = built
                # What was just imported and built lives as long as the process: out of every later collection,
                # as the worker does after importing the app (scripts/deploy/gunicorn.conf.py, post_worker_init).
                gc.freeze()
        return self.prometheus

    def model_of(self, view_args: dict | None, endpoint: str | None) -> tuple[str, str]:
        """Model name and version for the labels: only a served model's name, else ""."""
        name = (view_args or {}).get("name")
        if name is None and endpoint in _DEFAULT_MODEL_ENDPOINTS:
            name = self._models.default_name
        entry = self._models.entries.get(name) if name else None
        return (name, entry.manifest.version) if entry else ("", "")


def init_app(app: Flask) -> RequestMetrics:
    """Count every request the app answers and serve `/metrics`."""
    metrics = RequestMetrics(app)
    app.extensions["slimserve.metrics"] = metrics

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()
        metrics.enter()

    @app.after_request
    def _count(response):
        started = g.pop("metrics_started", None)
        if started is None:
            return response
        req, status = request._get_current_object(), response.status_code  # one context lookup for all
        rule = req.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        model, version = metrics.model_of(req.view_args, req.endpoint)
        method = req.method if req.method in _METHODS else "OTHER"
        code = g.get("error_code") if status >= 400 else None
        observation = (route, method, model, version, str(status), time.perf_counter() - started, code)
        if metrics.leave(observation):
            response.call_on_close(metrics.build)  # after the body is sent: the answer does not wait for it
        return response

    @app.teardown_request
    def _unfinished(_exc) -> None:
        # A response that never reached after_request (an exception past the error handlers) still leaves.
        if g.pop("metrics_started", None) is not None:
            metrics.leave(None)

    token = app.config.get("METRICS_TOKEN")

    def scrape() -> Response:
        """The exposition; with SLIMSERVE_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
        import hmac

        if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                             f"Bearer {token}".encode()):
            raise Unauthorized("/metrics needs the bearer token set in SLIMSERVE_METRICS_TOKEN",
                               code="credentials_required", challenge='Bearer realm="slimserve-metrics"')
        return metrics.build().exposition()

    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])
    return metrics
