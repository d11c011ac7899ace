"""The audit trail: one record for every prediction request — accepted, refused or unauthenticated."""

from __future__ import annotations

import logging
import re
import time

from flask import Flask, g, request

from slimserve.audit.records import HashingInput, build_record, patient_ref

log = logging.getLogger(__name__)


def build_sink(config):
    """stdout by default; PostgreSQL behind a background writer when DATABASE_URL is set; None when off."""
    choice = (config.get("AUDIT_SINK") or "auto").strip().lower()
    if choice not in ("auto", "stdout", "postgres", "off"):
        raise ValueError("SLIMSERVE_AUDIT_SINK must be auto, stdout, postgres or off")
    from slimserve.audit.sinks import BackgroundWriter, StdoutSink

    if choice == "off":
        return None
    if choice == "postgres" or (choice == "auto" and config.get("DATABASE_URL")):
        if not config.get("DATABASE_URL"):
            raise ValueError("SLIMSERVE_AUDIT_SINK=postgres needs DATABASE_URL")
        try:
            from slimserve.audit.postgres import PostgresSink
        except ImportError:
            raise ValueError("DATABASE_URL needs psycopg: pip install -r requirements-auth.txt") from None

        return BackgroundWriter(PostgresSink(config["DATABASE_URL"]), capacity=config.get("AUDIT_QUEUE", 10_000))
    return StdoutSink()


PREDICTION_PATH = re.compile(r"^/(?:models/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})/)?(predict|invocations)$")


def loop_recorder(app: Flask, sink):
    """For the buffering worker: record a prediction request its event loop answered itself (shed with 503,
    timed out, malformed), which the app never sees. Called in the loop, so it only builds and queues."""
    registry = app.extensions["slimserve.registry"]

    def record(method: str, path: str, status: int, request_id: str) -> None:
        match = PREDICTION_PATH.match(path)
        if method != "POST" or match is None:
            return
        entry = registry.entries.get(match.group(1) or registry.default_name)
        route = f"/models/<name>/{match.group(2)}" if match.group(1) else path
        try:
            submit(sink, build_record(
                request_id=request_id, principal=None, model=entry.manifest.name if entry else None,
                model_version=entry.manifest.version if entry else None, route=route, status=status,
                latency_ms=None, input_sha256=None, patient=None))
        except Exception:  # never break the event loop over an audit record
            log.exception("audit record could not be written")

    return record


def submit(sink, record: dict) -> None:
    """Hand one record to the sink: queued by a background writer, written at once by stdout."""
    if hasattr(sink, "submit"):
        sink.submit(record)
    else:
        sink.write([record])


class HashInput:
    """WSGI middleware: wraps the request body so the audit can hash exactly what the app read."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        """Wrap `wsgi.input` for POSTs, then call the app."""
        if environ.get("REQUEST_METHOD") == "POST" and "wsgi.input" in environ:
            environ["wsgi.input"] = environ["slimserve.hashing_input"] = HashingInput(environ["wsgi.input"])
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask) -> None:
    """Record every prediction request once its response is ready."""
    from slimserve.views.context import prediction_target
    from slimserve.views.predict import PREDICTION_ENDPOINTS

    sink = build_sink(app.config)
    app.extensions["slimserve.audit"] = sink
    if sink is None:
        log.warning("the audit trail is off (SLIMSERVE_AUDIT_SINK=off)")
        return
    audit_key = app.config.get("AUDIT_KEY")
    if not audit_key:
        log.warning("SLIMSERVE_AUDIT_KEY is not set: X-Patient-ID cannot be pseudonymised and is not recorded")
    app.wsgi_app = HashInput(app.wsgi_app)
    app.extensions["slimserve.audit_loop"] = loop_recorder(app, sink)

    @app.after_request
    def _record(response):
        req = request._get_current_object()  # one context lookup, not one per use
        if req.method != "POST" or req.endpoint not in PREDICTION_ENDPOINTS:
            return response
        entry = prediction_target()
        hashing = req.environ.get("slimserve.hashing_input")
        started = g.get("started")  # set by the request-id hook, the first of all
        record = build_record(
            request_id=g.get("request_id", ""), principal=g.get("principal"),
            model=entry.manifest.name if entry else None, model_version=entry.manifest.version if entry else None,
            route=req.url_rule.rule if req.url_rule else None, status=response.status_code,
            latency_ms=(time.perf_counter() - started) * 1000 if started is not None else None,
            input_sha256=hashing.hexdigest() if hashing else None,
            patient=patient_ref(audit_key, req.environ.get("HTTP_X_PATIENT_ID")))  # Headers.get raises when absent
        try:
            submit(sink, record)
        except Exception:  # the audit must never fail a prediction; the log says it could not be written
            log.exception("audit record could not be written")
        return response
