"""Reliability benchmark in 0.1 vCPU / 256 MB: hostile input, schemathesis, slow clients, overload, SIGTERM.

Writes artifacts/bench/reliability.json and prints markdown tables. Usage: `python -m scripts.bench.reliability`
(root and a writable cgroup v1 hierarchy are needed for the limits). Only 127.0.0.1 is ever contacted; every
socket has a timeout and every phase a time bound.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from scripts.bench import server as srv  # noqa: E402
from scripts.bench.cgroups import UNLIMITED, Sandbox  # noqa: E402
from scripts.bench.client import HOST, Upload, load_samples  # noqa: E402
from scripts.bench.hostile import (  # noqa: E402
    Case,
    Outcome,
    corpus,
    exchange,
    hold_slow,
    with_background,
    with_processes,
)
from scripts.bench.measure import PROC, MemorySampler, parse_cpu_seconds, percentile, process_tree  # noqa: E402
from scripts.bench.report import machine_facts  # noqa: E402
from scripts.bench.tabular_data import SHARED_DATA, build_payloads, tabular_manifests  # noqa: E402
from scripts.bench.tabular_http import LogCursor  # noqa: E402
from scripts.bench.tabular_memory import cache_roots, drop_cache, memory_mb  # noqa: E402

MODELS = REPO / "artifacts" / "models"
BUNDLED = MODELS / "pneumonia" / "1.0.0" / "model.h5"
SAMPLES = SHARED_DATA / "pneumonia" / "samples"
TABULAR = "/models/heart_failure/invocations"
MEMORY_LIMIT = 256 * 1024 * 1024
TENTH_VCPU = 10_000  # µs of CPU per 100 ms period
HEALTH_TIMEOUT = 5.0  # Render's health check gives up after 5 s
CLIENT_PROCESSES = 4  # load clients are spread over this many processes; the /health poller has its own
SCHEMATHESIS = "schemathesis==4.32.5"
CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
GOALS = {"oom_kills": 0, "server_errors_5xx": 0, "refused_cpu_s": 1.0, "shedding_p99_ms": 50.0,
         "health_p99_ms": 200.0, "predict_req_per_s": 11.0, "sigterm_failed_in_flight": 0,
         "schemathesis_failures": 0}
_ACCESS = re.compile(r'"[A-Z]+ [^"]*" (\d{3}) ')


def stats(values: list[float]) -> dict[str, float | int]:
    """Count, p50, p95, p99 and max of milliseconds, rounded to 0.1 ms."""
    if not values:
        return {"n": 0}
    return {"n": len(values), **{f"p{q}": round(percentile(values, q), 1) for q in (50, 95, 99)},
            "max": round(max(values), 1)}


def statuses(outcomes: list[Outcome]) -> dict[str, int]:
    """How many outcomes had each status (HTTP code or network result)."""
    return dict(sorted(Counter(str(o.status) for o in outcomes).items()))


def is_5xx_failure(status: int | str) -> bool:
    """A 5xx other than 503 (503 + Retry-After is load shedding, allowed)."""
    return isinstance(status, int) and 500 <= status <= 599 and status != 503


def log_statuses(lines: list[str]) -> dict[str, int]:
    """Status counts from the gunicorn access-log lines."""
    return dict(sorted(Counter(m.group(1) for m in map(_ACCESS.search, lines) if m).items()))


class Envelope:
    """The shipped gunicorn in a 0.1 vCPU / 256 MB sandbox, plus a watcher of each process's CPU time."""

    def __init__(self, label: str, workdir: Path, extra_env: dict[str, str]) -> None:
        """Create the sandbox and start polling CPU times (the server starts in `start`)."""
        self.sandbox = Sandbox(f"slimserve-rel-{os.getpid()}-{label}", TENTH_VCPU, MEMORY_LIMIT)
        self.sandbox.create()
        self.log, self.extra_env, self.restarts = workdir / f"{label}.log", extra_env, -1
        self.seen_cpu: dict[int, float] = {}
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def start(self) -> None:
        """Drop the page cache, spawn gunicorn (all bundled models, as shipped) and wait until it is ready."""
        drop_cache(cache_roots())
        self.restarts += 1
        self.server = srv.start(REPO, "onnx", BUNDLED, srv.free_port(), self.sandbox, self.log, str(MODELS),
                                extra_env=self.extra_env)
        self.settle(limit=180)

    def workers(self) -> list[int]:
        """Live worker pids (the master's descendants)."""
        return [pid for pid in process_tree(self.server.proc.pid) if pid != self.server.proc.pid]

    def oom_kills(self) -> int:
        """The cgroup's oom_kill counter (not failcnt)."""
        return self.sandbox.memory_stats().get("oom_control.oom_kill", 0)

    def cpu(self, pid: int) -> float:
        """CPU seconds of `pid` now, or the last value seen if it has exited."""
        with contextlib.suppress(OSError, ValueError):
            self.seen_cpu[pid] = parse_cpu_seconds((PROC / str(pid) / "stat").read_text(), self._ticks)
        return self.seen_cpu.get(pid, 0.0)

    def cpu_since(self, start: dict[int, float]) -> float:
        """CPU seconds the processes in `start` used since then (a killed one counts to its last sample)."""
        return round(sum(self.cpu(pid) - before for pid, before in start.items()), 3)

    def _watch(self) -> None:
        """Sample every process in the cgroup every 50 ms, so a worker's CPU is known even after an OOM kill."""
        while not self._stop.wait(0.05):
            for pid in self.sandbox.pids():
                self.cpu(pid)

    def settle(self, limit: float = 90.0) -> dict:
        """With the quota lifted: restart a dead server, wait for /ready and for the worker to go idle."""
        began = time.monotonic()
        self.sandbox.set_cpu_quota(UNLIMITED)  # leftover work and restarts are not what is measured
        try:
            if self.server.proc.poll() is not None and self.restarts < 3:
                srv.stop(self.server, self.sandbox)
                self.start()
            ready = False
            while not ready and time.monotonic() - began < limit and self.server.proc.poll() is None:
                ready = exchange(self.server.port, "GET", "/ready", timeout=HEALTH_TIMEOUT).status == 200
                time.sleep(0 if ready else 0.2)
            for _ in range(100):  # idle: under 5 ms of worker CPU in 0.3 s
                before = sum(self.cpu(p) for p in self.workers())
                time.sleep(0.3)
                if sum(self.cpu(p) for p in self.workers()) - before < 0.005 or time.monotonic() - began > limit:
                    break
        finally:
            self.sandbox.set_cpu_quota(TENTH_VCPU)
        return {"ready": ready, "seconds": round(time.monotonic() - began, 1)}

    def close(self) -> None:
        """Stop the server and the watcher, remove the sandbox."""
        self._stop.set()
        if hasattr(self, "server"):
            srv.stop(self.server, self.sandbox)
        self.sandbox.remove()


