"""Image envelope: slimserve vs the bare reference app (same model, same run) in 0.1 vCPU / 256 MB."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.bench import server as srv
from scripts.bench.client import Job, Upload, background, load_samples, statuses
from scripts.bench.report import judge, options, pick, ratio, start_report, write
from scripts.bench.sandbox import CFS_PERIOD_US, ENVELOPE_MEMORY, TENTH_VCPU, in_mb, process_memory, stats

BARE_APP = "scripts.bench.bare_app:app"
GOALS = {"peak_pss_mb": 128.0, "peak_rss_mb": 128.0, "cold_start_s": 3.0, "p50_ms": 150.0,
         "cold_start_ratio": 1.15, "cpu_over_bare_ms": 0.5}
NOTES = [
    "bare_envelope: scripts/bench/bare_app.py (Flask + Pillow + numpy + ONNX Runtime, same .onnx, same "
    "preprocessing, nothing else) under the same gunicorn config and limits; the cold starts of the two alternate.",
    "Cold start is CPU-bound: at 0.1 vCPU about 10x the CPU seconds used until the first answer "
    "(cpu_seconds_at_first_predict_200); other load on the machine inflates both (loadavg, cpu_probe_ms).",
    "cpu_ms_per_predict (judged): slimserve and the bare app serve side by side, each in 0.1 vCPU + 256 MB, and "
    "take turns in blocks of back-to-back /predict; each block's CPU (cpuacct) / requests, the median of the "
    "per-block differences is over_bare (a drifting machine shifts both sides of a pair alike). The runs' own "
    "cpu_ms_per_predict is one series each. Variants (--variant) serve beside them and take the same turns; "
    "their over_default_ms is the median per-block difference from slimserve's default. "
    "Throughput runs on one full core.",
]
PACE, CLIENTS, PER_CLIENT = 0.3, 4, 150  # the paced series' pause (s); throughput's clients and requests each


@dataclass(frozen=True)
class RunSpec:
    """What one server run limits and measures."""

    label: str
    cpu_quota_us: int | None = TENTH_VCPU
    memory_limit: int | None = ENVELOPE_MEMORY
    requests: int = 0  # back-to-back /predict after the cold start: latency and CPU ms per /predict
    app: str | None = None  # the bare reference instead of slimserve
    runtime: str = "onnx"
    full: bool = False  # also a paced series and throughput on one full core
    timeout: float = 120.0


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """`NAME:ENV=VAL[,ENV=VAL]` -> (name, env); a value may hold commas (`SLIMSERVE_MODEL_ACCESS=a=key,b=mfa`)."""
    name, _, rest = text.partition(":")
    pairs = re.split(r",(?=[A-Z][A-Z0-9_]*=)", rest)
    if not re.fullmatch(r"[\w-]+", name) or not all(re.match(r"[A-Z][A-Z0-9_]*=", p) for p in pairs):
        raise argparse.ArgumentTypeError(f"expected NAME:ENV=VAL[,ENV=VAL], got {text!r}")
    return name, dict(p.split("=", 1) for p in pairs)


def plan(args: argparse.Namespace) -> list[RunSpec]:
    """Cold starts of slimserve and the bare app alternating (drift hits both alike), then the other runs."""
    run = functools.partial(RunSpec, requests=args.requests)
    runs = [run("slimserve_envelope", full=True),
            run("bare_envelope", app=BARE_APP)]
    for n in range(2, args.cold_repeats + 1):  # the repeats measure the cold start only
        runs += [run(f"slimserve_envelope_cold_{n}", requests=0),
                 run(f"bare_envelope_cold_{n}", app=BARE_APP, requests=0)]
    runs.append(run("slimserve_unlimited", None, None))
    if not args.skip_baseline:
        tf = functools.partial(run, runtime="tensorflow", timeout=240.0)
        runs += [tf("tf_envelope"),  # stalls at the limit or is OOM-killed
                 tf("tf_0.1vcpu_nomemlimit", memory_limit=None, requests=min(args.requests, 20)),
                 tf("tf_unlimited", None, None)]
    return runs


def run_once(spec: RunSpec, args: argparse.Namespace, uploads: list[Upload], workdir: Path) -> dict:
    """One fresh server under `spec`: cold start, then the series it asks for."""
    server = srv.slimserve(spec.label, workdir, spec.cpu_quota_us, spec.memory_limit, args.model_path, app=spec.app,
                           runtime=spec.runtime)
    out: dict = {"server": "bare" if spec.app else f"slimserve ({spec.runtime})"}
    with srv.serving(server, out):
        out["cold_start_s"] = srv.cold_starts(server, [("first_health_200", "GET", "/health", None), (
            "first_predict_200", "POST", "/predict", uploads[0])], spec.timeout)
        out["outcome"] = out["cold_start_s"]["outcome"]
        if out["outcome"] != "ok":
            return out
        out["memory_after_cold_start"] = in_mb(process_memory(server.sandbox.pids()))
        if spec.requests:
            out["latency"] = server.timed("/predict", uploads, spec.requests)
            out["cpu_ms_per_predict"] = out["latency"]["cpu_ms_per_request"]
        if spec.full and spec.requests:
            out["latency_paced"] = server.timed("/predict", uploads, spec.requests, PACE)
        if spec.full:
            server.sandbox.write("cpu", "cpu.cfs_quota_us", CFS_PERIOD_US)  # one full core; the memory limit stays
            jobs = [Job(f"c{n}", "/predict", (*uploads[n:], *uploads[:n]), count=PER_CLIENT) for n in range(CLIENTS)]
            began = time.monotonic()
            found = [o for runs in background(server.port, jobs, seconds=60.0).values() for o in runs]
            ok, seconds = [o.ms for o in found if o.status == 200], time.monotonic() - began
            out["throughput"] = {"clients": CLIENTS, "requests_per_s": round(len(ok) / seconds, 2),
                                 "seconds": round(seconds, 2), "client_ms": stats(ok), "statuses": statuses(found)}
    return out


def variant_env(model: str, env: dict[str, str]) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """A variant's env and the headers its clients send: SLIMSERVE_API_KEYS=auto makes a fresh key for `model`."""
    if env.get("SLIMSERVE_API_KEYS") != "auto":
        return env, ()
    argv = [sys.executable, "-m", "slimserve", "keys", "create", "--name", "bench", "--models", model]
    created = json.loads(subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout)
    return {**env, "SLIMSERVE_API_KEYS": created["entry"]}, (("X-API-Key", created["key"]),)


