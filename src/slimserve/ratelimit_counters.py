"""Fixed-window rate-limit counters: in this process, or in Redis (shared by instances) with a fallback here.

A fixed window is one counter per (client, bucket, limit) that starts at the first request and expires
after the limit's period: an increment and an expiry, in a dict or in one Redis script. This is the whole
of what we used of the `limits` library, whose import (asyncio, wrapt, deprecated: 25-50 ms of CPU) landed
right after the first answer, and whose in-process storage we had to subclass through a private hook.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any

from slimserve.ratelimit import Limit

PREFIX = "slimserve"
SWEEP_SECONDS = 10.0
BACKOFF_SECONDS = (1.0, 60.0)  # first and longest wait before a failed shared storage is tried again
log = logging.getLogger(__name__)


class MemoryCounters:
    """Counters in this process; expired ones are swept on the request path every SWEEP_SECONDS at most."""

    def __init__(self) -> None:
        self.counts: dict[str, list[float]] = {}  # key → [count, expires at (time.time())]
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + SWEEP_SECONDS

    def incr(self, key: str, seconds: int) -> tuple[int, float]:
        """Count one hit in `key`'s window (a new one if it has expired): the count, and when the window ends."""
        now = time.time()
        with self._lock:
            entry = self.counts.get(key)
            if entry is None or entry[1] <= now:
                entry = self.counts[key] = [0, now + seconds]
            entry[0] += 1
            if time.monotonic() >= self._next_sweep:  # frees the counters of clients that never came back
                self._next_sweep = time.monotonic() + SWEEP_SECONDS
                for stale in [k for k, (_, ends) in self.counts.items() if ends <= now]:
                    del self.counts[stale]
            return int(entry[0]), entry[1]


class RedisCounters:
    """Counters in Redis, shared by every instance: INCR and, for a new window, EXPIRE, in one atomic script."""

    SCRIPT = """
    local count = redis.call('INCR', KEYS[1])
    if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
    return {count, redis.call('PTTL', KEYS[1])}
    """

    def __init__(self, uri: str, options: dict[str, Any]) -> None:
        import redis  # only for a Redis storage

        # `limits` spelled a Unix socket redis+unix://; the client calls it unix://.
        self.client = redis.Redis.from_url(re.sub(r"^redis\+unix://", "unix://", uri), **options)
        self.script = self.client.register_script(self.SCRIPT)

    def incr(self, key: str, seconds: int) -> tuple[int, float]:
        """Count one hit in `key`'s window: the count, and when the window ends."""
        count, ttl_ms = self.script(keys=[key], args=[seconds])
        return int(count), time.time() + max(int(ttl_ms), 0) / 1000


class Counters:
    """The counters a limiter uses: `uri`'s storage; while a shared one fails (Redis down or unreachable), this
    process's, and the shared one is tried again after a growing back-off."""

    def __init__(self, uri: str, options: dict[str, Any] | None = None) -> None:
        self.memory = MemoryCounters()
        self.shared = None if uri.startswith("memory:") else RedisCounters(uri, options or {})
        self._retry_at, self._backoff = 0.0, BACKOFF_SECONDS[0]

    def hit(self, limit: Limit, key: str, bucket: str) -> int:
        """Count one request; 0 if it is within `limit`, else the seconds until its window resets (≥ 1)."""
        name = f"{PREFIX}/{key}/{bucket}/{limit.amount}/{limit.multiples}/{limit.period}"
        store = self.shared if self.shared is not None and time.monotonic() >= self._retry_at else self.memory
        try:
            count, ends = store.incr(name, limit.seconds)
        except Exception:  # any storage failure: a prediction must never become a 500
            if store is self.memory:
                raise
            log.warning("rate limits: the shared storage failed; counting in this process for %.0f s",
                        self._backoff, exc_info=True)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_SECONDS[1])
            return self.hit(limit, key, bucket)
        if store is self.shared:
            self._backoff = BACKOFF_SECONDS[0]  # it answered: the next failure waits the shortest time again
        return 0 if count <= limit.amount else min(limit.seconds, max(1, math.ceil(ends - time.time())))