def measured(env: Envelope, action: Callable[[], object]) -> tuple[object, dict, Callable[[], dict]]:
    """Run `action` with the peak reset: its result, CPU and peak memory, and a check for OOM kills/restarts."""
    workers, oom = env.workers(), env.oom_kills()
    env.sandbox.reset_peak()
    cpu_start = {pid: env.cpu(pid) for pid in workers}
    with MemorySampler(env.server.proc.pid, interval=0.1) as sampler:
        result = action()
        cpu = env.cpu_since(cpu_start)
        peak = env.sandbox.memory_stats().get("max_usage_bytes")

    def aftermath() -> dict:
        """Read once the server has recovered: a killed worker is replaced only after a moment."""
        return {"worker_cpu_s_total": env.cpu_since(cpu_start), "oom_kills": env.oom_kills() - oom,
                "worker_restarted": set(env.workers()) != set(workers)}

    return result, {"worker_cpu_s": cpu, "cgroup_peak_mb": None if peak is None else round(peak / 2**20, 1),
                    "peak_pss_mb": memory_mb(sampler.peak)["pss"]}, aftermath


def run_case(env: Envelope, case: Case, timeout: float) -> dict:
    """Send one hostile case (`copies` at once) and measure it; then let the server recover."""
    send = lambda _: exchange(env.server.port, "POST", case.path, case.body, case.content_type, timeout,  # noqa: E731
                              case.declared_length)
    with ThreadPoolExecutor(case.copies) as pool:
        outcomes, row, aftermath = measured(env, lambda: list(pool.map(send, range(case.copies))))
    row["settle"] = env.settle()
    row.update(aftermath())  # worker_cpu_s_total: including work after a timeout, at full speed
    found = [o.status for o in outcomes]
    return {"name": case.name, "group": case.group, "path": case.path, "bytes": len(case.body),
            "status": found[0] if len(found) == 1 else found, "wall_ms": round(max(o.ms for o in outcomes)),
            "answer": outcomes[0].body[:160].decode(errors="replace"), **row}