def paired_cpu(args: argparse.Namespace, uploads: list[Upload], workdir: Path) -> dict:
    """slimserve, the bare app and each variant side by side in the envelope, taking turns in blocks: CPU ms per
    /predict."""
    model = json.loads(args.model_path.with_name("manifest.json").read_text())["name"]
    sides = {"slimserve": (None, {}, ()), "bare": (BARE_APP, {}, ()),
             **{f"variant_{name}": (None, *variant_env(model, env)) for name, env in args.variant}}
    servers = {name: srv.slimserve(f"paired_{name}", workdir, TENTH_VCPU, ENVELOPE_MEMORY, args.model_path, "", env,
                                   app) for name, (app, env, _) in sides.items()}
    sent = {name: [u._replace(headers=headers) for u in uploads] for name, (_, _, headers) in sides.items()}
    out: dict = {"blocks": args.cpu_blocks, "requests_per_block": args.cpu_block_requests, "servers": {}}
    blocks: dict[str, list[float]] = {name: [] for name in servers}
    with contextlib.ExitStack() as stack:
        for name, server in servers.items():
            stack.enter_context(srv.serving(server, out["servers"].setdefault(name, {"env": sides[name][1]})))
        for name, server in servers.items():
            started = srv.cold_starts(server, [("first_predict_200", "POST", "/predict", sent[name][0])], 120.0)
            if started["outcome"] != "ok":
                return out | {"outcome": f"{name}: {started['observed']}"}
            server.timed("/predict", sent[name], 1, access_log=False, warmup=5)  # first-use work is not per request
        for block in range(args.cpu_blocks):
            for name in list(servers) if block % 2 == 0 else list(servers)[::-1]:
                series = servers[name].timed("/predict", sent[name], args.cpu_block_requests, access_log=False,
                                             warmup=0)
                blocks[name].append(series["cpu_ms_per_request"])
    return out | {"outcome": "ok"} | compare_blocks(blocks)


def compare_blocks(blocks: dict[str, list[float]]) -> dict:
    """Per-block CPU ms of each server, paired by block: each one's median, the median (and range) of slimserve −
    bare over the pairs, and of each variant − slimserve."""
    def over(a: str, b: str) -> list[float]:
        return [x - y for x, y in zip(blocks[a], blocks[b], strict=True)]

    differences = over("slimserve", "bare")
    return {"per_block_ms": blocks, **{name: round(statistics.median(values), 3) for name, values in blocks.items()},
            "over_bare": round(statistics.median(differences), 3),
            "over_bare_range": [round(min(differences), 3), round(max(differences), 3)],
            "variants_over_default": {name.removeprefix("variant_"): round(statistics.median(
                over(name, "slimserve")), 3) for name in blocks if name.startswith("variant_")}}


