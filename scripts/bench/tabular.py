"""Benchmark the server with every bundled model (X-ray + tabular) in 0.1 vCPU / 256 MB, and against MLflow.

Writes artifacts/bench/tabular.json and tabular.png. Usage: `python scripts/bench/tabular.py --with-mlflow`
(root and a writable cgroup v1 hierarchy are needed for the limits). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from scripts.bench import mlflow_baseline as mlf  # noqa: E402
from scripts.bench import server as srv  # noqa: E402
from scripts.bench.cgroups import CFS_PERIOD_US, Sandbox  # noqa: E402
from scripts.bench.client import Upload, first_200, load_samples  # noqa: E402
from scripts.bench.measure import MB, MemorySampler, tree_cpu_seconds  # noqa: E402
from scripts.bench.report import cpu_probe_ms, machine_facts  # noqa: E402
from scripts.bench.tabular_data import SHARED_DATA, ModelPayloads, build_payloads, tabular_manifests  # noqa: E402
from scripts.bench.tabular_http import series, start_slimserve  # noqa: E402
from scripts.bench.tabular_memory import cache_roots, drop_cache, memory_mb, sandbox_memory  # noqa: E402
from scripts.bench.tabular_report import chart, goals, ratios, summary_lines  # noqa: E402

MODELS = REPO / "artifacts" / "models"
BUNDLED = MODELS / "pneumonia" / "1.0.0" / "model.h5"
HEART_ONLY = MODELS / "heart_failure" / "1.0.0"
SAMPLES = SHARED_DATA / "pneumonia" / "samples"
MEMORY_LIMIT = 256 * MB
TENTH_VCPU = 10_000  # µs of CPU per 100 ms period
COLD_TIMEOUT = 120.0
SERIES_BUDGET = 120.0  # seconds for any one series of requests
PACKAGES = ("mlflow", "scikit-learn", "skl2onnx", "pandas", "uvicorn", "marshmallow", "onnxruntime", "flask")
DEFINITIONS = {
    "model_inference_ms": "`inference_ms` in the answer of POST /models/<name>/predict: perf_counter around the "
                          "ONNX Runtime session.run only (no parsing, validation or serialization)",
    "gunicorn_request_ms": "the server-side figure the latency goals are judged on: gunicorn's own request time "
                           "(access log %(D)s, µs) in the gthread worker, from the parsed request headers to the "
                           "last response byte written - reading the body, Flask, JSON parsing, validation, ONNX "
                           "Runtime and serialization; not TCP accept or header parsing",
    "client_round_trip_ms": "http.client in the benchmark process, a new TCP connection to 127.0.0.1 per request, "
                            "from connect to the last body byte read",
    "in_process_ms": "Flask test_client in a separate process on the same models: the WSGI app alone, no socket, "
                     "no gunicorn (in_process.routes); in_process.stages_* times slimserve's own functions step by "
                     "step (p50)",
}
NOTES = [
    "The page cache of the venv, the stdlib, src, the models (and the MLflow model) is dropped before every server "
    "start, so cold starts read from disk; pages mapped by other processes stay cached.",
    "Servers run one at a time, so PSS is not shared between slimserve and mlflow processes.",
    "slimserve_all_models serves all 8 models and is compared with mlflow serving only heart_failure; "
    "slimserve_heart_only serves heart_failure alone (like for like).",
    "The mlflow server runs without limits: it needs ~565 MB and cannot fit 256 MB (FACTS.md).",
    "slimserve runs the deploy gunicorn config plus one flag, --access-logformat with %(D)s (µs), to read the "
    "server-side time; 'full core' is a CFS quota of 100000/100000 µs with the memory limit still on.",
    "Absolute times drift on this shared VM (the same in-process request took 3.5-6.8 ms across minutes; see "
    "cpu_probe_ms at start/end): compare figures within one run, and ratios across runs.",
]


@dataclass(frozen=True)
class Bench:
    """What every phase shares."""

    payloads: dict[str, ModelPayloads]
    xray: list[Upload]
    repeats: int
    workdir: Path


def stop_reason(server: srv.Server, sandbox: Sandbox) -> str | None:
    """Why waiting for the server is pointless (it exited), else None."""
    if server.proc.poll() is None:
        return None
    oom = sandbox.memory_stats().get("oom_control.oom_kill", 0)
    return f"exited with code {server.proc.returncode}" + (f" after {oom} OOM kill(s)" if oom else "")


def cold_starts(server: srv.Server, sandbox: Sandbox, steps: list[tuple[str, str, str, Upload | None]]) -> dict:
    """Seconds from spawn to the first 200 of each step in turn, with the tree's CPU seconds at that moment."""
    deadline = server.started + COLD_TIMEOUT
    out: dict = {"limit": COLD_TIMEOUT}
    for label, method, path, upload in steps:
        at, seen = first_200(server.port, method, path, upload, deadline, lambda: stop_reason(server, sandbox))
        out[label] = None if at is None else round(at - server.started, 3)
        out[f"cpu_seconds_at_{label}"] = tree_cpu_seconds(server.proc.pid) if at else None
        if at is None:
            out["failed"] = f"{label}: {seen}"
            break
    return out