def run_corpus(env: Envelope, cases: list[Case], timeout: float, budget: float) -> list[dict]:
    """Every case in turn, within a total time budget (later cases are recorded as skipped)."""
    rows, deadline = [], time.monotonic() + budget
    for case in cases:
        if time.monotonic() > deadline:
            rows.append({"name": case.name, "group": case.group, "status": "skipped (time budget)"})
            continue
        rows.append(run_case(env, case, timeout))
        print(f"reliability: {case.name}: {rows[-1]['status']} ({rows[-1]['wall_ms']} ms)", file=sys.stderr)
    return rows


def schemathesis_venv(venv: Path) -> Path:
    """The `st` executable of a venv of its own (created with pip when missing)."""
    st = venv / "bin" / "st"
    if not st.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", SCHEMATHESIS], check=True, timeout=600)
    return st


def run_schemathesis(env: Envelope, venv: Path, cases: int, seconds: int, workdir: Path) -> dict:
    """schemathesis against /openapi.json in the envelope: cases generated, failures by kind, 5xx in the log."""
    spec = json.loads(exchange(env.server.port, "GET", "/openapi.json", timeout=30, keep=10**7).body or b"{}")
    operations = sum(1 for item in spec.get("paths", {}).values() for method in item if method in ("get", "post"))
    out = workdir / "schemathesis.json"
    # The project's conformance settings: real images for image bodies (the tool's own 1x1 PNG is below every
    # model's input size) and 413 counted as a rejection (scripts/conformance).
    argv = [str(schemathesis_venv(venv)), "--config-file", str(CONFORMANCE / "schemathesis.toml"), "run",
            f"http://{HOST}:{env.server.port}/openapi.json", "--checks", "all",
            "--max-examples", str(math.ceil(cases / max(operations, 1))), "--workers", "1", "--seed", "1",
            "--request-timeout", "10", "--max-time", str(seconds), "--no-shrink", "--warnings", "off",
            "--suppress-health-check", "all", "--phases", "examples,coverage,fuzzing", "--report", "json",
            "--report-json-path", str(out)]
    cursor = LogCursor(env.log)
    try:
        done = subprocess.run(argv, cwd=CONFORMANCE, capture_output=True, text=True, timeout=seconds + 120,
                              check=False, env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                                                "PYTHONPATH": str(CONFORMANCE)})
        exit_code: int | str = done.returncode
    except subprocess.TimeoutExpired:
        exit_code = "timeout"
    report = json.loads(out.read_text()) if out.exists() else {}
    failures = [{k: f.get(k) for k in ("code", "title", "count", "operations")} for f in report.get("failures", [])]
    return {"command": shlex.join(argv), "exit_code": exit_code, "operations": operations,
            "cases_generated": report.get("test_cases", {}).get("generated"), "stop_reason": report.get("stop_reason"),
            "seconds": round(report.get("running_time", 0), 1), "failures": failures,
            "failure_count": sum(f["count"] or 0 for f in failures),
            "server_error_failures": sum(f["count"] or 0 for f in failures if "server" in str(f["title"]).lower()),
            "access_log_statuses": log_statuses(cursor.lines())}


def slowloris(env: Envelope, mode: str, upload: Upload, connections: int, seconds: float) -> dict:
    """Slow or lying connections held open while normal clients poll /health and /predict."""
    env.settle()
    held: dict = {}
    found = with_background(env.server.port, [("health", "/health", None, 0.2, HEALTH_TIMEOUT),
                                       ("predict", "/predict", upload, 0.5, 10.0)],
                            lambda: held.update(hold_slow(env.server.port, mode, upload, connections, seconds)))
    return {"mode": mode, "connections": connections, "seconds": seconds, "connected": held["connected"],
            "dropped_by_server": len(held["dropped"]), "drop_after_s": stats(held["dropped"]),
            "answers_on_slow_connections": held["answers"],
            **{f"{name}_ms": stats([o.ms for o in found[name]]) for name in found},
            **{f"{name}_statuses": statuses(found[name]) for name in found}}


