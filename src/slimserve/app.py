"""The application factory: configuration, then each subsystem's `init_app`."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, g, request
from werkzeug.routing import Rule

from slimserve import config as settings
from slimserve import jsonio, ratelimit
from slimserve.imaging import ImageLimits
from slimserve.observed import observe_registry
from slimserve.registry import build_registry
from slimserve.runtimes import RuntimeOptions
from slimserve.service import PredictionService

# Request ids from clients are kept only when they are short and plain, so logs cannot be forged with them.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class LazyBuilderRule(Rule):
    """A werkzeug Rule whose URL builders are generated at their first use instead of at registration.

    werkzeug generates and compiles two builders (Python code, for `url_for`) per route when it is added:
    ~13 ms of CPU for our ~24 routes, 0.13 s of cold start at 0.1 vCPU, though only the HTML pages build
    URLs, long after start-up. The rule's matching regex is still compiled at registration.
    """

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        compiled: list[Callable[..., tuple[str, str]]] = []

        def build(rule: Rule, **values: Any) -> tuple[str, str]:
            if not compiled:  # two threads may both compile; the builders are the same
                compiled.append(Rule._compile_builder(rule, append_unknown))
            return compiled[0](rule, **values)

        return build


class SlimFlask(Flask):
    """Flask that asks once per view or hook, not on every request, whether it is a coroutine function.

    Flask's `ensure_sync` runs `inspect.iscoroutinefunction` on each of the ~9 hooks and the view of every
    request; the answer never changes for a function, so it is remembered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """`func`, or Flask's sync wrapper for a coroutine function; decided at its first call."""
        try:
            return self._synced[func]
        except KeyError:
            synced = self._synced[func] = super().ensure_sync(func)
            return synced
        except TypeError:  # an unhashable callable: nothing to remember it by
            return super().ensure_sync(func)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Create the app: defaults, then environment, then `config` overrides; models start loading."""
    app = SlimFlask("slimserve", static_folder=None)
    app.url_rule_class = LazyBuilderRule  # url_for's builders compiled at first use, not for every route now
    app.config.from_mapping(settings.from_env())
    if config:
        app.config.update(config)
    # Flask/werkzeug refuse larger bodies with 413 before reading them.
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_UPLOAD_BYTES"]
    jsonio.init_app(app)
    init_request_id(app)
    init_models(app)
    from slimserve import views
    from slimserve.views.health import probes

    views.init_app(app)
    init_security(app)
    init_monitoring(app)
    app.extensions["slimserve.probes"] = probes(app.extensions["slimserve.registry"])
    ratelimit.init_app(app)  # after the views: the limits are attached to their endpoints
    return app


def init_security(app: Flask) -> None:
    """Security headers and the audit trail always; access control when configured (else a loud warning)."""
    from slimserve import audit, headers

    headers.init_app(app)
    audit.init_app(app)  # registered before auth, so its timer starts before a refusal
    if settings.auth_enabled(app.config):
        from slimserve import auth

        auth.init_app(app)
    else:
        logging.getLogger(__name__).warning(
            "ACCESS CONTROL IS OFF: every model, clinical ones included, is open to anyone who can reach this "
            "port. Set SLIMSERVE_API_KEYS or SLIMSERVE_OIDC_ISSUER (or SLIMSERVE_AUTH=required) before exposing it.")


def init_monitoring(app: Flask) -> None:
    """Prometheus metrics, drift monitoring and the web pages (each in its own package)."""
    from slimserve import drift, metrics, web

    if app.config["METRICS"]:
        metrics.init_app(app)
    drift.init_app(app)
    web.init_app(app)


def init_models(app: Flask) -> None:
    """Build the registry and the prediction service, and start loading the models."""
    cfg = app.config
    options = RuntimeOptions(intra_op_threads=cfg["INTRA_OP_THREADS"])
    registry = build_registry(cfg["MODEL_PATH"], cfg["RUNTIME"], default=cfg["DEFAULT_MODEL"],
                              options=options, auto_compile=cfg["AUTO_COMPILE"], runtimes=cfg.get("RUNTIMES"),
                              repository=cfg.get("MODEL_REPOSITORY"), versions=pairs(cfg["MODEL_VERSIONS"]))
    limits = ImageLimits(max_pixels=cfg["MAX_IMAGE_PIXELS"], min_side=cfg["MIN_IMAGE_SIDE"],
                         max_decode_bytes=cfg["MAX_DECODE_BYTES"], decode_wait_seconds=cfg["DECODE_WAIT_SECONDS"])
    app.extensions["slimserve.registry"] = registry
    observe_registry(registry)  # load times and served predictions (metrics, drift) without a request hook
    app.extensions["slimserve.service"] = PredictionService(registry, limits, cfg["READY_WAIT_SECONDS"],
                                                            cfg["MAX_ROWS"], cfg["DEFAULT_TABLE_MODEL"])
    body_limits = {}
    for name, entry in registry.entries.items():
        if entry.is_tabular:
            from slimserve.payloads import body_limit  # the table parsers: imported only when tables are served

            body_limits[name] = cfg["MAX_TABLE_BYTES"] or body_limit(entry.manifest.features, cfg["MAX_ROWS"])
        else:
            body_limits[name] = cfg["MAX_UPLOAD_BYTES"]
    app.extensions["slimserve.body_limits"] = body_limits
    registry.load_all(background=cfg["LOAD_ASYNC"])
    logging.getLogger(__name__).info("serving %s with the %s runtime", ", ".join(registry.entries),
                                     cfg["RUNTIME"])


def pairs(text: str) -> dict[str, str]:
    """`"a=1.0.0, b=2.0.0"` → {"a": "1.0.0", "b": "2.0.0"}; a malformed item stops the start, naming it."""
    result = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"SLIMSERVE_MODEL_VERSIONS: {item!r} is not name=version")
        result[name.strip()] = value.strip()
    return result


def init_request_id(app: Flask) -> None:
    """Give every request an id (the client's X-Request-ID if sane) and a start time; `headers` echoes the id."""

    @app.before_request
    def _assign() -> None:
        # From the WSGI environ: werkzeug's Headers.get raises and catches an exception for a missing header.
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()  # as random as uuid4
        g.started = time.perf_counter()  # the audit's latency starts here
