"""Start and stop the real gunicorn server (scripts/deploy/gunicorn.conf.py) inside a sandbox."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.bench.cgroups import UNLIMITED, Sandbox
from scripts.bench.client import HOST
from scripts.bench.measure import process_tree

GUNICORN_CONF = Path("scripts") / "deploy" / "gunicorn.conf.py"
STOP_WAIT = 30.0
# Rate limiting stays on, so its cost is part of every measurement, with budgets no benchmark reaches.
UNREACHED_RATE_LIMITS = {f"SLIMSERVE_RATE_LIMIT_{group}": "1000000/minute"
                         for group in ("PREDICT", "INVOCATIONS", "DEFAULT")}


@dataclass
class Server:
    """A running gunicorn master (its own session, so its whole process group can be ended by id)."""

    proc: subprocess.Popen
    port: int
    started: float
    log_path: Path
    command: str


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(runtime: str, model_path: Path, port: int, repository: str = "") -> dict[str, str]:
    """The variables the benchmark sets on top of the inherited environment."""
    # No compiling inside the envelope: a missing .onnx must fail fast, not import TensorFlow.
    # MODEL_REPOSITORY "" serves MODEL_PATH alone, so every run measures exactly one model.
    return {"PORT": str(port), "MODEL_PATH": str(model_path), "MODEL_REPOSITORY": repository,
            "SLIMSERVE_RUNTIME": runtime, "SLIMSERVE_AUTO_COMPILE": "0", **UNREACHED_RATE_LIMITS}


def server_argv(port: int, app: str | None = None) -> list[str]:
    """The gunicorn command line: the deploy config, bound to loopback only; `app` replaces its wsgi_app."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    return [str(gunicorn), "-c", str(GUNICORN_CONF), "--bind", f"{HOST}:{port}", *([app] if app else [])]


def start(repo: Path, runtime: str, model_path: Path, port: int, sandbox: Sandbox, log_path: Path,
          repository: str = "", app: str | None = None, extra_env: dict[str, str] | None = None) -> Server:
    """Spawn gunicorn; the child joins the sandbox before exec, so every import is charged and throttled."""
    extra = {**server_env(runtime, model_path, port, repository), **(extra_env or {})}
    argv = server_argv(port, app)
    command = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in extra.items()), *map(shlex.quote, argv)])
    log = log_path.open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=repo, env={**os.environ, **extra}, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=sandbox.join if sandbox.active else None)
    log.close()
    return Server(proc, port, started, log_path, command)


def stop(server: Server, sandbox: Sandbox) -> int | None:
    """End the server: lift the CPU quota, SIGTERM the master, then SIGKILL whatever of its group lingers."""
    sandbox.set_cpu_quota(UNLIMITED)  # a throttled shutdown would only slow the benchmark down
    group = server.proc.pid  # start_new_session: the master leads its own process group
    members = set(process_tree(group)) | set(sandbox.pids())
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=STOP_WAIT)
    for pid in members - {group}:  # only our own processes: in our group, started by this run
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == group:
                os.kill(pid, signal.SIGKILL)
    if server.proc.poll() is None:
        server.proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(timeout=STOP_WAIT)
    for _ in range(100):  # a killed worker leaves the cgroup a moment later
        if not sandbox.pids():
            break
        time.sleep(0.05)
    return server.proc.returncode


def log_lines(path: Path) -> list[str]:
    """The server's combined stdout/stderr."""
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def worker_boots(lines: list[str]) -> int:
    """How many times gunicorn booted a worker (more than one means a worker died: OOM, timeout)."""
    return sum("Booting worker with pid" in line for line in lines)


def notable(lines: list[str], limit: int = 12) -> list[str]:
    """Warnings, errors and worker deaths from the log, without the access-log lines."""
    keys = ("ERROR", "WARNING", "CRITICAL", "Traceback", "Killed", "signal", "Booting worker", "TIMEOUT", "memory")
    picked = [line[:300] for line in lines if any(key in line for key in keys)]
    return picked[-limit:]
