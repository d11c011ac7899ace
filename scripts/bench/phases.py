"""One benchmark run: sandbox, cold page cache, gunicorn, cold start, latency, throughput, memory figures."""

from __future__ import annotations

import os
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.bench import server as srv
from scripts.bench.cgroups import CFS_PERIOD_US, Sandbox
from scripts.bench.client import Upload, concurrent, first_200, sequential
from scripts.bench.measure import (
    MB,
    MemorySampler,
    drop_page_cache,
    resident_files,
    tree_cpu_seconds,
    tree_memory,
)

LATENCY_BUDGET = 150.0  # seconds for one series of sequential requests
THROUGHPUT_BUDGET = 60.0


@dataclass(frozen=True)
class RunSpec:
    """What one run limits and measures."""

    label: str
    runtime: str
    cpu_quota_us: int | None  # None: no CPU limit
    memory_limit: int | None  # None: no memory limit (a memory cgroup still does the accounting)
    cold_timeout: float
    requests: int
    throughput: tuple[int, int] | None = None  # (threads, requests per thread), run on one full core
    stop_on_oom: bool = False
    app: str | None = None  # another WSGI app (the bare reference) instead of the deploy config's
    paced_pause: float = 0.0  # > 0: a second latency series with this pause between requests


@dataclass(frozen=True)
class Context:
    """What every run shares."""

    repo: Path
    model_path: Path
    uploads: list[Upload]
    port: int  # 0: a free port per run
    workdir: Path
    repository: str = ""  # MODEL_REPOSITORY for the server; "" serves model_path alone


def cache_roots(repo: Path, model_path: Path) -> list[Path]:
    """Files whose page cache is dropped before a run: the venv, the stdlib, the app source, the model."""
    roots = [Path(sys.prefix) / "lib", Path(sysconfig.get_paths()["stdlib"]), repo / "src", model_path.parent]
    return [root for root in dict.fromkeys(roots) if root.is_dir()]


def _mb(value: int | None) -> float | None:
    """Bytes to MB with one decimal (None stays None)."""
    return None if value is None else round(value / MB, 1)


def _still_cached(roots: list[Path]) -> dict:
    """What the drop could not evict (pages other processes map): charged to them, not to this run."""
    found = resident_files(roots)
    if found is None:
        return {"resident_mb_after_drop": None}
    found.sort(key=lambda item: item[1], reverse=True)
    return {"resident_mb_after_drop": _mb(sum(size for _, size in found)),
            "largest_still_cached": {str(path): _mb(size) for path, size in found[:5]},
            "note": "files of at least 1 MB; pages mapped by other processes cannot be dropped"}


def _limits(spec: RunSpec, sandbox: Sandbox) -> dict:
    """The limits asked for, and whether they were enforced."""
    cpu = "none" if spec.cpu_quota_us is None else f"{spec.cpu_quota_us / CFS_PERIOD_US:g} vCPU"
    return {"cpu": cpu, "cpu_quota_us": spec.cpu_quota_us, "cpu_period_us": CFS_PERIOD_US,
            "memory_mb": _mb(spec.memory_limit), "enforced": sandbox.active, "notes": sandbox.notes}


def _memory(sandbox: Sandbox, sampler: MemorySampler) -> dict:
    """cgroup counters and the sampled RSS/PSS peaks, in MB."""
    stats = sandbox.memory_stats()
    return {
        "cgroup_peak_mb": _mb(stats.get("max_usage_bytes")),
        "cgroup_failcnt": stats.get("failcnt"),
        "cgroup_memsw_failcnt": stats.get("memsw_failcnt"),
        "oom_kill": stats.get("oom_control.oom_kill"),
        "under_oom": stats.get("oom_control.under_oom"),
        "cgroup_rss_mb_now": _mb(stats.get("stat.rss")),
        "cgroup_cache_mb_now": _mb(stats.get("stat.cache")),
        "pgmajfault": stats.get("stat.pgmajfault"),
        "peak_pss_mb": _mb(sampler.peak["pss"]),
        "peak_pss_anon_mb": _mb(sampler.peak["pss_anon"]),
        "peak_pss_file_mb": _mb(sampler.peak["pss_file"]),
        "peak_rss_mb": _mb(sampler.peak["rss"]),
        "samples": sampler.samples,
    }


