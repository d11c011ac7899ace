"""Reliability in 0.1 vCPU / 256 MB (issue 7): hostile input, schemathesis, slow clients, overload, SIGTERM, 429."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scripts.bench import server as srv
from scripts.bench.client import HOST, Job, Upload, background, exchange, in_processes, load_samples, statuses
from scripts.bench.corpus import TABULAR, Case, corpus, hold_slow
from scripts.bench.report import judge, options, start_report, write
from scripts.bench.sandbox import ENVELOPE_MEMORY, MB, TENTH_VCPU, UNLIMITED, sampling, stats
from scripts.bench.tabular import build_payloads, tabular_manifests

HEALTH_TIMEOUT = 5.0  # Render's health check gives up after 5 s
CLIENT_PROCESSES = 4  # load clients are spread over this many processes; the /health poller has its own
SCHEMATHESIS = "schemathesis==4.32.5"
CONFORMANCE = srv.REPO / "scripts" / "conformance"
ST_VENV = Path.home() / ".cache" / "slimserve" / "venv-st"  # made if missing
CASE_TIMEOUT = 20.0  # socket timeout per hostile request (s)
GOALS = {"oom_kills": 0, "server_errors_5xx": 0, "refused_cpu_s": 1.0, "shedding_p99_ms": 50.0,
         "health_p99_ms": 200.0, "predict_req_per_s": 11.0, "sigterm_failed_in_flight": 0,
         "schemathesis_failures": 0, "schemathesis_cases": 2000}
OPTIONS = {
    "--corpus-budget": (300.0, "time for the whole corpus (s)"), "--st-cases": (2000, "schemathesis cases to aim for"),
    "--st-seconds": (200, "schemathesis time bound (s)"),
    "--slow-connections": (100, "slow connections of each kind"), "--slow-seconds": (30.0, "how long they are held"),
    "--levels": ("8,32,128", "load concurrency levels"), "--load-seconds": (15.0, "per level and route"),
    "--skip": ("", "phases to skip: corpus,schemathesis,slowloris,load,sigterm,429"),
    "--gunicorn-args": ("", "extra gunicorn flags (GUNICORN_CMD_ARGS), e.g. '--worker-class gthread --threads 4' "
                            "to put the stock worker through the same scenarios"),
    "--out": (srv.REPO / "artifacts" / "bench" / "reliability.json", "the JSON report")}


def envelope(label: str, workdir: Path, env: dict[str, str]) -> srv.Server:
    """The shipped gunicorn with every bundled model in 0.1 vCPU / 256 MB (started by `srv.serving`)."""
    return srv.slimserve(label, workdir, TENTH_VCPU, ENVELOPE_MEMORY, srv.BUNDLED, str(srv.MODELS), env)


def settle(server: srv.Server, limit: float = 90.0) -> dict:
    """With the quota lifted: restart a dead server (3 times at most), wait for /ready and for it to go idle."""
    began, ready, box = time.monotonic(), False, server.sandbox
    box.write("cpu", "cpu.cfs_quota_us", UNLIMITED)  # leftover work and restarts are not what is measured
    try:
        if server.proc.poll() is not None and server.restarts < 3:
            server.restarts += 1
            server.stop()
            server.start()
        while not ready and time.monotonic() - began < limit and server.proc.poll() is None:
            ready = exchange(server.port, "GET", "/ready", timeout=HEALTH_TIMEOUT).status == 200
            time.sleep(0 if ready else 0.2)
        for _ in range(100):  # idle: under 5 ms of CPU in 0.3 s
            before = box.cpu_seconds()
            time.sleep(0.3)
            if box.cpu_seconds() - before < 0.005 or time.monotonic() - began > limit:
                break
    finally:
        box.write("cpu", "cpu.cfs_quota_us", TENTH_VCPU)
    return {"ready": ready, "seconds": round(time.monotonic() - began, 1)}


def measured(server: srv.Server, action: Callable[[], object]) -> tuple[object, dict]:
    """Run `action` from a fresh memory peak: its result, server CPU and peak memory; then settle."""
    box = server.sandbox
    pids, oom, cpu = set(box.pids()), box.oom_kills(), box.cpu_seconds()
    box.write("memory", "memory.max_usage_in_bytes", 0)
    with sampling(box.pids, interval=0.1) as peak:
        result = action()
        row = {"server_cpu_s": round(box.cpu_seconds() - cpu, 3), "peak_pss_mb": round(peak["pss"] / MB, 1),
               "cgroup_peak_mb": round(box.memory_stats()["max_usage_in_bytes"] / MB, 1)}
    row["settle"] = settle(server)  # _total: until idle again (a killed worker's replacement is charged too)
    row["oom_kills"], row["worker_restarted"] = box.oom_kills() - oom, set(box.pids()) != pids
    return result, row | {"server_cpu_s_total": round(box.cpu_seconds() - cpu, 3)}


def run_case(server: srv.Server, case: Case, timeout: float) -> dict:
    """Send one hostile case (`copies` at once), measured, and let the server recover."""
    with ThreadPoolExecutor(case.copies) as pool:
        outcomes, row = measured(server, lambda: list(pool.map(lambda _: exchange(
            server.port, "POST", case.path, case.upload, timeout, case.declared_length), range(case.copies))))
    found = [o.status for o in outcomes]
    return {"name": case.name, "group": case.group, "path": case.path, "bytes": len(case.upload.body),
            "status": found[0] if len(found) == 1 else found, "wall_ms": round(max(o.ms for o in outcomes)),
            "answer": outcomes[0].body[:160].decode(errors="replace"), **row}


def run_schemathesis(server: srv.Server, args: argparse.Namespace, workdir: Path) -> dict:
    """schemathesis against /openapi.json with the project's hooks and config: cases, failures, 5xx in the log."""
    spec = json.loads(exchange(server.port, "GET", "/openapi.json", timeout=30, keep=10**7).body or b"{}")
    operations = sum(1 for item in spec.get("paths", {}).values() for method in item if method in ("get", "post"))
    st, out = ST_VENV / "bin" / "st", workdir / "schemathesis.json"
    if not st.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ST_VENV)], check=True, timeout=300)
        subprocess.run([str(ST_VENV / "bin" / "pip"), "install", "--quiet", SCHEMATHESIS], check=True, timeout=600)
    # Real images for image bodies and 413 counted as a rejection: scripts/conformance, as in CI.
    argv = [str(st), "--config-file", str(CONFORMANCE / "schemathesis.toml"), "run",
            f"http://{HOST}:{server.port}/openapi.json", "--checks", "all", "--max-examples",
            str(math.ceil(args.st_cases / max(operations, 1))), "--workers", "1", "--seed", "1", "--request-timeout",
            "10", "--max-time", str(args.st_seconds), "--no-shrink", "--warnings", "off", "--suppress-health-check",
            "all", "--phases", "examples,coverage,fuzzing", "--report", "json", "--report-json-path", str(out)]
    offset, hooks = server.log.stat().st_size, {"SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                                                "PYTHONPATH": str(CONFORMANCE)}
    try:
        exit_code: int | str = subprocess.run(argv, cwd=CONFORMANCE, capture_output=True, check=False,
                                              timeout=args.st_seconds + 120, env={**os.environ, **hooks}).returncode
    except subprocess.TimeoutExpired:
        exit_code = "timeout"
    found = json.loads(out.read_text()) if out.exists() else {}
    failures = [{k: f.get(k) for k in ("code", "title", "count", "operations")} for f in found.get("failures", [])]
    return {"command": shlex.join(argv), "exit_code": exit_code, "operations": operations,
            "cases_generated": found.get("test_cases", {}).get("generated"), "stop_reason": found.get("stop_reason"),
            "seconds": round(found.get("running_time", 0), 1), "failures": failures,
            "failure_count": sum(f["count"] or 0 for f in failures),
            "access_log_statuses": log_statuses(srv.log_lines(server.log, offset))}


def log_statuses(lines: list[str]) -> dict[str, int]:
    """Status counts of the access-log lines."""
    return dict(sorted(Counter(str(status) for _, status, _ in srv.access_log_lines(lines)).items()))


def slowloris(server: srv.Server, mode: str, upload: Upload, connections: int, seconds: float) -> dict:
    """Slow or lying connections held open while normal clients poll /health and /predict."""
    settle(server)
    held: dict = {}
    found = background(server.port, [Job("health", "/health", (), 0.2, HEALTH_TIMEOUT),
                                     Job("predict", "/predict", (upload,), 0.5, 10.0)],
                       lambda: held.update(hold_slow(server.port, mode, upload, connections, seconds)))
    return {"mode": mode, "connections": connections, "seconds": seconds, "connected": held["connected"],
            "dropped_by_server": len(held["dropped"]), "drop_after_s": stats(held["dropped"]),
            "answers_on_slow_connections": held["answers"],
            **{f"{name}_ms": stats([o.ms for o in found[name]]) for name in found},
            **{f"{name}_statuses": statuses(found[name]) for name in found}}


def load(server: srv.Server, path: str, uploads: list[Upload], concurrency: int, seconds: float) -> dict:
    """`concurrency` clients back to back for `seconds` (each then finishes its request), /health polled beside."""
    settle(server)
    clients = [Job(f"c{n}", path, (uploads[n % len(uploads)],)) for n in range(concurrency)]
    groups = [[Job("health", "/health", (), 0.1, HEALTH_TIMEOUT)], *(clients[i::CLIENT_PROCESSES]
                                                                    for i in range(CLIENT_PROCESSES))]

    def action() -> tuple[dict, float]:
        began = time.monotonic()
        return in_processes(server.port, groups, seconds), time.monotonic() - began

    (found, elapsed), row = measured(server, action)
    health = found.pop("health")
    results = [o for runs in found.values() for o in runs]
    ok, shed = [o.ms for o in results if o.status == 200], [o for o in results if o.status in (503, 429)]
    return {"route": path, "concurrency": concurrency, "seconds": round(elapsed, 1), "requests": len(results),
            "req_per_s_200": round(len(ok) / elapsed, 2), "statuses": statuses(results), "latency_200_ms": stats(ok),
            "shed_ms": stats([o.ms for o in shed]), "shed_with_retry_after": sum(1 for o in shed if o.retry_after),
            "health_ms": stats([o.ms for o in health]), "health_statuses": statuses(health), **row}


def sigterm_under_load(server: srv.Server, uploads: list[Upload], concurrency: int, after: float) -> dict:
    """SIGTERM to the master while clients POST /predict: every request must succeed or be refused."""
    settle(server)
    found, master = {}, server.proc

    def term() -> None:
        time.sleep(after)
        found["sent"] = time.monotonic()
        master.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            master.wait(timeout=40)
        found["exited"] = time.monotonic()

    jobs = [Job(f"c{n}", "/predict", (uploads[n % len(uploads)],)) for n in range(concurrency)]
    outcomes = [o for runs in background(server.port, jobs, term).values() for o in runs]
    never = ("refused", "no connection")
    return {"concurrency": concurrency, "sigterm_after_s": after, "requests": len(outcomes),
            "statuses": statuses(outcomes), "never_accepted": sum(1 for o in outcomes if o.status in never),
            "failed_in_flight": sum(1 for o in outcomes if not isinstance(o.status, int) and o.status not in never),
            "master_exit_code": master.returncode,
            "shutdown_s": round(found["exited"] - found["sent"], 2) if "exited" in found else None}


def goals(report: dict) -> dict:
    """Each goal: value, limit and pass (None when it was not measured)."""
    rows, loads, slow = [r for r in report["corpus"] if "oom_kills" in r], report["load"], report["slowloris"]
    runs = loads + ([report["rate_limited"]] if "rate_limited" in report else [])  # the 429 run sheds too
    answers = {r["name"]: r["status"] if isinstance(r["status"], list) else [r["status"]] for r in rows}
    counted = [Counter(found) for found in answers.values()] + [r["statuses"] for r in runs] + [
        report.get("schemathesis", {}).get("access_log_statuses", {})] + [r[f"{name}_statuses"] for r in slow
                                                                             for name in ("health", "predict")]
    top = max((r["concurrency"] for r in loads), default=None)
    health = [r["health_ms"].get("p99", math.inf) for r in loads if r["concurrency"] == top]
    st = report.get("schemathesis", {})
    values = {"oom_kills": sum(r["oom_kills"] for r in rows + runs) if rows + runs else None,
              "server_errors_5xx": sum(n for found in counted for s, n in found.items() if is_5xx_failure(s))
              if any(counted) else None,
              "refused_cpu_s": max((r["server_cpu_s"] for r in rows if any(
                  isinstance(s, int) and s >= 400 for s in answers[r["name"]])), default=None),
              "shedding_p99_ms": max((r["shed_ms"]["p99"] for r in runs if r["shed_ms"]["n"]), default=None),
              "health_p99_ms": max(health + [r["health_ms"].get("p99", math.inf) for r in slow], default=None),
              "predict_req_per_s": max((r["req_per_s_200"] for r in loads if r["route"] == "/predict"), default=None),
              "sigterm_failed_in_flight": report.get("sigterm", {}).get("failed_in_flight"),
              "schemathesis_failures": st.get("failure_count"), "schemathesis_cases": st.get("cases_generated")}
    unanswered = [name for name, found in answers.items() if not all(isinstance(s, int) for s in found)]
    return judge(values, GOALS, at_least=("predict_req_per_s", "schemathesis_cases")) | {
        "corpus_every_case_answered": {"value": unanswered, "pass": not unanswered if rows else None}}


def is_5xx_failure(status: int | str) -> bool:
    """A 5xx other than 503 (503 + Retry-After is load shedding, allowed); statuses may be counted as text."""
    return str(status).isdigit() and 500 <= int(status) <= 599 and int(status) != 503


def main(argv: list[str] | None = None) -> int:
    """Every phase against one server (a second for the 429 run); write the JSON, print the goals."""
    args = options(__doc__, OPTIONS, argv)
    skip, uploads = set(args.skip.split(",")), load_samples(srv.SAMPLES)
    rows = build_payloads("heart_failure", tabular_manifests(srv.MODELS)["heart_failure"]).singles["invocations"]
    split = json.loads(rows[0].body)["dataframe_split"]  # a real row of the data set
    report = start_report(corpus=[], load=[], slowloris=[], envelope={"models": "all bundled (as shipped)"})
    with tempfile.TemporaryDirectory(prefix="slimserve-reliability-") as tmp:
        server = envelope("main", Path(tmp), {"GUNICORN_CMD_ARGS": args.gunicorn_args} if args.gunicorn_args else {})
        with srv.serving(server, report["envelope"]):
            settle(server, limit=180)
            deadline = time.monotonic() + args.corpus_budget
            for case in corpus(split["columns"], split["data"][0]) if "corpus" not in skip else ():
                report["corpus"].append(run_case(server, case, CASE_TIMEOUT) if time.monotonic() < deadline
                                        else {"name": case.name, "group": case.group, "status": "skipped (time)"})
                print(f"reliability: {case.name}: {report['corpus'][-1]['status']}", file=sys.stderr)
            if "schemathesis" not in skip:
                print("reliability: schemathesis …", file=sys.stderr)
                report["schemathesis"] = run_schemathesis(server, args, Path(tmp))
            for mode in ("headers", "short_body") if "slowloris" not in skip else ():
                print(f"reliability: slowloris {mode} …", file=sys.stderr)
                found = slowloris(server, mode, uploads[0], args.slow_connections, args.slow_seconds)
                report["slowloris"].append(found)
            for path, bodies in (("/predict", uploads), (TABULAR, rows)) if "load" not in skip else ():
                for level in map(int, args.levels.split(",")):
                    print(f"reliability: load {path} c={level} …", file=sys.stderr)
                    report["load"].append(load(server, path, bodies, level, args.load_seconds))
            if "sigterm" not in skip:
                print("reliability: SIGTERM under load …", file=sys.stderr)
                report["sigterm"] = sigterm_under_load(server, uploads, 8, 3.0)
            report["envelope"].update(restarts=server.restarts, oom_kills_total=server.sandbox.oom_kills())
        report["envelope"]["access_log_statuses"] = log_statuses(srv.log_lines(server.log))
        if "429" not in skip:
            print("reliability: rate limits on …", file=sys.stderr)
            limited = envelope("limited", Path(tmp), {"SLIMSERVE_RATE_LIMIT_ENABLED": "1",
                                                      "SLIMSERVE_RATE_LIMIT_PREDICT": "5/second"})
            report["rate_limited"] = {"env": limited.env}
            with srv.serving(limited, report["rate_limited"]):
                settle(limited, limit=180)  # the same clients as the load runs: 429s, their latency and Retry-After
                report["rate_limited"].update(load(limited, "/predict", uploads, 4, 3.0))
    report["goals"] = goals(report)
    report["notes"] = [
        "Figures at 0.1 vCPU; between cases the quota is lifted while the server recovers. server_cpu_s: CPU "
        "charged to the server's cgroup up to the answer (_total: until idle again, a replacement worker included).",
        "Latencies include unanswered requests at the client's timeout (/health: 5 s, as Render's check); load "
        "clients wait a 429/503's Retry-After; server_errors_5xx counts 500-599 except 503 everywhere."]
    write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
