"""A server in a sandbox, started cold: the real gunicorn (scripts/deploy/gunicorn.conf.py) or another command."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scripts.bench.client import HOST, Job, Upload, background, exchange, statuses
from scripts.bench.sandbox import MB, UNLIMITED, Sandbox, in_mb, parse_flat_keyed, sampling, stats
from slimserve import paths

REPO, MODELS, BUNDLED = paths.REPO_ROOT, paths.BUNDLED_MODELS, paths.BUNDLED_MODEL
SHARED_DATA = paths.shared_data()
SAMPLES = SHARED_DATA / "pneumonia" / "samples"
# Rate limiting stays on, so its cost is part of every measurement, with budgets no benchmark reaches.
UNREACHED_RATE_LIMITS = {f"SLIMSERVE_RATE_LIMIT_{g}": "1000000/minute" for g in ("PREDICT", "INVOCATIONS", "DEFAULT")}
# The deploy config's access log with %(D)s (µs) for %(M)s: gunicorn's own time per request, from the parsed
# headers to the last byte written (body read, Flask, validation, ONNX Runtime, serialization).
ACCESS_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(D)sus rid=%({x-request-id}o)s'
_ACCESS = re.compile(r'"[A-Z]+ (?P<path>\S+)[^"]*" (?P<status>\d{3}) \S+ (?:(?P<us>\d+)us)?')
NOTABLE = ("ERROR", "WARNING", "CRITICAL", "Traceback", "Killed", "signal", "Booting worker", "TIMEOUT", "memory")


@functools.cache
def byte_compile() -> None:
    """Compile the app's sources to .pyc once, as the image build does: without it, with PYTHONDONTWRITEBYTECODE
    set, every cold start would compile slimserve from source (~25 ms CPU, ~0.25 s at 0.1 vCPU) and no image would.
    Once per benchmark process: the sources do not change while it runs."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "src", "scripts/deploy", "scripts/bench/bare_app.py"],
                   cwd=REPO, check=True, timeout=300)