def load(env: Envelope, path: str, uploads: list[Upload], concurrency: int, seconds: float) -> dict:
    """`concurrency` clients back to back for `seconds` (each then finishes its request), /health polled beside."""
    env.settle()
    clients = [(f"c{n}", path, uploads[n % len(uploads)], 0.0, 30.0) for n in range(concurrency)]
    groups = [[("health", "/health", None, 0.1, HEALTH_TIMEOUT)], *(clients[i::CLIENT_PROCESSES]
                                                                   for i in range(CLIENT_PROCESSES))]
    began = time.monotonic()
    found, row, aftermath = measured(env, lambda: with_processes(env.server.port, groups,
                                                                 lambda: time.sleep(seconds)))
    elapsed = time.monotonic() - began
    row["settle"] = env.settle()
    row.update(aftermath())
    health = found.pop("health")
    results = [o for runs in found.values() for o in runs]
    ok = [o.ms for o in results if o.status == 200]
    shed = [o for o in results if o.status in (503, 429)]
    return {"route": path, "concurrency": concurrency, "seconds": round(elapsed, 1), "requests": len(results),
            "req_per_s_200": round(len(ok) / elapsed, 2), "statuses": statuses(results), "latency_200_ms": stats(ok),
            "shed_ms": stats([o.ms for o in shed]), "shed_with_retry_after": sum(1 for o in shed if o.retry_after),
            "health_ms": stats([o.ms for o in health]), "health_statuses": statuses(health), **row}


def sigterm_under_load(env: Envelope, uploads: list[Upload], concurrency: int, after: float) -> dict:
    """SIGTERM to the master while `concurrency` clients POST /predict; every request must succeed or be refused."""
    env.settle()
    found: dict = {}
    master = env.server.proc

    def term() -> None:
        time.sleep(after)
        found["sent"] = time.monotonic()
        master.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            master.wait(timeout=40)
        found["exited"] = time.monotonic()

    jobs = [(f"c{n}", "/predict", uploads[n % len(uploads)], 0.0, 30.0) for n in range(concurrency)]
    outcomes = [o for runs in with_background(env.server.port, jobs, term).values() for o in runs]
    failed = [o for o in outcomes if not isinstance(o.status, int) and o.status not in ("refused", "no connection")]
    return {"concurrency": concurrency, "sigterm_after_s": after, "requests": len(outcomes),
            "statuses": statuses(outcomes), "failed_in_flight": len(failed),
            "never_accepted": sum(1 for o in outcomes if o.status in ("refused", "no connection")),
            "master_exit_code": master.returncode,
            "shutdown_s": round(found["exited"] - found["sent"], 2) if "exited" in found else None}


