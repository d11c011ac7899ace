"""Benchmark the real gunicorn server in a 0.1 vCPU / 256 MB cgroup, against the TensorFlow baseline.

Writes artifacts/bench/envelope.json and envelope.png. Usage: `python -m scripts.bench.envelope`
(root and a writable cgroup v1 hierarchy are needed for the limits; without them the runs are unlimited
and the report says so).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from scripts.bench.client import load_samples  # noqa: E402
from scripts.bench.phases import Context, RunSpec, run_once  # noqa: E402
from scripts.bench.report import (  # noqa: E402
    NOTES,
    chart,
    cpu_probe_ms,
    goals,
    machine_facts,
    pick,
    ratios,
    summary_lines,
)

BUNDLED = REPO / "artifacts" / "models" / "pneumonia" / "1.0.0" / "model.h5"
SAMPLES = REPO.parent / "shared" / "data" / "pneumonia" / "samples"
MEMORY_LIMIT = 256 * 1024 * 1024
TENTH_VCPU = 10_000  # µs of CPU per 100 ms period
COLD_REPEAT = "onnx_envelope_cold_"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, default=BUNDLED, help="the .h5 (with manifest and .onnx)")
    parser.add_argument("--model-repository", default="",
                        help="MODEL_REPOSITORY for the server (default empty: serve --model-path alone)")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder of JPEG X-rays")
    parser.add_argument("--requests", type=int, default=50, help="sequential /predict requests per run")
    parser.add_argument("--pace", type=float, default=0.3,
                        help="pause (s) between requests of the second, paced ONNX latency series (0: skip it)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent clients for throughput")
    parser.add_argument("--per-thread", type=int, default=150, help="requests per client for throughput")
    parser.add_argument("--cold-repeats", type=int, default=3,
                        help="ONNX envelope cold starts in all (each a fresh server after a cache drop)")
    parser.add_argument("--timeout", type=float, default=120.0, help="cold-start limit for ONNX runs (s)")
    parser.add_argument("--baseline-timeout", type=float, default=240.0, help="cold-start limit for TF runs (s)")
    parser.add_argument("--skip-baseline", action="store_true", help="only the ONNX runs")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one per run)")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench" / "envelope.json")
    return parser


def plan(args: argparse.Namespace) -> list[RunSpec]:
    """The runs: ONNX in the envelope (+ cold-start repeats) and unlimited, the bare reference, TF three ways."""
    runs = [
        RunSpec("onnx_envelope", "onnx", TENTH_VCPU, MEMORY_LIMIT, args.timeout, args.requests,
                throughput=(args.threads, args.per_thread), paced_pause=args.pace),
    ]
    # One cold start is a noisy sample: repeat it (cold start only) and judge the goal on the median.
    runs += [RunSpec(f"{COLD_REPEAT}{n}", "onnx", TENTH_VCPU, MEMORY_LIMIT, args.timeout, 0)
             for n in range(2, args.cold_repeats + 1)]
    runs.append(RunSpec("onnx_unlimited", "onnx", None, None, args.timeout, args.requests))
    # The floor on this machine today: bare Flask + Pillow + numpy under the same gunicorn config and limits.
    runs.append(RunSpec("reference_bare_flask", "none", TENTH_VCPU, MEMORY_LIMIT, args.timeout, args.requests,
                        app="scripts.bench.bare_app:app"))
    if not args.skip_baseline:
        # Expected to stall or be OOM-killed; stopping at the first OOM kill keeps the run short.
        runs.append(RunSpec("tf_envelope", "tensorflow", TENTH_VCPU, MEMORY_LIMIT, args.baseline_timeout,
                            args.requests, stop_on_oom=True))
        # Separates the two limits: is it the CPU or the memory that TensorFlow cannot live with?
        runs.append(RunSpec("tf_0.1vcpu_nomemlimit", "tensorflow", TENTH_VCPU, None, args.baseline_timeout,
                            min(args.requests, 20)))
        runs.append(RunSpec("tf_unlimited", "tensorflow", None, None, args.baseline_timeout, args.requests))
    return runs


def fold_cold_repeats(report: dict) -> None:
    """Move the cold-start-only runs into the ONNX envelope run as `cold_start_s.repeats` and a median."""
    main_run = report["runs"].get("onnx_envelope")
    extra = [report["runs"].pop(k) for k in list(report["runs"]) if k.startswith(COLD_REPEAT)]
    if main_run is None:
        return
    keys = ("first_health_200", "first_predict_200", "cpu_seconds_at_predict")
    rows = [{k: pick(run, "cold_start_s", k) for k in keys} | {"outcome": run.get("outcome"),
            "peak_pss_mb": pick(run, "memory", "peak_pss_mb"), "cgroup_peak_mb": pick(run, "memory", "cgroup_peak_mb")}
            for run in [main_run, *extra]]
    cold = main_run["cold_start_s"]
    cold["repeats"] = rows
    values = [row["first_predict_200"] for row in rows]
    cold["first_predict_200_median"] = None if None in values else round(statistics.median(values), 2)


def main(argv: list[str] | None = None) -> int:
    """Run every planned run, then write the JSON and the chart and print a summary."""
    args = build_parser().parse_args(argv)
    model_path = args.model_path.resolve()
    if not model_path.is_file() or not model_path.with_suffix(".onnx").is_file():
        print(f"envelope: need {model_path} and its compiled .onnx (python -m slimserve compile …)", file=sys.stderr)
        return 2
    report: dict = {"command": shlex.join([sys.executable, *sys.argv]), "machine": machine_facts(REPO),
                    "model": {"path": str(model_path), "bytes_h5": model_path.stat().st_size,
                              "bytes_onnx": model_path.with_suffix(".onnx").stat().st_size},
                    "envelope": {"cpu_quota_us": TENTH_VCPU, "cpu_period_us": 100_000,
                                 "memory_limit_mb": MEMORY_LIMIT >> 20, "swap": "limited to the same (memsw)"},
                    "samples": {"folder": str(args.samples.resolve())}, "runs": {}}
    uploads = load_samples(args.samples)
    report["samples"]["files"] = [u.name for u in uploads]
    if os.geteuid() != 0:
        report["note"] = "not root: cgroups are probably not writable, runs will be unlimited"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slimserve-bench-") as workdir:
        ctx = Context(REPO, model_path, uploads, args.port, Path(workdir), args.model_repository)
        for spec in plan(args):
            print(f"envelope: {spec.label} …", file=sys.stderr, flush=True)
            report["runs"][spec.label] = run_once(spec, ctx)
            run = report["runs"][spec.label]
            print(f"envelope: {spec.label}: {run.get('outcome')}", file=sys.stderr)
            for note in run["limits"]["notes"]:
                print(f"envelope: NOTE {spec.label}: {note}", file=sys.stderr)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["cpu_probe_ms_at_end"] = cpu_probe_ms()
    fold_cold_repeats(report)
    report["notes"] = NOTES
    bare = pick(report["runs"].get("reference_bare_flask"), "cold_start_s", "first_predict_200")
    onnx_cold = pick(report["runs"].get("onnx_envelope"), "cold_start_s", "first_predict_200_median")
    report["cold_start_context"] = {"bare_flask_reference_s": bare, "onnx_envelope_median_s": onnx_cold,
                                    "slimserve_over_bare_s": round(onnx_cold - bare, 2) if bare and onnx_cold
                                    else None}
    report["ratios"] = ratios(report["runs"])
    report["goals"] = goals(report["runs"].get("onnx_envelope"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    chart(report["runs"], args.out.with_suffix(".png"))
    print("\n".join(summary_lines(report["runs"], report["ratios"], report["goals"])))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
