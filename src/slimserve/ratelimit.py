"""Per-client rate limits (Flask-Limiter): a budget per route group, keyed by principal or client IP.

A 429 here means *this client* sent too much. It is not overload protection: shedding load when the
server itself is busy is a 503 elsewhere, so no limit here is global.

An access-control layer that identifies callers sets `g.principal` (an id, or an object with `.id`) in a
`before_request` hook; limits are checked after every such hook, so the order of registration is free.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Flask, current_app, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from slimserve.config import SETTINGS
from slimserve.views.predict import INVOCATIONS_ENDPOINTS, PREDICT_ENDPOINTS

# Health checks are never limited: Render's probe (and any load balancer) must always get through.
EXEMPT = frozenset({"health.health", "health.ready", "health.ping", "models.model_ready"})
# Routes in one group share one budget per client, so alternating `/predict` and `/models/<n>/predict`
# does not double it. Every other route gets `RATE_LIMIT_DEFAULT`, counted per route.
GROUPS = {**dict.fromkeys(PREDICT_ENDPOINTS, "RATE_LIMIT_PREDICT"),
          **dict.fromkeys(INVOCATIONS_ENDPOINTS, "RATE_LIMIT_INVOCATIONS")}
_EXTENSION = "slimserve.limiter"
# A Redis that stops answering must not hold requests: fail fast, then the in-memory fallback takes over.
_REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


def init_app(app: Flask) -> None:
    """Believe X-Forwarded-For only from trusted proxies and, unless switched off, apply the limits."""
    cfg = app.config
    proxies = cfg["TRUSTED_PROXIES"]
    if proxies < 0:
        raise ValueError("SLIMSERVE_TRUSTED_PROXIES must be 0 or more")
    if proxies:
        # Each proxy appends the address it saw; only the last `proxies` entries are believed, so a
        # client cannot pick its own key by sending X-Forwarded-For.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)
    if not cfg["RATELIMIT_ENABLED"]:
        return
    # Imported here, not at module level: switched off, the server never pays for it (~35 ms CPU).
    from flask_limiter import Limiter

    limits = {key: _checked(cfg, key) for key in ("RATE_LIMIT_DEFAULT", *GROUPS.values())}
    storage = cfg["RATELIMIT_STORAGE_URI"]
    if storage.startswith(("redis://", "rediss://", "redis+unix://")):
        cfg.setdefault("RATELIMIT_STORAGE_OPTIONS", dict(_REDIS_OPTIONS))
    elif storage == "memory://":
        from slimserve.ratelimit_memory import SCHEME

        storage = f"{SCHEME}://"
    # Fixed windows: one counter per client and window, the cheapest check per request.
    limiter = Limiter(client_key, storage_uri=storage, strategy="fixed-window", key_prefix="slimserve",
                      headers_enabled=False,
                      # A storage that fails (Redis down) must never turn a prediction into a 500.
                      in_memory_fallback_enabled=True, swallow_errors=True)
    # Each view is wrapped, so its limit is checked when it is called: after every before_request hook,
    # whatever the order they were registered in, so `g.principal` is always set by then.
    for endpoint, view in list(app.view_functions.items()):
        if endpoint in EXEMPT:
            continue
        key = GROUPS.get(endpoint)
        if key is None:
            limit = limiter.limit(limits["RATE_LIMIT_DEFAULT"])
        else:
            limit = limiter.shared_limit(limits[key], scope=key.removeprefix("RATE_LIMIT_").lower())
        app.view_functions[endpoint] = limit(view)
    limiter.init_app(app)
    # Every limit here is checked by its view's wrapper. Flask-Limiter's own before_request pass would only
    # look for default, application and blueprint limits, which we do not use: ~50 µs CPU per request,
    # health probes included. (Pinned version: a rename fails the start-up and the tests, not silently.)
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    app.extensions[_EXTENSION] = limiter


def _checked(cfg: Any, key: str) -> str:
    """The limit string, parsed once now so a typo stops the start-up instead of failing every request."""
    from limits import parse_many

    value = cfg[key]
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{SETTINGS[key][0]} is not a rate limit like 60/minute: {value!r}") from None
    return value


def client_key() -> str:
    """Whom a request is counted against: the authenticated principal if any, else the client IP."""
    principal = g.get("principal")
    if principal is not None:
        return f"principal:{getattr(principal, 'id', principal)}"
    return f"ip:{request.remote_addr or 'unknown'}"


def breached_limit() -> tuple[str, int]:
    """For a 429: the breached limit as text and whole seconds until it resets (at least 1)."""
    limiter = current_app.extensions.get(_EXTENSION)
    current = limiter.current_limit if limiter is not None else None
    if current is None:
        return "", 1
    window = int(current.limit.get_expiry())
    try:
        reset_at = current.window.reset_time
    except Exception:  # the storage failed since the check: a whole window is a safe upper bound
        return str(current.limit), window
    return str(current.limit), min(window, max(1, math.ceil(reset_at - time.time())))
