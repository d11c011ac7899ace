"""Where audit records go: JSON lines on stdout, or a sink (PostgreSQL) behind a bounded background writer.

The writer never blocks a request: `submit` only appends to a bounded queue. During a sink outage the
writer keeps the batch it holds and retries with backoff; if the queue fills meanwhile, or the process is
shutting down with the sink still away, records are written to stdout as JSON lines instead — retried or
diverted, never dropped.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable

import orjson

log = logging.getLogger(__name__)
BATCH = 200
SHUTDOWN_SECONDS = 5.0


class StdoutSink:
    """One JSON object per line on stdout, tagged so log readers can pick audit records out."""

    name = "stdout"

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, records: list[dict]) -> None:
        """Write the records, one line each."""
        data = b"".join(orjson.dumps({"type": "slimserve.audit", **r}) + b"\n" for r in records)
        with self.lock:
            stream = self.stream or sys.stdout
            stream.write(data.decode())
            stream.flush()


class BackgroundWriter:
    """A bounded queue drained by one daemon thread into `sink`, retrying failed batches until they land."""

    def __init__(self, sink, capacity: int = 10_000, fallback: StdoutSink | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.sink = sink
        self.fallback = fallback or StdoutSink()
        self.queue: queue.Queue[dict] = queue.Queue(maxsize=capacity)
        self.sleep = sleep
        self.pending: list[dict] = []  # the batch in the writer's hands (being written or retried)
        self.failing = False
        self.diverted = 0
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()

    def submit(self, record: dict) -> None:
        """Queue one record without waiting; a full queue diverts it to stdout rather than blocking."""
        self._ensure_started()
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.diverted += 1
            self.fallback.write([record])

    def _ensure_started(self) -> None:
        # The thread starts with the first record, in the serving process (after gunicorn forks).
        if self.thread is None:
            with self.start_lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="slimserve-audit", daemon=True)
                    self.thread.start()
                    atexit.register(self.close)

    def _run(self) -> None:
        delay = 0.2
        while not (self.stopping.is_set() and self.queue.empty() and not self.pending):
            if not self.pending:
                try:
                    self.pending = [self.queue.get(timeout=0.2)]
                except queue.Empty:
                    continue
                while len(self.pending) < BATCH:
                    try:
                        self.pending.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
            try:
                self.sink.write(self.pending)
            except Exception as exc:  # any sink failure: keep the batch, retry later
                if not self.failing:
                    log.warning("audit sink %s unavailable (%s); %d records held and retried",
                                self.sink.name, type(exc).__name__, len(self.pending) + self.queue.qsize())
                self.failing = True
                if self.stopping.is_set():
                    return
                self.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.failing:
                log.warning("audit sink %s is back; writing held records", self.sink.name)
            self.failing, delay, self.pending = False, 0.2, []

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record reached the sink (tests, shutdown); True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.empty() and not self.pending:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """On exit: give the sink a few seconds, then write whatever is still held to stdout."""
        if self.thread is None or self.stopping.is_set():
            return
        self.flush(SHUTDOWN_SECONDS)
        self.stopping.set()
        self.thread.join(SHUTDOWN_SECONDS)
        left, self.pending = list(self.pending), []  # a write still hanging may land too: record_id marks it
        while True:
            try:
                left.append(self.queue.get_nowait())
            except queue.Empty:
                break
        if left:
            log.warning("audit sink %s still unavailable at exit: %d records written to stdout instead",
                        self.sink.name, len(left))
            self.fallback.write(left)
