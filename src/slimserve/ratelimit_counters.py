"""Fixed-window counters (the `limits` library): in the process, or in Redis with a fallback to the process.

Imported only once rate limits are on and the first limited request has been answered (see `ratelimit`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from limits import RateLimitItem
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

SWEEP_SECONDS = 10.0
PREFIX = "slimserve"
BACKOFF_SECONDS = (1.0, 60.0)  # first and longest wait before a failed shared storage is tried again
log = logging.getLogger(__name__)


class SweptMemoryStorage(MemoryStorage):
    """limits' `memory://` storage whose expired counters are swept on the request path, not by a timer.

    The parent starts a new 10 ms `threading.Timer` on every hit that finds the last one finished, i.e. on
    every request when they are more than 10 ms apart: ~0.3 ms CPU each on our VMs, more than the check
    itself, and at 0.1 vCPU ten times that in latency. Expired counters are already ignored when read;
    the sweep only frees the memory of clients that never come back, every `SWEEP_SECONDS` at most.
    """

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.timer.cancel()  # the parent starts one at construction
        self._next_sweep = time.monotonic() + SWEEP_SECONDS
        self._sweeping = threading.Lock()

    # limits 5.8 calls this (name-mangled) hook on every hit; the pinned version is tested for it.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep and self._sweeping.acquire(blocking=False):
            try:
                self._next_sweep = now + SWEEP_SECONDS
                self._MemoryStorage__expire_events()
            finally:
                self._sweeping.release()


class Counters:
    """One count per (client, bucket, limit) and window, in `uri`'s storage; while a shared storage fails
    (Redis down or unreachable), in this process, and the shared one is tried again with a growing back-off."""

    def __init__(self, uri: str, options: dict[str, Any] | None = None) -> None:
        self.memory = FixedWindowRateLimiter(SweptMemoryStorage())
        shared = None if uri.startswith("memory:") else storage_from_string(uri, **(options or {}))
        self.shared = None if shared is None else FixedWindowRateLimiter(shared)
        self._retry_at, self._backoff = 0.0, BACKOFF_SECONDS[0]

    def hit(self, item: RateLimitItem, key: str, scope: str) -> int:
        """Count one request; 0 if it is within `item`, else the seconds until its window resets (≥ 1)."""
        strategy = self.shared if self.shared is not None and time.monotonic() >= self._retry_at else self.memory
        try:
            allowed = strategy.hit(item, PREFIX, key, scope)
            if strategy is self.shared:
                self._backoff = BACKOFF_SECONDS[0]  # it answered: the next failure waits the shortest time again
            if allowed:
                return 0
            reset_at = strategy.get_window_stats(item, PREFIX, key, scope).reset_time
        except Exception:  # any storage failure: a prediction must never become a 500
            if strategy is self.memory:
                raise
            log.warning("rate limits: the shared storage failed; counting in this process for %.0f s",
                        self._backoff, exc_info=True)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_SECONDS[1])
            return self.hit(item, key, scope)
        return min(item.get_expiry(), max(1, math.ceil(reset_at - time.time())))
