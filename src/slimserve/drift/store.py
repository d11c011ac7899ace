"""Where the window's bin counts survive a restart: PostgreSQL when DATABASE_URL is set, else nowhere.

Only counts are written (one JSON document per model version), never an input. Writes happen in a
background thread every few seconds when counts changed, and once more at exit, so no request waits on
the database.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Callable

from slimserve.drift.monitor import DriftMonitor

log = logging.getLogger(__name__)
TABLE = "slimserve_drift"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    model text NOT NULL,
    model_version text NOT NULL,
    state jsonb NOT NULL,
    updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, model_version)
)
"""
UPSERT = (f"INSERT INTO {TABLE} (model, model_version, state) VALUES (%s, %s, %s) "
          "ON CONFLICT (model, model_version) DO UPDATE SET state = EXCLUDED.state, updated = now()")


class PostgresDriftStore:
    """Loads and saves window counts in the audit trail's database (psycopg 3, imported lazily)."""

    name = "postgresql"

    def __init__(self, url: str, connect_timeout: int = 3) -> None:
        self.url = url
        self.connect_timeout = connect_timeout

    def _connect(self):
        import psycopg

        conn = psycopg.connect(self.url, connect_timeout=self.connect_timeout, autocommit=True)
        conn.execute(SCHEMA)
        return conn

    def load(self, model: str, version: str) -> dict | None:
        """The saved counts of one model version, if any."""
        with self._connect() as conn:
            row = conn.execute(f"SELECT state FROM {TABLE} WHERE model = %s AND model_version = %s",
                               (model, version)).fetchone()
        return row[0] if row else None

    def save(self, states: dict[tuple[str, str], dict]) -> None:
        """Upsert the counts of several model versions in one connection."""
        with self._connect() as conn, conn.cursor() as cur:
            cur.executemany(UPSERT, [(m, v, json.dumps(s)) for (m, v), s in states.items()])


class Flusher:
    """Saves dirty monitors every `seconds` in a daemon thread, and at interpreter exit."""

    def __init__(self, store: PostgresDriftStore, monitors: Callable[[], dict[tuple[str, str], DriftMonitor]],
                 seconds: float) -> None:
        self.store = store
        self.monitors = monitors
        self.seconds = seconds
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def flush(self) -> None:
        """Save every monitor whose counts changed since the last save."""
        states = {key: m.state() for key, m in self.monitors().items() if m.dirty}
        if not states:
            return
        try:
            self.store.save(states)
        except Exception as exc:  # the database being down must not disturb serving; retried next round
            for key in states:
                self.monitors()[key].dirty = True
            log.warning("drift counts could not be saved: %s", exc.__class__.__name__)

    def start(self) -> None:
        """Start the background thread (once)."""
        if self.thread is not None:
            return

        def run() -> None:
            while not self.stopped.wait(self.seconds):
                self.flush()

        self.thread = threading.Thread(target=run, name="slimserve-drift-flush", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the thread and save what is left."""
        self.stopped.set()
        self.flush()