def run_once(spec: RunSpec, ctx: Context) -> dict:
    """Run gunicorn once under `spec` and return everything observed."""
    sandbox = Sandbox(f"slimserve-bench-{os.getpid()}-{spec.label}", spec.cpu_quota_us, spec.memory_limit)
    sandbox.create()
    roots = cache_roots(ctx.repo, ctx.model_path)
    began = time.monotonic()
    advised = drop_page_cache(roots)
    cache = {"files_advised": advised, "seconds": round(time.monotonic() - began, 1), **_still_cached(roots)}
    port = ctx.port or srv.free_port()
    server = srv.start(ctx.repo, spec.runtime, ctx.model_path, port, sandbox, ctx.workdir / f"{spec.label}.log",
                       ctx.repository, spec.app)
    result: dict = {"label": spec.label, "runtime": spec.runtime, "limits": _limits(spec, sandbox),
                    "command": server.command, "page_cache": cache}
    try:
        with MemorySampler(server.proc.pid) as sampler:
            result.update(_measure(spec, ctx, server, sandbox, sampler))
            result["memory"] = _memory(sandbox, sampler)
        result["cpu_stat"] = sandbox.cpu_stats()
    finally:
        result["exit_code"] = srv.stop(server, sandbox)
        lines = srv.log_lines(server.log_path)
        result["worker_boots"] = srv.worker_boots(lines)
        result["log_notable"] = srv.notable(lines)
        sandbox.remove()
        result["limits"]["notes"] = sandbox.notes
    return result


def _measure(spec: RunSpec, ctx: Context, server: srv.Server, sandbox: Sandbox, sampler: MemorySampler) -> dict:
    """Cold start, then latency and throughput if the server came up."""
    deadline = server.started + spec.cold_timeout

    def stop_reason() -> str | None:
        """Why waiting is pointless now (server exited, or OOM when asked to stop on it), else None."""
        oom = sandbox.memory_stats().get("oom_control.oom_kill", 0)
        killed = f"oom (the kernel killed {oom} process(es) in the cgroup)"
        if server.proc.poll() is not None:  # the OOM killer may take the master too
            return f"{killed}; gunicorn exited with {server.proc.returncode}" if oom else \
                f"exited with code {server.proc.returncode}"
        return killed if spec.stop_on_oom and oom else None

    health_at, health_seen = first_200(server.port, "GET", "/health", None, deadline, stop_reason)
    cpu_at_health = tree_cpu_seconds(server.proc.pid) if health_at else None
    predict_at, seen = (None, health_seen)
    if health_at is not None:
        predict_at, seen = first_200(server.port, "POST", "/predict", ctx.uploads[0], deadline, stop_reason)
    # At a CPU quota the cold start is roughly this CPU time divided by the quota.
    cpu_at_predict = tree_cpu_seconds(server.proc.pid) if predict_at else None
    out: dict = {
        "outcome": "ok" if predict_at else seen.split(" ")[0],
        "observed": seen,
        "cold_start_s": {
            "first_health_200": None if health_at is None else round(health_at - server.started, 2),
            "first_predict_200": None if predict_at is None else round(predict_at - server.started, 2),
            "cpu_seconds_at_health": cpu_at_health,
            "cpu_seconds_at_predict": cpu_at_predict,
            "limit": spec.cold_timeout,
        },
    }
    if predict_at is None:
        out["memory_at_give_up"] = {k: _mb(v) if k != "processes" else v for k, v in tree_memory(
            server.proc.pid).items()}
        return out
    out["memory_after_cold_start"] = {k: _mb(v) if k != "processes" else v
                                      for k, v in sampler.sample().items()}
    if spec.requests:
        cpu_before = tree_cpu_seconds(server.proc.pid)
        out["latency"] = sequential(server.port, ctx.uploads, spec.requests, time.monotonic() + LATENCY_BUDGET)
        done = out["latency"]["client_ms"]["n"]
        # Server CPU per request: at a quota q the sustainable rate is q / this, however latency is spread.
        out["latency"]["server_cpu_ms_per_request"] = (
            round((tree_cpu_seconds(server.proc.pid) - cpu_before) * 1000 / done, 2) if done else None)
        out["latency"]["mode"] = "back to back: each request sent as soon as the previous one answered"
        out["cgroup_peak_mb_after_latency"] = _mb(sandbox.memory_stats().get("max_usage_bytes"))
    if spec.requests and spec.paced_pause:
        # Back to back, requests drain the 10 ms-per-100 ms quota and queue for the next period; spaced out,
        # each finds the quota refilled, as sparse real traffic would.
        out["latency_paced"] = sequential(server.port, ctx.uploads, spec.requests, time.monotonic() + LATENCY_BUDGET,
                                          pause=spec.paced_pause)
        out["latency_paced"]["mode"] = f"{spec.paced_pause:g} s pause between requests"
    if spec.throughput:
        sandbox.set_cpu_quota(CFS_PERIOD_US)  # exactly one full core; the memory limit stays
        threads, per_thread = spec.throughput
        out["throughput"] = concurrent(server.port, ctx.uploads, threads, per_thread,
                                       time.monotonic() + THROUGHPUT_BUDGET)
        out["throughput"]["cpu"] = "1 vCPU (cfs quota 100000/100000 us)" if sandbox.cpu_dir else "unlimited"
    return out
