"""Per-client rate limits: a fixed-window budget per route group, keyed by principal or client IP.

A 429 here means *this client* sent too much. It is not overload protection: shedding load when the
server itself is busy is a 503 elsewhere, so no limit here is global.

An access-control layer that identifies callers sets `g.principal` (an id, or an object with `.id`) in a
`before_request` hook; limits are checked when the view is called, after every such hook, so the order of
registration is free.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from flask import Flask, after_this_request, g, request

from slimserve.config import SETTINGS
from slimserve.errors import TooManyRequests
from slimserve.views.predict import INVOCATIONS_ENDPOINTS, PREDICT_ENDPOINTS

# Health checks are never limited: Render's probe (and any load balancer) must always get through.
EXEMPT = frozenset({"health.health", "health.ready", "health.ping", "models.model_ready"})
# Routes in one group share one budget per client, so alternating `/predict` and `/models/<n>/predict`
# does not double it. Every other route gets `RATE_LIMIT_DEFAULT`, counted per route.
GROUPS = {**dict.fromkeys(PREDICT_ENDPOINTS, "RATE_LIMIT_PREDICT"),
          **dict.fromkeys(INVOCATIONS_ENDPOINTS, "RATE_LIMIT_INVOCATIONS")}
log = logging.getLogger(__name__)
_DEFERRED = "slimserve.limiter_deferred"
# The `limits` notation (which Flask-Limiter and MLflow's users know): "60/minute", "10 per second; 100/2 hours".
PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400, "month": 2_592_000, "year": 31_104_000}
_ONE = r"\s*([0-9]+)\s*(?:/|\s*per\s*)\s*([0-9]+)?\s*(second|minute|hour|day|month|year)s?\s*"
_ONE_LIMIT = re.compile(_ONE, re.IGNORECASE)
_LIMITS = re.compile(rf"^{_ONE}(?:[,;|]{_ONE})*$", re.IGNORECASE)
# The storages we have counters for (ratelimit_counters); anything else would fail on first use, so it fails now.
STORAGE_SCHEMES = frozenset({"memory", "redis", "rediss", "redis+unix"})
# A Redis that stops answering must not hold requests: fail fast, then the in-memory fallback takes over.
_REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


class Limit(NamedTuple):
    """`amount` requests per `multiples` × `period`."""

    amount: int
    multiples: int
    period: str

    @property
    def seconds(self) -> int:
        """The window's length."""
        return self.multiples * PERIODS[self.period]

    def __str__(self) -> str:
        return f"{self.amount} per {self.multiples} {self.period}"


def parse_limits(text: str) -> list[Limit]:
    """`"5/second;100/hour"` → its limits; ValueError if the text is not in the notation."""
    if not _LIMITS.match(text):
        raise ValueError(f"not a rate limit like 60/minute: {text!r}")
    found = (_ONE_LIMIT.fullmatch(part) for part in re.split(r"[,;|]", text))
    return [Limit(int(m[1]), int(m[2] or 1), m[3].lower()) for m in found if m]


def init_app(app: Flask) -> None:
    """Believe X-Forwarded-For only from trusted proxies and, unless switched off, apply the limits."""
    cfg = app.config
    proxies = cfg["TRUSTED_PROXIES"]
    if proxies < 0:
        raise ValueError("SLIMSERVE_TRUSTED_PROXIES must be 0 or more")
    if proxies:
        # Each proxy appends the address it saw; only the last `proxies` entries are believed, so a
        # client cannot pick its own key by sending X-Forwarded-For.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)
    if not cfg["RATELIMIT_ENABLED"]:
        return
    limits = {key: _checked(cfg, key) for key in ("RATE_LIMIT_DEFAULT", *GROUPS.values())}
    storage = cfg["RATELIMIT_STORAGE_URI"]
    if urlsplit(storage).scheme not in STORAGE_SCHEMES:
        raise ValueError(f"{SETTINGS['RATELIMIT_STORAGE_URI'][0]} must start with one of "
                         f"{', '.join(s + '://' for s in sorted(STORAGE_SCHEMES))}")
    deferred = DeferredLimiter(app, storage)
    for endpoint, view in list(app.view_functions.items()):
        if endpoint not in EXEMPT:
            key = GROUPS.get(endpoint)
            # Every limit is shared under an explicit scope (the group, else the endpoint itself), so the
            # buckets a replayed hit goes to are ours to name, not derived from the view's module path.
            scope = key.removeprefix("RATE_LIMIT_").lower() if key else endpoint
            app.view_functions[endpoint] = deferred.wrap(endpoint, view, limits[key or "RATE_LIMIT_DEFAULT"], scope)
    app.extensions[_DEFERRED] = deferred


