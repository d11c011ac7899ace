"""Goals, slimserve-vs-MLflow ratios, the chart and the terminal table of the tabular benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.bench.report import pick, ratio

GOALS = {"peak_memory_mb": 128.0, "one_row_ms": 2.0, "thousand_rows_ms": 5.0, "faster_than_mlflow_x": 3.0,
         "smaller_than_mlflow_x": 4.0}
# Each ratio is mlflow / slimserve of the same figure, measured the same way in the same run.
RATIO_FIGURES = {
    "peak_pss_mb": ("memory", "peak_pss_mb"),
    "peak_rss_mb": ("memory", "peak_rss_mb"),
    "pss_after_exercise_mb": ("memory", "after_exercise", "pss"),
    "rss_after_exercise_mb": ("memory", "after_exercise", "rss"),
    "cgroup_peak_mb": ("memory", "cgroup_peak_mb"),
    "cold_start_s": ("cold_start_s", "first_invocation_200"),
    "p50_1_row_ms": ("latency", "1_row", "client_round_trip_ms", "p50"),
    "p50_1000_rows_ms": ("latency", "1000_rows", "client_round_trip_ms", "p50"),
    "p95_1_row_ms": ("latency", "1_row", "client_round_trip_ms", "p95"),
    "p95_1000_rows_ms": ("latency", "1000_rows", "client_round_trip_ms", "p95"),
}
SERVER_SIDE = ("gunicorn_request_ms", "p50")


def ratios(runs: dict[str, dict], baseline: str = "mlflow") -> dict[str, dict[str, float | None]]:
    """For every slimserve run: mlflow / slimserve of each figure in RATIO_FIGURES."""
    reference = runs.get(baseline)
    return {label: {name: ratio(pick(reference, *keys), pick(run, *keys)) for name, keys in RATIO_FIGURES.items()}
            for label, run in runs.items() if label != baseline}


def judged(value: Any, limit: float, at_least: bool = False, valid: bool = True) -> dict[str, Any]:
    """One goal line: limit, value and pass (None when not measured or not under the required conditions)."""
    ok = None
    if valid and isinstance(value, int | float):
        ok = value >= limit if at_least else value <= limit
    return {"limit": limit, "value": value, "pass": ok}


def worst_latency(full_core: dict[str, dict], series: str) -> tuple[str | None, float | None]:
    """The model with the highest server-side p50 for a series (e.g. invocations_1_row), and that p50."""
    found = [(pick(r, series, *SERVER_SIDE), m) for m, r in full_core.items() if pick(r, series, *SERVER_SIDE)]
    if not found:
        return None, None
    value, model = max(found)
    return model, value


def goals(report: dict) -> dict[str, Any]:
    """Every goal of the issue with its value and pass/fail."""
    env = report.get("envelope") or {}
    enforced = bool(pick(env, "limits", "enforced")) and pick(env, "limits", "memory_mb") is not None
    out: dict[str, Any] = {}
    for key in ("peak_pss_mb", "peak_rss_mb", "cgroup_peak_mb"):
        out[f"whole_server_{key}"] = judged(pick(env, "memory", key), GOALS["peak_memory_mb"], valid=enforced)
    full_core = env.get("full_core") or {}
    for route in ("invocations", "predict"):
        for series, limit in (("1_row", GOALS["one_row_ms"]), ("1000_rows", GOALS["thousand_rows_ms"])):
            model, value = worst_latency(full_core, f"{route}_{series}")
            out[f"{route}_{series}_server_side_ms"] = {**judged(value, limit), "worst_model": model,
                                                       "per_model": {m: pick(r, f"{route}_{series}", *SERVER_SIDE)
                                                                     for m, r in full_core.items()}}
    versus = pick(report, "comparison", "ratios", "slimserve_all_models") or {}
    for name in ("p50_1_row_ms", "p50_1000_rows_ms", "cold_start_s"):
        out[f"faster_than_mlflow_{name}"] = judged(versus.get(name), GOALS["faster_than_mlflow_x"], at_least=True)
    for name in ("peak_pss_mb", "peak_rss_mb"):
        out[f"smaller_than_mlflow_{name}"] = judged(versus.get(name), GOALS["smaller_than_mlflow_x"], at_least=True)
    return out


def chart(report: dict, path: Path) -> None:
    """Three panels: envelope memory vs the goal, per-model server-side p50, slimserve vs MLflow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    env = report.get("envelope") or {}
    keys = [("peak PSS", "peak_pss_mb"), ("peak RSS", "peak_rss_mb"), ("cgroup peak\n(incl. page cache)",
                                                                         "cgroup_peak_mb")]
    _bars(axes[0], [k for k, _ in keys], [pick(env, "memory", key) for _, key in keys], "#2b7bba", "MB")
    axes[0].axhline(GOALS["peak_memory_mb"], color="green", linestyle="--", linewidth=1)
    axes[0].set_title(f"all 8 models, 0.1 vCPU + {pick(env, 'limits', 'memory_mb')} MB: memory (MB)\n"
                      "goal ≤ 128 MB (dashed)", fontsize=9)

    full_core = env.get("full_core") or {}
    models = list(full_core)
    width = 0.38
    for offset, series, color in ((-width / 2, "invocations_1_row", "#7fb8e0"),
                                  (width / 2, "invocations_1000_rows", "#2b7bba")):
        values = [pick(full_core[m], series, *SERVER_SIDE) or 0 for m in models]
        bars = axes[1].bar([i + offset for i in range(len(models))], values, width, color=color, label=series)
        for bar, value in zip(bars, values, strict=True):
            axes[1].text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{value:.1f}", ha="center",
                         va="bottom", fontsize=6)
    axes[1].axhline(GOALS["one_row_ms"], color="#7fb8e0", linestyle="--", linewidth=1)
    axes[1].axhline(GOALS["thousand_rows_ms"], color="green", linestyle="--", linewidth=1)
    axes[1].set_xticks(range(len(models)), [m.replace("modelo_", "") for m in models], fontsize=7, rotation=20)
    axes[1].set_title("server-side p50 (gunicorn request time), 1 vCPU\ngoals: 1 row ≤ 2 ms, 1,000 rows ≤ 5 ms",
                      fontsize=9)
    axes[1].legend(fontsize=7)

    shown = [("PSS", "peak_pss_mb"), ("RSS", "peak_rss_mb"), ("cold start", "cold_start_s"),
             ("p50 1 row", "p50_1_row_ms"), ("p50 1k rows", "p50_1000_rows_ms")]
    versus = pick(report, "comparison", "ratios") or {}
    for n, (label, color) in enumerate((("slimserve_all_models", "#2b7bba"), ("slimserve_heart_only", "#7fb8e0"))):
        values = [pick(versus, label, key) for _, key in shown]
        xs = [i + (n - 0.5) * 0.38 for i in range(len(shown))]
        bars = axes[2].bar(xs, [v or 0 for v in values], 0.38, color=color, label=f"mlflow / {label}")
        for bar, value in zip(bars, values, strict=True):
            axes[2].text(bar.get_x() + bar.get_width() / 2, bar.get_height(), "n/a" if value is None else f"{value:g}×",
                         ha="center", va="bottom", fontsize=7)
    axes[2].axhline(GOALS["faster_than_mlflow_x"], color="green", linestyle="--", linewidth=1)
    axes[2].axhline(GOALS["smaller_than_mlflow_x"], color="purple", linestyle=":", linewidth=1)
    axes[2].set_xticks(range(len(shown)), [name for name, _ in shown], fontsize=8)
    axes[2].set_title("mlflow models serve ÷ slimserve, heart_failure, no limits\n"
                      "goals: ≥ 3× faster (dashed), ≥ 4× smaller (dotted)", fontsize=9)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _bars(ax: Any, labels: list[str], values: list[Any], color: str, unit: str) -> None:
    """Labelled bars (missing values drawn as 0 and marked n/a)."""
    heights = [v if isinstance(v, int | float) else 0 for v in values]
    bars = ax.bar(range(len(labels)), heights, color=color)
    for bar, value in zip(bars, values, strict=True):
        text = f"{value:g} {unit}" if isinstance(value, int | float) else "n/a"
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(0, max([*heights, GOALS["peak_memory_mb"]]) * 1.2)


def summary_lines(report: dict) -> list[str]:
    """A plain-text summary for the terminal."""
    lines = []
    for model, runs in (pick(report, "envelope", "full_core") or {}).items():
        cells = [pick(runs, s, *SERVER_SIDE) for s in ("invocations_1_row", "invocations_1000_rows",
                                                       "predict_1_row", "predict_1000_rows")]
        cells += [pick(runs, s, "model_inference_ms", "p50") for s in ("predict_1_row", "predict_1000_rows")]
        lines.append(f"{model:15} " + " ".join("-".rjust(8) if c is None else f"{c:8.3f}" for c in cells))
    if lines:
        lines.insert(0, f"{'server p50 ms':15} {'inv 1':>8} {'inv 1k':>8} {'pred 1':>8} {'pred 1k':>8} "
                        f"{'onnx 1':>8} {'onnx 1k':>8}")
    for name, goal in report.get("goals", {}).items():
        lines.append(f"goal {name}: {goal['value']} (limit {goal['limit']}) -> {goal['pass']}")
    return lines