def goals(report: dict) -> dict:
    """Each goal: value, limit and pass (None when it could not be measured)."""
    corpus_rows = [r for r in report["corpus"] if "oom_kills" in r]
    loads = report["load"]
    runs = loads + ([report["rate_limited"]] if "rate_limited" in report else [])  # the 429 run sheds too
    oom = sum(r["oom_kills"] for r in corpus_rows) + sum(r["oom_kills"] for r in runs)
    answers = {r["name"]: r["status"] if isinstance(r["status"], list) else [r["status"]] for r in corpus_rows}
    seen = [s for found in answers.values() for s in found]
    counted = [r["statuses"] for r in runs] + [report.get("schemathesis", {}).get("access_log_statuses", {})]
    counted += [r[f"{name}_statuses"] for r in report["slowloris"] for name in ("health", "predict")]
    seen += [int(k) for found in counted for k, n in found.items() for _ in range(n) if k.isdigit()]
    refused = [r["worker_cpu_s"] for r in corpus_rows
               if any(isinstance(s, int) and s >= 400 for s in answers[r["name"]])]
    unanswered = [name for name, found in answers.items() if not all(isinstance(s, int) for s in found)]
    shed = [r["shed_ms"]["p99"] for r in runs if r["shed_ms"]["n"]]
    health = [r["health_ms"].get("p99", math.inf) for r in loads if r["concurrency"] == max(
        x["concurrency"] for x in loads)] + [r["health_ms"].get("p99", math.inf) for r in report["slowloris"]]
    predict = [r["req_per_s_200"] for r in loads if r["route"] == "/predict"]
    st = report.get("schemathesis", {})
    values = {"oom_kills": oom, "server_errors_5xx": sum(map(is_5xx_failure, seen)),
              "refused_cpu_s": max(refused, default=None), "shedding_p99_ms": max(shed, default=None),
              "health_p99_ms": max(health, default=None), "predict_req_per_s": max(predict, default=None),
              "sigterm_failed_in_flight": report.get("sigterm", {}).get("failed_in_flight"),
              "schemathesis_failures": st.get("failure_count")}
    out = {name: {"value": value, "limit": GOALS[name],
                  "pass": None if value is None else (value >= GOALS[name] if name == "predict_req_per_s"
                                                      else value <= GOALS[name])}
           for name, value in values.items()}
    out["corpus_every_case_answered"] = {"value": unanswered, "pass": not unanswered}
    out["schemathesis_cases_at_least_2000"] = {"value": st.get("cases_generated"),
                                               "pass": (st.get("cases_generated") or 0) >= 2000}
    return out


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A markdown table ('-' for missing values)."""
    def text(v: object) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k}: {n}" for k, n in v.items())
        return ", ".join(map(str, v)) if isinstance(v, list) else "-" if v is None else str(v)

    cells = [[text(v).replace("|", "/") for v in row] for row in rows]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in cells)]


def markdown(report: dict) -> list[str]:
    """The README tables: goals, the hostile corpus, the load levels and the slow clients."""
    mark = {True: "pass", False: "**FAIL**", None: "n/a"}
    lines = table(["goal", "value", "limit", "result"],
                  [[name, g["value"], g.get("limit"), mark[g["pass"]]] for name, g in report["goals"].items()])
    keys = ["name", "bytes", "status", "wall_ms", "worker_cpu_s", "cgroup_peak_mb", "peak_pss_mb", "oom_kills",
            "worker_restarted"]
    lines += ["", *table(["hostile input", *keys[1:]], [[r.get(k) for k in keys] for r in report["corpus"]])]
    lines += ["", *table(["route", "c", "req/s (200)", "p50 ms", "p95", "p99", "statuses", "shed p99 ms",
                          "/health p50", "/health p99", "cgroup peak MB", "OOM kills"],
                         [[r["route"], r["concurrency"], r["req_per_s_200"], *(r["latency_200_ms"].get(f"p{q}")
                           for q in (50, 95, 99)), r["statuses"], r["shed_ms"].get("p99"), r["health_ms"].get("p50"),
                           r["health_ms"].get("p99"), r["cgroup_peak_mb"], r["oom_kills"]] for r in report["load"]])]
    lines += ["", *table(["slow clients", "connections", "s", "dropped by server", "/health p99 ms", "/health",
                          "/predict p99 ms", "/predict"],
                         [[r["mode"], r["connected"], r["seconds"], r["dropped_by_server"], r["health_ms"].get("p99"),
                           r["health_statuses"], r["predict_ms"].get("p99"), r["predict_statuses"]]
                          for r in report["slowloris"]])]
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The command line (every phase bounded; defaults keep the whole run near 10 minutes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case-timeout", type=float, default=20.0, help="socket timeout per hostile request (s)")
    parser.add_argument("--corpus-budget", type=float, default=300.0, help="time for the whole corpus (s)")
    parser.add_argument("--st-cases", type=int, default=2000, help="schemathesis cases to aim for")
    parser.add_argument("--st-seconds", type=int, default=200, help="schemathesis time bound (s)")
    parser.add_argument("--st-venv", type=Path, default=Path.home() / ".cache" / "slimserve" / "venv-st",
                        help=f"a venv with {SCHEMATHESIS} (created when missing)")
    parser.add_argument("--slow-connections", type=int, default=100)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--levels", default="8,32,128", help="load concurrency levels")
    parser.add_argument("--load-seconds", type=float, default=15.0, help="per level and route")
    parser.add_argument("--predict-limit", default="5/second",
                        help="SLIMSERVE_RATE_LIMIT_PREDICT of the 429 run (the other runs keep server_env's limits)")
    parser.add_argument("--skip", default="", help="phases to skip: corpus,schemathesis,slowloris,load,sigterm,429")
    parser.add_argument("--gunicorn-args", default="",
                        help="extra gunicorn flags, e.g. '--worker-class gthread --threads 4' to measure the "
                             "stock worker against the same scenarios (GUNICORN_CMD_ARGS)")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "reliability.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every phase against one server (a second one for the 429 run), write the JSON, print the tables."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop gunicorn, remove the cgroups
    skip = set(args.skip.split(","))
    uploads = load_samples(SAMPLES)
    rows = build_payloads("heart_failure", tabular_manifests(MODELS)["heart_failure"]).single_split
    split = json.loads(rows[0].body)["dataframe_split"]  # a real row of the data set
    report: dict = {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine_facts(REPO),
                    "envelope": {"cpu_quota_us": TENTH_VCPU, "cpu_period_us": 100_000, "memory_limit_mb": 256,
                                 "gunicorn_config": str(srv.GUNICORN_CONF), "models": "all bundled (as shipped)"},
                    "corpus": [], "load": [], "slowloris": []}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slimserve-reliability-") as tmp:
        workdir = Path(tmp)
        env = Envelope("main", workdir, {"GUNICORN_CMD_ARGS": args.gunicorn_args} if args.gunicorn_args else {})
        try:
            env.start()
            report["envelope"].update(enforced=env.sandbox.active, notes=env.sandbox.notes,
                                      command=env.server.command)
            if "corpus" not in skip:
                cases = corpus(split["columns"], split["data"][0])
                report["corpus"] = run_corpus(env, cases, args.case_timeout, args.corpus_budget)
            if "schemathesis" not in skip:
                print("reliability: schemathesis …", file=sys.stderr)
                report["schemathesis"] = run_schemathesis(env, args.st_venv, args.st_cases, args.st_seconds, workdir)
            if "slowloris" not in skip:
                for mode in ("headers", "short_body"):
                    print(f"reliability: slowloris {mode} …", file=sys.stderr)
                    report["slowloris"].append(slowloris(env, mode, uploads[0], args.slow_connections,
                                                         args.slow_seconds))
            if "load" not in skip:
                for path, bodies in (("/predict", uploads), (TABULAR, rows)):
                    for level in map(int, args.levels.split(",")):
                        print(f"reliability: load {path} c={level} …", file=sys.stderr)
                        report["load"].append(load(env, path, bodies, level, args.load_seconds))
            if "sigterm" not in skip:
                print("reliability: SIGTERM under load …", file=sys.stderr)
                report["sigterm"] = sigterm_under_load(env, uploads, 8, 3.0)
            report["main_server"] = {"restarts": env.restarts, "oom_kills_total": env.oom_kills(),
                                     "cpu_stat": env.sandbox.cpu_stats()}
        finally:
            env.close()
            lines = srv.log_lines(env.log)
            report["main_server"] = {**report.get("main_server", {}), "worker_boots": srv.worker_boots(lines),
                                     "access_log_statuses": log_statuses(lines), "log_notable": srv.notable(lines)}
        if "429" not in skip:
            print("reliability: rate limits on …", file=sys.stderr)
            limited = Envelope("limited", workdir, {"SLIMSERVE_RATE_LIMIT_ENABLED": "1",
                                                    "SLIMSERVE_RATE_LIMIT_PREDICT": args.predict_limit})
            try:
                limited.start()
                # The same clients as the load runs, with limits on: 429s, their latency and Retry-After.
                report["rate_limited"] = {"env": limited.extra_env, **load(limited, "/predict", uploads, 4, 3.0)}
            finally:
                limited.close()
    report["seconds"] = round(time.monotonic() - started, 1)
    report["goals"] = goals(report)
    report["notes"] = [
        "Between cases the CPU quota is lifted while the server recovers (restart, /ready, leftover work); every "
        "figure is taken at 0.1 vCPU. worker_cpu_s counts the worker(s) alive when the case started, up to the "
        "answer (worker_cpu_s_total: until idle again; a killed worker counts to its last 50 ms sample).",
        "Latency statistics include requests that got no answer, at the time the client gave up "
        f"(/health: {HEALTH_TIMEOUT:g} s, like Render's health check).",
        "Load clients send back to back, but after a 429/503 wait its Retry-After (at most 1 s), as polite "
        "clients do; shed_ms is the latency of those refusals.",
        "server_errors_5xx counts answers 500-599 except 503: corpus, load, the normal clients beside the slow "
        "ones, and the access log during schemathesis.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n".join(markdown(report)))
    print(f"\nwrote {args.out} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