class DeferredLimiter:
    """Each limited view counts its request before it runs; the counters load after the first one is answered.

    A Redis storage means importing the Redis client (~25 ms of CPU, ~0.25 s at 0.1 vCPU), all of it before
    the first prediction if done at start-up. So the first limited request of a process is served unchecked
    and recorded; the counters load after its response is sent (or at the next limited request, whichever
    comes first) and count the recorded hit in the same bucket. A budget of at least one request per window
    is therefore unchanged; only a breach by the very first request of a process is noticed one request late.
    The check itself is a dict increment (a Redis script with Redis): ~5 µs. Flask-Limiter's request-side
    machinery around the same counting cost 0.3–0.5 ms of CPU per prediction, which at 0.1 vCPU is 3–5 ms.
    """

    def __init__(self, app: Flask, storage: str) -> None:
        self._app = app
        self._storage = storage
        self._lock = threading.Lock()
        self._rules: dict[str, tuple[list[Limit], str]] = {}  # endpoint → (limits, bucket)
        self._pending: list[tuple[str, str]] | None = []  # (endpoint, client key) served before loading
        self.counters: Any = None

    def wrap(self, endpoint: str, view: Callable, limits: list[Limit], scope: str) -> Callable:
        """The view, checked against `limits` in bucket `scope` (counted later for the very first request)."""
        self._rules[endpoint] = (limits, scope)

        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            if self.counters is not None or not self._defer(endpoint):
                self.check(endpoint)
            return view(*args, **kwargs)

        return limited

    def check(self, endpoint: str) -> None:
        """Count this request against each limit of `endpoint`; TooManyRequests at the first one it exceeds."""
        limits, scope = self._rules[endpoint]
        key = client_key()
        for limit in limits:
            if retry_after := self.counters.hit(limit, key, scope):
                raise TooManyRequests(f"rate limit of {limit} exceeded: retry after the number of seconds in "
                                      "Retry-After", retry_after=retry_after)

    def _defer(self, endpoint: str) -> bool:
        """True for the first limited request (served now, counted once loaded); else load, then False."""
        with self._lock:
            if self.counters is None and self._pending == []:
                self._pending.append((endpoint, client_key()))
                after_this_request(self._load_after)
                return True
        self.load()
        return False

    def _load_after(self, response: Any) -> Any:
        response.call_on_close(self.load)  # after the body is sent: the first answer does not wait for it
        return response

    def load(self) -> None:
        """Build the counters (a Redis client for a Redis storage), then count the hits served before."""
        with self._lock:
            if self.counters is not None:
                return
            from slimserve.ratelimit_counters import Counters

            counters = Counters(self._storage, _REDIS_OPTIONS)
            for endpoint, key in self._pending or ():
                limits, scope = self._rules[endpoint]
                for limit in limits:
                    counters.hit(limit, key, scope)
            self._pending = None
            self.counters = counters


def _checked(cfg: Any, key: str) -> list[Limit]:
    """The limits of setting `key`, parsed now so a typo stops the start-up instead of failing every request."""
    try:
        return parse_limits(cfg[key])
    except ValueError:
        raise ValueError(f"{SETTINGS[key][0]} is not a rate limit like 60/minute: {cfg[key]!r}") from None


def client_key() -> str:
    """Whom a request is counted against: the authenticated principal if any, else the client IP."""
    principal = g.get("principal")
    if principal is not None:
        return f"principal:{getattr(principal, 'id', principal)}"
    return f"ip:{request.remote_addr or 'unknown'}"