def summarize(report: dict) -> None:
    """Fold the cold-start repeats into a median; compare slimserve with the bare app; the variants; the goals."""
    runs = report["runs"]
    for label in [k for k in runs if "_cold_" not in k]:
        repeats = [runs[label], *(runs.pop(k) for k in list(runs) if k.startswith(f"{label}_cold_"))]
        if len(repeats) > 1:
            values = [pick(run, "cold_start_s", "first_predict_200") for run in repeats]
            runs[label]["cold_start_s"].update(repeats=values, first_predict_200_median=None if None in values else
                                               statistics.median(values))
    pair = {k: runs.get(f"{k}_envelope") for k in ("slimserve", "bare")}
    cold = {k: pick(run, "cold_start_s", "first_predict_200_median") for k, run in pair.items()}
    cpu = {k: pick(run, "cpu_ms_per_predict") for k, run in pair.items()}
    report["cold_start_median_s"], report["cold_start_ratio"] = cold, ratio(cold["slimserve"], cold["bare"], 3)
    paired = report.get("paired_cpu", {})
    report["cpu_ms_per_predict"] = {k: paired.get(k) for k in ("slimserve", "bare", "over_bare")} | {
        "ratio": ratio(paired.get("slimserve"), paired.get("bare"), 3),
        "single_series": {**cpu, "over_bare": difference(cpu["slimserve"], cpu["bare"])}}
    report["variants"] = {name: {"env": pick(paired, "servers", f"variant_{name}", "env"), "cpu_ms_per_predict":
                                 paired.get(f"variant_{name}"), "over_default_ms": over}
                          for name, over in paired.get("variants_over_default", {}).items()}
    values = {k: pick(pair["slimserve"], "memory", k) for k in ("peak_pss_mb", "peak_rss_mb")} | {
        "cold_start_s": cold["slimserve"], "p50_ms": pick(pair["slimserve"], "latency", "client_ms", "p50"),
        "cold_start_ratio": report["cold_start_ratio"], "cpu_over_bare_ms": report["cpu_ms_per_predict"]["over_bare"]}
    report["goals"] = judge(values, GOALS)


def difference(a: float | None, b: float | None) -> float | None:
    """a - b in ms, or None when either is missing."""
    return None if a is None or b is None else round(a - b, 3)


OPTIONS = {
    "--model-path": (srv.BUNDLED, "the .h5 (manifest and .onnx beside)"),
    "--requests": (50, "back-to-back /predict per run"),
    "--cold-repeats": {"type": int, "default": 3, "choices": range(2, 10), "metavar": "2-9",
                       "help": "cold starts of each of slimserve and the bare app (their median is judged)"},
    "--cpu-blocks": (10, "blocks per server in the side-by-side CPU comparison (0: none)"),
    "--cpu-block-requests": (20, "back-to-back /predict per block"), "--skip-baseline": (False, "no TensorFlow runs"),
    "--variant": {"type": parse_variant, "action": "append", "default": [], "metavar": "NAME:ENV=VAL[,ENV=VAL]",
                  "help": "one more slimserve with env overrides in the side-by-side blocks: CPU ms per /predict vs "
                          "the default (SLIMSERVE_API_KEYS=auto: a fresh key for the model, sent as X-API-Key)"},
    "--out": (srv.REPO / "artifacts" / "bench" / "envelope.json", "the JSON report")}


def main(argv: list[str] | None = None) -> int:
    """Run every planned run, then write the JSON."""
    args = options(__doc__, OPTIONS, argv)
    args.model_path = args.model_path.resolve()
    if args.variant and not args.cpu_blocks:  # variants are measured only in the side-by-side blocks
        raise SystemExit("envelope: --variant needs --cpu-blocks > 0")
    if not args.model_path.with_suffix(".onnx").is_file():
        raise SystemExit(f"envelope: need {args.model_path.with_suffix('.onnx')} (python -m slimserve compile)")
    uploads = load_samples(srv.SAMPLES)
    report = start_report(model=str(args.model_path), samples=[u.name for u in uploads], notes=NOTES, runs={})
    with tempfile.TemporaryDirectory(prefix="slimserve-bench-") as workdir:
        for spec in plan(args):
            print(f"envelope: {spec.label} …", file=sys.stderr, flush=True)
            report["runs"][spec.label] = run = run_once(spec, args, uploads, Path(workdir))
            print(f"envelope: {spec.label}: {run['outcome']}", file=sys.stderr)
        if args.cpu_blocks:
            print("envelope: slimserve and the bare app side by side, CPU per /predict …", file=sys.stderr, flush=True)
            report["paired_cpu"] = paired_cpu(args, uploads, Path(workdir))
    summarize(report)
    write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
