"""Machine facts, TF/ONNX ratios, goals, the JSON report and the bar chart."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

# Memory is judged twice: on summed PSS (fair share; other processes on the machine mapping the same
# libraries make it read low) and on summed RSS (an upper bound: master and worker share pages, counted
# twice). The cgroup peak also holds reclaimable page cache, so it is reported, not judged.
GOALS = {"peak_pss_mb": 128.0, "peak_rss_mb": 128.0, "cold_start_s": 3.0, "p50_ms": 150.0}
NOTES = [
    "Cold start is CPU-bound: at 0.1 vCPU it is about 10x the CPU seconds used until the first answer "
    "(cold_start_s.cpu_seconds_at_predict); other load on the machine inflates both (see loadavg).",
    "reference_bare_flask is a Flask + Pillow + numpy app with no model under the same gunicorn config and "
    "limits: the framework's floor on this machine at this time.",
    "The page cache of the venv, the stdlib, src and the model is dropped before every run, but pages that "
    "other processes map stay cached and are charged to them (page_cache.largest_still_cached).",
    "Back-to-back requests at 0.1 vCPU use up the 10 ms-per-100 ms quota and wait for the next period, so "
    "latency is bimodal (a few ms or ~95 ms); latency_paced spaces requests out as sparse traffic would.",
    "CPU time itself varies with the host: on a shared VM the same work took up to 1.5x the CPU time within "
    "an hour; cpu_probe_ms (a fixed pure-Python loop) at start and end shows how fast the machine was.",
    "tf_envelope stops at the first OOM kill; tf_0.1vcpu_nomemlimit and tf_unlimited give TensorFlow's "
    "figures without the memory limit and without any limit.",
]
PACKAGES = ("onnxruntime", "tensorflow-cpu", "tensorflow", "keras", "gunicorn", "flask", "numpy", "pillow")


def cpu_model(cpuinfo: str) -> str | None:
    """The first `model name` in /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return None