def model_series(port: int, name: str, p: ModelPayloads, repeats: int, log: Path | None) -> dict:
    """1-row (`repeats` times) and 1,000-row (`repeats // 4` times) series on each route of one model."""
    out = {}
    for route in ("invocations", "predict"):
        singles, bulk = (p.single_split, p.bulk_split) if route == "invocations" else (p.single_records,
                                                                                        p.bulk_records)
        path = f"/models/{name}/{route}"
        out[f"{route}_1_row"] = series(port, path, singles, repeats, time.monotonic() + SERIES_BUDGET, log=log)
        out[f"{route}_1000_rows"] = series(port, path, [bulk], max(1, repeats // 4),
                                           time.monotonic() + SERIES_BUDGET, log=log)
    return out


def exercise(port: int, bench: Bench) -> dict:
    """One 1-row and one 1,000-row request per route and tabular model, and one X-ray: every model has worked."""
    errors = {}
    for name, p in bench.payloads.items():
        result = model_series(port, name, p, 1, None)
        errors.update({f"{name}.{k}": v["errors"] for k, v in result.items() if v["errors"]})
    xray = series(port, "/predict", bench.xray[:1], 1, time.monotonic() + SERIES_BUDGET)
    if xray["errors"]:
        errors["pneumonia./predict"] = xray["errors"]
    return errors


def envelope(bench: Bench, skip_quota: bool, memory_limit: int = MEMORY_LIMIT) -> dict:
    """All models in the memory limit (+ 0.1 vCPU unless skipped): cold start, memory, 0.1 vCPU p50, full core."""
    sandbox = Sandbox(f"slimserve-tabular-{os.getpid()}-envelope", None if skip_quota else TENTH_VCPU, memory_limit)
    sandbox.create()
    cache = drop_cache(cache_roots())
    log = bench.workdir / "envelope.log"
    server = start_slimserve(REPO, BUNDLED, str(MODELS), srv.free_port(), sandbox, log)
    heart = bench.payloads["heart_failure"]
    out: dict = {"command": server.command, "page_cache": cache,
                 "limits": {"cpu_quota_us": sandbox.cpu_quota_us, "cpu_period_us": CFS_PERIOD_US,
                            "memory_mb": memory_limit // MB, "enforced": sandbox.active, "notes": sandbox.notes}}
    after: dict = {}
    try:
        with MemorySampler(server.proc.pid) as sampler:
            out["cold_start_s"] = cold_starts(server, sandbox, [
                ("first_ready_200", "GET", "/ready", None),
                ("first_tabular_200", "POST", "/models/heart_failure/invocations", heart.single_split[0]),
                ("first_xray_200", "POST", "/predict", bench.xray[0])])
            if "failed" not in out["cold_start_s"]:
                out["exercise_errors"] = exercise(server.port, bench)
                after = memory_mb(sampler.sample())
                out["cgroup_peak_mb_after_exercise"] = round(sandbox.memory_stats()["max_usage_bytes"] / MB, 1)
                if not skip_quota:
                    out["tenth_vcpu"] = tenth_vcpu(server, heart, bench.repeats, log)
                sandbox.set_cpu_quota(CFS_PERIOD_US)  # exactly one full core; the memory limit stays
                out["full_core"] = {name: model_series(server.port, name, p, bench.repeats, log)
                                    for name, p in bench.payloads.items()}
            out["memory"] = sandbox_memory(sandbox, sampler, after)
    finally:
        out["exit_code"] = srv.stop(server, sandbox)
        lines = srv.log_lines(log)
        out["worker_boots"], out["log_notable"] = srv.worker_boots(lines), srv.notable(lines)
        sandbox.remove()
    return out


def tenth_vcpu(server: srv.Server, heart: ModelPayloads, repeats: int, log: Path) -> dict:
    """1-row heart_failure invocations at 0.1 vCPU: back to back, then 0.3 s apart (quota refilled)."""
    path = "/models/heart_failure/invocations"
    cpu_before = tree_cpu_seconds(server.proc.pid)
    count = min(50, repeats)
    out = {"back_to_back": series(server.port, path, heart.single_split, count, time.monotonic() + SERIES_BUDGET,
                                  log=log)}
    done = out["back_to_back"]["client_round_trip_ms"]["n"]
    out["server_cpu_ms_per_request"] = round((tree_cpu_seconds(server.proc.pid) - cpu_before) * 1000 / done, 2) \
        if done else None
    out["paced_0.3s"] = series(server.port, path, heart.single_split, min(30, repeats),
                               time.monotonic() + SERIES_BUDGET, pause=0.3, log=log)
    return out


def contender(label: str, bench: Bench, model_dir: Path | None) -> dict:
    """One server without limits (memory cgroup for accounting only) answering heart_failure, measured alone."""
    sandbox = Sandbox(f"slimserve-tabular-{os.getpid()}-{label}", None, None)
    sandbox.create()
    cache = drop_cache(cache_roots(*([model_dir] if model_dir else [])))
    log, port = bench.workdir / f"{label}.log", srv.free_port()
    if label == "mlflow":
        server, path = mlf.start(model_dir, port, sandbox, log), "/invocations"
    else:
        model_path, repository = (BUNDLED, str(MODELS)) if label == "slimserve_all_models" else (HEART_ONLY, "")
        server = start_slimserve(REPO, model_path, repository, port, sandbox, log)
        path = "/models/heart_failure/invocations"
    heart = bench.payloads["heart_failure"]
    out: dict = {"command": server.command, "path": path, "page_cache": cache}
    try:
        with MemorySampler(server.proc.pid) as sampler:
            out["cold_start_s"] = cold_starts(server, sandbox, [("first_invocation_200", "POST", path,
                                                                  heart.single_split[0])])
            if "failed" not in out["cold_start_s"]:
                timing_log = None if label == "mlflow" else log  # uvicorn's access log has no request time
                out["latency"] = {
                    "1_row": series(port, path, heart.single_split, bench.repeats, time.monotonic() + SERIES_BUDGET,
                                    log=timing_log),
                    "1000_rows": series(port, path, [heart.bulk_split], max(1, bench.repeats // 4),
                                        time.monotonic() + SERIES_BUDGET, log=timing_log)}
            out["memory"] = sandbox_memory(sandbox, sampler, memory_mb(sampler.sample()))
    finally:
        out["stop"] = mlf.stop(server, sandbox) if label == "mlflow" else {"exit_code": srv.stop(server, sandbox)}
        sandbox.remove()
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-mlflow", action="store_true", help="also run `mlflow models serve` side by side")
    parser.add_argument("--repeats", type=int, default=200, help="1-row requests per series (1,000 rows: a quarter)")
    parser.add_argument("--skip-envelope", action="store_true",
                        help="no 0.1 vCPU phase: the all-models server starts on a full core (memory limit still on)")
    parser.add_argument("--memory-limit-mb", type=int, default=MEMORY_LIMIT // MB,
                        help="memory limit of the all-models run (256; 128 tests the memory goal directly)")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "tabular.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the phases, then write the JSON and the chart and print a summary."""
    args = build_parser().parse_args(argv)
    if args.out.resolve().name == "envelope.json":
        print("tabular: refusing to overwrite envelope.json", file=sys.stderr)
        return 2
    started = time.monotonic()
    machine = machine_facts(REPO)
    machine["packages"].update({p: metadata.version(p) for p in PACKAGES})
    payloads = {name: build_payloads(name, features) for name, features in tabular_manifests(MODELS).items()}
    report: dict = {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine,
                    "definitions": DEFINITIONS, "notes": NOTES, "repeats": {"1_row": args.repeats,
                                                                          "1000_rows": max(1, args.repeats // 4)},
                    "rows": {n: {"usable": p.rows_available, "skipped": p.rows_skipped} for n, p in payloads.items()}}
    with tempfile.TemporaryDirectory(prefix="slimserve-tabular-") as workdir:
        bench = Bench(payloads, load_samples(SAMPLES), args.repeats, Path(workdir))
        print("tabular: all models in the envelope …", file=sys.stderr, flush=True)
        report["envelope"] = envelope(bench, args.skip_envelope, args.memory_limit_mb * MB)
        if args.with_mlflow:
            model_dir = Path(workdir) / "mlflow_heart_lr"
            report["mlflow_model"] = mlf.save_in_child(SHARED_DATA / "heart_failure" / "heart.csv", model_dir, REPO)
            runs = {}
            for label in ("slimserve_all_models", "mlflow", "slimserve_heart_only"):
                print(f"tabular: {label} (no limits) …", file=sys.stderr, flush=True)
                runs[label] = contender(label, bench, model_dir if label == "mlflow" else None)
            report["comparison"] = {"runs": runs, "ratios": ratios(runs)}
    print("tabular: in-process timings …", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "scripts.bench.tabular_inproc", str(args.repeats)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    report["in_process"] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-2000:]}
    report["goals"] = goals(report)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["machine"].update(loadavg_at_end=[round(x, 2) for x in os.getloadavg()], cpu_probe_ms_at_end=cpu_probe_ms())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    chart(report, args.out.with_suffix(".png"))
    print("\n".join(summary_lines(report)))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
