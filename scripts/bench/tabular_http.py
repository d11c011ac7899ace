"""HTTP side of the tabular benchmark: gunicorn with a µs access log, timed request series, log parsing."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

from scripts.bench import server as srv
from scripts.bench.cgroups import Sandbox
from scripts.bench.client import Upload, timed_posts
from scripts.bench.measure import percentile

# The deploy config's access log format with %(D)s (µs) instead of %(M)s (whole ms): gunicorn's gthread worker
# times each request from its parsed headers to the last response byte written, body read and Flask included.
ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s %(B)s %(D)sus rid=%({x-request-id}o)s'
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) \S+ (?P<us>\d+)us')
LOG_SETTLE_SECONDS = 2.0  # gunicorn writes the access line just after the response, so allow it to land


def summarize(values: list[float], digits: int = 3) -> dict[str, float | int]:
    """Count, p50, p95, max and mean, rounded to `digits` (sub-millisecond figures need more than 0.1 ms)."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), digits),
            "p95": round(percentile(values, 95), digits), "max": round(max(values), digits),
            "mean": round(sum(values) / len(values), digits)}


def access_times_ms(lines: list[str], path: str, status: int = 200) -> list[float]:
    """Request times (ms) of the access-log lines for `path` with `status`, in log order."""
    times = []
    for line in lines:
        match = _ACCESS_LINE.search(line)
        if match and match["path"].split("?")[0] == path and int(match["status"]) == status:
            times.append(int(match["us"]) / 1000)
    return times


def start_slimserve(repo: Path, model_path: Path, repository: str, port: int, sandbox: Sandbox,
                    log_path: Path) -> srv.Server:
    """Spawn the deploy gunicorn (µs access log added); the child joins the sandbox before exec."""
    extra = srv.server_env("onnx", model_path, port, repository)
    argv = [*srv.server_argv(port), "--access-logformat", ACCESS_FORMAT]
    command = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in extra.items()), *map(shlex.quote, argv)])
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=repo, env={**os.environ, **extra}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=sandbox.join if sandbox.active else None)
    return srv.Server(proc, port, started, log_path, command)


class LogCursor:
    """Reads the lines a server log gained since the cursor was made."""

    def __init__(self, path: Path | None) -> None:
        """Remember the current end of the log (None: no log to read)."""
        self.path = path
        self.offset = path.stat().st_size if path and path.exists() else 0

    def lines(self) -> list[str]:
        """Lines appended since the cursor was made."""
        if self.path is None:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode(errors="replace").splitlines()


def series(port: int, path: str, uploads: list[Upload], count: int, deadline: float, pause: float = 0.0,
           log: Path | None = None) -> dict:
    """`count` sequential POSTs (fresh connection each): client round trip, inference_ms and gunicorn time."""
    cursor = LogCursor(log)
    client_ms, inference_ms, errors = timed_posts(port, path, uploads, count, deadline, pause)
    out = {"client_round_trip_ms": summarize(client_ms), "errors": errors}
    if inference_ms:
        out["model_inference_ms"] = summarize(inference_ms)
    if log is not None:
        worker_ms = access_times_ms(cursor.lines(), path)
        settle = time.monotonic() + LOG_SETTLE_SECONDS
        while len(worker_ms) < len(client_ms) and time.monotonic() < settle:
            time.sleep(0.05)
            worker_ms = access_times_ms(cursor.lines(), path)
        out["gunicorn_request_ms"] = summarize(worker_ms)
    return out