def _version(package: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(repo: Path, *args: str) -> str | None:
    """Output of a read-only git command, or None."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_probe_ms(loops: int = 2_000_000) -> float:
    """CPU ms of a fixed pure-Python loop: how fast this (possibly shared, throttled) machine is right now."""
    started = time.process_time()
    total = 0
    for i in range(loops):
        total += i
    return round((time.process_time() - started) * 1000, 1)


def machine_facts(repo: Path) -> dict[str, Any]:
    """CPU, cores, kernel, Python and package versions, git commit and the load from other processes."""
    status = _git(repo, "status", "--porcelain")
    return {
        "cpu_model": cpu_model(Path("/proc/cpuinfo").read_text()),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES if _version(name)},
        "git_commit": _git(repo, "rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_probe_ms_at_start": cpu_probe_ms(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def pick(run: dict | None, *keys: str) -> Any:
    """Nested lookup that yields None when any level is missing."""
    value: Any = run
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def ratio(numerator: Any, denominator: Any) -> float | None:
    """numerator / denominator rounded to 0.1, or None when either is missing or zero."""
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float) or not denominator:
        return None
    return round(numerator / denominator, 1)


def ratios(runs: dict[str, dict]) -> dict[str, Any]:
    """TF/ONNX ratios, each comparing runs made under the same limits."""
    pairs = {
        "peak_pss_unlimited": (("tf_unlimited", "onnx_unlimited"), ("memory", "peak_pss_mb")),
        # Private (anonymous) memory does not depend on which other processes map the same libraries.
        "peak_pss_anon_unlimited": (("tf_unlimited", "onnx_unlimited"), ("memory", "peak_pss_anon_mb")),
        "cgroup_peak_unlimited": (("tf_unlimited", "onnx_unlimited"), ("memory", "cgroup_peak_mb")),
        "cold_start_unlimited": (("tf_unlimited", "onnx_unlimited"), ("cold_start_s", "first_predict_200")),
        "cold_start_0.1vcpu": (("tf_0.1vcpu_nomemlimit", "onnx_envelope"), ("cold_start_s", "first_predict_200")),
        "p50_unlimited": (("tf_unlimited", "onnx_unlimited"), ("latency", "client_ms", "p50")),
        "p50_0.1vcpu": (("tf_0.1vcpu_nomemlimit", "onnx_envelope"), ("latency", "client_ms", "p50")),
    }
    out: dict[str, Any] = {}
    for name, ((tf, onnx), keys) in pairs.items():
        out[name] = {"tf_over_onnx": ratio(pick(runs.get(tf), *keys), pick(runs.get(onnx), *keys)),
                     "runs": [tf, onnx]}
    return out


def goals(onnx: dict | None) -> dict[str, Any]:
    """Each goal with the ONNX in-envelope value and pass/fail (None when not measured under the limits).

    Cold start is judged on the median of the repeated cold starts; memory on the main run (which also
    carries the concurrent throughput phase, the worst case for memory).
    """
    values = {
        "peak_pss_mb": pick(onnx, "memory", "peak_pss_mb"),
        "peak_rss_mb": pick(onnx, "memory", "peak_rss_mb"),
        "cold_start_s": pick(onnx, "cold_start_s", "first_predict_200_median"),
        "p50_ms": pick(onnx, "latency", "client_ms", "p50"),
    }
    enforced = bool(pick(onnx, "limits", "enforced"))
    return {name: {"limit": limit, "value": values[name],
                   "pass": (values[name] <= limit) if enforced and values[name] is not None else None}
            for name, limit in GOALS.items()}


COLORS = {"onnx": "#2b7bba", "tensorflow": "#d95f02"}
SHORT_NAMES = {"onnx_envelope": "ONNX\n0.1 vCPU\n256 MB", "onnx_unlimited": "ONNX\nunlimited",
               "reference_bare_flask": "bare Flask\n0.1 vCPU\n256 MB", "tf_envelope": "TF\n0.1 vCPU\n256 MB",
               "tf_0.1vcpu_nomemlimit": "TF\n0.1 vCPU\nno mem limit", "tf_unlimited": "TF\nunlimited"}


def chart(runs: dict[str, dict], path: Path) -> None:
    """A small bar chart: peak PSS, cold start (median if repeated) and p50 for every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("peak PSS (MB)", ("memory", "peak_pss_mb"), GOALS["peak_pss_mb"]),
               ("cold start to first /predict (s)", ("cold_start_s", "first_predict_200"), GOALS["cold_start_s"]),
               ("p50 /predict (ms)", ("latency", "client_ms", "p50"), GOALS["p50_ms"])]
    labels = list(runs)
    colors = [COLORS.get(runs[k]["runtime"], "#999999") for k in labels]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    for ax, (title, keys, goal) in zip(axes, metrics, strict=True):
        values = [pick(runs[k], *keys) for k in labels]
        if keys[0] == "cold_start_s":
            values = [pick(runs[k], "cold_start_s", "first_predict_200_median") or v for k, v in zip(labels, values,
                                                                                                    strict=True)]
        heights = [v if isinstance(v, int | float) else 0 for v in values]
        bars = ax.bar(range(len(labels)), heights, color=colors)
        top = max([*heights, goal]) or 1
        for bar, value, label in zip(bars, values, labels, strict=True):
            outcome = runs[label].get("outcome", "n/a")
            text = f"{value:g}" if isinstance(value, int | float) else outcome
            if outcome != "ok" and isinstance(value, int | float):
                text += f"\n({outcome})"
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + top * 0.01, text, ha="center",
                    va="bottom", fontsize=7)
        ax.axhline(goal, color="green", linestyle="--", linewidth=1)
        ax.set_title(f"{title}\ngoal ≤ {goal:g} for ONNX in 0.1 vCPU + 256 MB", fontsize=9)
        ax.set_xticks(range(len(labels)), [SHORT_NAMES.get(k, k) for k in labels], fontsize=6.5)
        ax.set_ylim(0, top * 1.2)
    fig.suptitle("slimserve envelope: ONNX Runtime (blue), TensorFlow baseline (orange), bare Flask reference (grey)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary_lines(runs: dict[str, dict], ratio_table: dict, goal_table: dict) -> list[str]:
    """A plain-text table for the terminal (cold start: the median where it was repeated)."""
    lines = [f"{'run':24} {'outcome':9} {'health s':>8} {'predict s':>9} {'PSS MB':>7} {'anon':>6} {'cg peak':>8} "
             f"{'p50 ms':>7} {'p95 ms':>7} {'inf ms':>7} {'req/s':>6}"]
    for label, run in runs.items():
        predict_s = pick(run, "cold_start_s", "first_predict_200_median") or pick(run, "cold_start_s",
                                                                                 "first_predict_200")
        cells = [pick(run, "cold_start_s", "first_health_200"), predict_s,
                 pick(run, "memory", "peak_pss_mb"), pick(run, "memory", "peak_pss_anon_mb"),
                 pick(run, "memory", "cgroup_peak_mb"),
                 pick(run, "latency", "client_ms", "p50"), pick(run, "latency", "client_ms", "p95"),
                 pick(run, "latency", "server_inference_ms", "p50"), pick(run, "throughput", "requests_per_s")]
        shown = ["-" if c is None else f"{c:g}" for c in cells]
        lines.append(f"{label:24} {run.get('outcome', '?'):9} {shown[0]:>8} {shown[1]:>9} {shown[2]:>7} "
                     f"{shown[3]:>6} {shown[4]:>8} {shown[5]:>7} {shown[6]:>7} {shown[7]:>7} {shown[8]:>6}")
    onnx = runs.get("onnx_envelope")
    cpu_ms = pick(onnx, "latency", "server_cpu_ms_per_request")
    if cpu_ms:
        paced = pick(onnx, "latency_paced", "client_ms") or {}
        lines.append(f"onnx_envelope: {cpu_ms:g} ms server CPU per request (≈ {100 / cpu_ms:.0f} req/s at 0.1 vCPU)"
                     + (f"; paced p50 {paced['p50']} ms, p95 {paced['p95']} ms" if paced.get("n") else ""))
    lines.append("ratios TF/ONNX: " + ", ".join(f"{k} {v['tf_over_onnx']}" for k, v in ratio_table.items()))
    lines.append("goals: " + ", ".join(f"{k} {v['value']} (≤ {v['limit']:g}): "
                                       f"{ {True: 'PASS', False: 'FAIL', None: 'n/a'}[v['pass']]}"
                                       for k, v in goal_table.items()))
    return lines