def drop_cache(*extra: Path) -> int:
    """posix_fadvise(DONTNEED) what a cold start reads (venv, stdlib, source, models, `extra`): files advised."""
    count, roots = 0, [Path(sys.prefix) / "lib", Path(sysconfig.get_paths()["stdlib"]), REPO / "src", REPO / "scripts",
                       MODELS, *extra]
    for folder, _, names in (walk for root in dict.fromkeys(roots) for walk in os.walk(root)):
        for name in names:  # pages that other processes map stay cached: they are charged to those
            with contextlib.suppress(OSError):
                fd = os.open(Path(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
                count += 1
    return count


@dataclass
class Server:
    """A server process group (a session of its own) in a sandbox: how to (re)start it, and what it uses."""

    argv: list[str]
    env: dict[str, str]  # on top of the inherited environment
    port: int
    sandbox: Sandbox
    log: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0  # by the reliability run, after the server died

    def start(self) -> None:
        """Spawn the server; the child joins the sandbox before exec, so every import is charged and throttled."""
        with self.log.open("ab") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env={**os.environ, **self.env}, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=self.sandbox.join)

    def stop(self) -> int | None:
        """SIGTERM its process group (quota lifted: a throttled shutdown only slows us), SIGKILL what lingers."""
        self.sandbox.write("cpu", "cpu.cfs_quota_us", UNLIMITED)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # the group this server's leader made: only processes it started
            deadline = time.monotonic() + 30.0  # a killed process leaves the cgroup a moment after it exits
            while (self.proc.poll() is None or self.sandbox.pids()) and time.monotonic() < deadline:
                time.sleep(0.05)
        return self.proc.returncode

    def timed(self, path: str, uploads: list[Upload], count: int, pause: float = 0.0, access_log: bool = True,
              warmup: int = 3) -> dict:
        """Sequential POSTs after `warmup` unmeasured ones (first-use work is not a per-request cost): client ms,
        the answers' inference_ms, gunicorn's own ms, server CPU ms per request."""
        job = Job("series", path, tuple(uploads), pause, 60.0, warmup)
        background(self.port, [job._replace(pause=0.0)], seconds=150.0)
        offset, cpu = self.log.stat().st_size, self.sandbox.cpu_seconds()
        found = background(self.port, [job._replace(count=count)], seconds=150.0)["series"]
        cpu, ok = self.sandbox.cpu_seconds() - cpu, [o for o in found if o.status == 200]
        out = {"client_ms": stats([o.ms for o in ok], 2), "statuses": statuses(found),
               "inference_ms": stats([o.inference_ms for o in ok if o.inference_ms is not None], 2),
               "cpu_ms_per_request": round(cpu * 1000 / len(found), 3) if found else None}
        settle = time.monotonic() + 2.0  # gunicorn writes the access line just after the answer
        while access_log and time.monotonic() < settle:
            server_ms = [ms for p, s, ms in access_log_lines(log_lines(self.log, offset)) if p == path and s == 200]
            out["gunicorn_ms"] = stats([ms for ms in server_ms if ms is not None], 2)
            if len(server_ms) >= len(ok):
                break
            time.sleep(0.05)
        return out


def slimserve(label: str, workdir: Path, cpu_quota_us: int | None, memory_limit: int | None, model: Path = BUNDLED,
              repository: str = "", env: dict | None = None, app: str | None = None, runtime: str = "onnx") -> Server:
    """The deploy gunicorn on a free loopback port (µs access log) in a sandbox of its own, logging to
    `workdir`/`label`.log; `app` replaces its WSGI app (the bare reference)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]  # free right now
    argv = [str(Path(sys.executable).parent / "gunicorn"), "-c", "scripts/deploy/gunicorn.conf.py", "--bind",
            f"{HOST}:{port}", "--access-logformat", ACCESS_FORMAT, *([app] if app else [])]
    # No compiling in the envelope (a missing .onnx fails fast); MODEL_REPOSITORY "" serves MODEL_PATH alone.
    base = {"PORT": str(port), "MODEL_PATH": str(model), "MODEL_REPOSITORY": repository,
            "SLIMSERVE_RUNTIME": runtime, "SLIMSERVE_AUTO_COMPILE": "0", **UNREACHED_RATE_LIMITS}
    box = Sandbox(f"slimserve-bench-{os.getpid()}-{label}", cpu_quota_us, memory_limit)
    return Server(argv, {**base, **(env or {})}, port, box, workdir / f"{label}.log")


def cold_starts(server: Server, steps: list[tuple[str, str, str, Upload | None]], timeout: float) -> dict:
    """Seconds from spawn to the first 200 of each (label, method, path, body) in turn, and CPU seconds by then;
    each retried until a 200, the limit or the server's exit."""
    out: dict = {"limit": timeout}
    for label, method, path, upload in steps:
        seen = "no answer"
        while (left := server.started + timeout - time.monotonic()) > 0 and server.proc.poll() is None:
            reply = exchange(server.port, method, path, upload, timeout=min(left, 60.0))
            if reply.status == 200:
                break
            seen = reply.status if isinstance(reply.status, str) else f"HTTP {reply.status} {reply.body[:120]!r}"
            time.sleep(0.05)
        else:  # no 200
            oom = server.sandbox.oom_kills()  # the OOM killer may take the master too
            out["observed"] = f"timeout ({seen})" if server.proc.poll() is None else \
                f"exited with {server.proc.returncode}" + (f" after {oom} OOM kill(s)" if oom else "")
            out[label] = out[f"cpu_seconds_at_{label}"] = None
            break
        out[label], out["observed"] = round(time.monotonic() - server.started, 3), "ok"
        out[f"cpu_seconds_at_{label}"] = round(server.sandbox.cpu_seconds(), 3)
    out["outcome"] = out["observed"].split(" ")[0]  # ok, timeout or exited
    return out


@contextlib.contextmanager
def serving(server: Server, facts: dict, cache_extra: tuple[Path, ...] = ()) -> Iterator[None]:
    """Sandbox, cold page cache, start, memory sampling; afterwards stop, the log's news, the sandbox removed."""
    box = server.sandbox
    byte_compile()
    box.create()
    facts.update(command=shlex.join([*(f"{k}={v}" for k, v in server.env.items()), *server.argv]),
                 files_uncached=drop_cache(*cache_extra))
    facts["limits"] = {"cpu_quota_us": box.cpu_quota_us, "memory_mb": box.memory_limit and box.memory_limit >> 20}
    server.start()
    try:
        with sampling(box.pids) as peak:
            yield
            counters = box.memory_stats()  # the cgroup's peak also holds reclaimable page cache
            facts["memory"] = {**{f"peak_{k}_mb": v for k, v in in_mb(peak).items()},
                               "cgroup_peak_mb": round(counters["max_usage_in_bytes"] / MB, 1),
                               **{k: counters[k] for k in ("failcnt", "oom_control.oom_kill", "stat.pgmajfault")}}
        facts["cpu_stat"] = parse_flat_keyed(box.read("cpu", "cpu.stat"))  # throttled periods and time
    finally:
        facts["exit_code"] = server.stop()
        lines = log_lines(server.log)
        facts["worker_boots"] = sum("Booting worker with pid" in line for line in lines)  # > 1: a worker died
        facts["log_notable"] = [line[:300] for line in lines if any(key in line for key in NOTABLE)][-12:]
        box.remove()


def log_lines(path: Path, offset: int = 0) -> list[str]:
    """The server's combined stdout/stderr from byte `offset` on."""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace").splitlines()


def access_log_lines(lines: list[str]) -> list[tuple[str, int, float | None]]:
    """(path, status, gunicorn ms or None) of each access-log line."""
    found = [_ACCESS.search(line) for line in lines]
    return [(m["path"], int(m["status"]), int(m["us"]) / 1000 if m["us"] else None) for m in found if m]
