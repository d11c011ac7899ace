"""What every benchmark report shares: options, machine facts, goals and the JSON file (its goals printed)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from scripts.bench.sandbox import TENTH_VCPU, Sandbox
from slimserve import paths

PACKAGES = ("onnxruntime", "tensorflow-cpu", "tensorflow", "gunicorn", "flask", "numpy", "pillow", "marshmallow",
            "mlflow", "scikit-learn", "pandas", "uvicorn")


def cpu_probe_ms(loops: int = 2_000_000) -> float:
    """CPU ms of a fixed pure-Python loop: how fast this (shared, possibly throttled) machine is right now."""
    started, total = time.process_time(), 0
    for i in range(loops):
        total += i
    return round((time.process_time() - started) * 1000, 1)


def options(doc: str, flags: dict[str, Any], argv: list[str] | None) -> argparse.Namespace:
    """Parse a command line of {--flag: (default, help) or add_argument's keywords}; a (default, help) option takes
    its default's type (False: a switch)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, spec in flags.items():
        if isinstance(spec, tuple):
            kind = {"action": "store_true"} if spec[0] is False else {"type": type(spec[0]), "default": spec[0]}
            spec = {**kind, "help": spec[1]}
        parser.add_argument(flag, **spec)
    return parser.parse_args(argv)


def start_report(**facts: Any) -> dict[str, Any]:
    """A report holding `facts`, the command and the machine: CPU, kernel, versions, commit, load and speed at start.
    Without usable cgroups it stops the benchmark; from here on SIGTERM unwinds the run (servers stopped, cgroups
    removed)."""
    probe = Sandbox(f"slimserve-probe-{os.getpid()}", TENTH_VCPU, None)
    probe.create()  # SystemExit with a one-line reason, before any work
    probe.remove()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=10,
                              check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), None)
    packages = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
    return {"command": shlex.join([sys.executable, *sys.argv]), "started": time.monotonic(), "machine": {
        "cpu_model": cpu, "nproc": os.cpu_count(), "kernel": platform.release(), "root": os.geteuid() == 0,
        "python": platform.python_version(), "packages": {p: packages[p] for p in PACKAGES if p in packages},
        "git_commit": git("rev-parse", "HEAD"),  # reports written by an earlier benchmark do not make it dirty
        "git_dirty": bool(git("status", "--porcelain", "--", ".", ":!artifacts/bench")),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "cpu_probe_ms_at_start": cpu_probe_ms(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}} | facts


def write(report: dict[str, Any], out: Path) -> None:
    """Add the run time and the machine's load and speed at the end, write the JSON and print the goals."""
    report["seconds"] = round(time.monotonic() - report.pop("started"), 1)
    report["machine"].update(loadavg_at_end=[round(x, 2) for x in os.getloadavg()], cpu_probe_ms_at_end=cpu_probe_ms())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report["goals"], indent=1, default=str), f"\nwrote {out} in {report['seconds']} s")


def pick(data: Any, *keys: str) -> Any:
    """Nested lookup that yields None when any level is missing."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def ratio(numerator: Any, denominator: Any, digits: int = 1) -> float | None:
    """numerator / denominator, rounded, or None when either is missing or the denominator is zero."""
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float) or not denominator:
        return None
    return round(numerator / denominator, digits)


def judge(values: dict[str, Any], limits: dict[str, float], at_least: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Each goal's value, limit and pass: ≤ limit (≥ for `at_least`); None if unmeasured."""
    out = {}
    for name, limit in limits.items():
        value = values.get(name)
        met = (value >= limit if name in at_least else value <= limit) if isinstance(value, int | float) else None
        out[name] = {"value": value, "limit": limit, "pass": met}
    return out
