"""Helpers every training script shares: binary metrics, a val-chosen threshold, plots and JSON output.

Nothing here imports TensorFlow, so tabular scripts (scikit-learn) can use it as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers and in CI
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from slimserve.manifest import sha256_file  # noqa: F401  (re-exported: one sha256 for the project)

THRESHOLD_RULE = (
    "maximise Youden's J (sensitivity + specificity - 1, i.e. balanced accuracy) on the val split; "
    "where several thresholds tie, take the midpoint (in logit space) of the tied interval"
)


def youden_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The decision threshold with the best balanced accuracy on (y_true, scores); see THRESHOLD_RULE."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.unique(scores)
    # Predict positive when score >= t; sensitivity and specificity for every candidate t at once.
    positives = np.sort(scores[y_true])
    negatives = np.sort(scores[~y_true])
    sensitivity = 1.0 - np.searchsorted(positives, candidates, side="left") / max(len(positives), 1)
    specificity = np.searchsorted(negatives, candidates, side="left") / max(len(negatives), 1)
    j = sensitivity + specificity - 1.0
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))
    # Every t in (candidate just below a tied run, last candidate of the run] makes the same predictions.
    # The middle of the widest run keeps the largest margin to both classes instead of hugging one of them.
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    edges = [(candidates[run[0] - 1] if run[0] > 0 else 0.0, candidates[run[-1]]) for run in runs]
    low, high = max(edges, key=lambda edge: _logit(edge[1]) - _logit(edge[0]))
    return float(_sigmoid((_logit(low) + _logit(high)) / 2.0))


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, AUC, sensitivity, specificity, precision, F1 and the confusion matrix at `threshold`."""
    y_true = np.asarray(y_true).astype(int).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    predicted = (scores >= threshold).astype(int)
    tp = int(np.sum((predicted == 1) & (y_true == 1)))
    tn = int(np.sum((predicted == 0) & (y_true == 0)))
    fp = int(np.sum((predicted == 1) & (y_true == 0)))
    fn = int(np.sum((predicted == 0) & (y_true == 1)))
    sensitivity = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * sensitivity / (precision + sensitivity) if precision + sensitivity else 0.0
    auc = roc_auc_score(y_true, scores) if 0 < y_true.sum() < len(y_true) else float("nan")
    return {
        "accuracy": _round((tp + tn) / len(y_true)),
        "auc": _round(auc),
        "sensitivity": _round(sensitivity),
        "specificity": _round(specificity),
        "precision": _round(precision),
        "f1": _round(f1),
        "balanced_accuracy": _round((sensitivity + specificity) / 2),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "threshold": float(threshold),
        "n": len(y_true),
    }


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write `data` as stable, pretty-printed JSON (diff-friendly)."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], threshold: float, path: Path,
             title: str = "ROC") -> Path:
    """ROC curves (one per split name → (y_true, scores)), each with its operating point at `threshold`."""
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    for name, (y_true, scores) in curves.items():
        fpr, tpr, _ = roc_curve(y_true, scores)
        auc = roc_auc_score(y_true, scores)
        (line,) = ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {auc:.3f}, n={len(y_true)})")
        point = binary_metrics(y_true, scores, threshold)
        ax.plot(1 - point["specificity"], point["sensitivity"], "o", color=line.get_color(), ms=7,
                markeredgecolor="black")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate (1 - specificity)",
           ylabel="True positive rate (sensitivity)", title=f"{title}\n(dots: threshold {threshold:.3f})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_confusion(matrices: Mapping[str, Sequence[Sequence[int]]], labels: Sequence[str], path: Path,
                   threshold: float) -> Path:
    """One confusion-matrix panel per split name → [[tn, fp], [fn, tp]], with counts and row percentages."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.2), dpi=120, squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        counts = np.asarray(matrix)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for row in range(counts.shape[0]):
            for col in range(counts.shape[1]):
                ax.text(col, row, f"{counts[row, col]}\n{rates[row, col]:.1%}", ha="center", va="center",
                        color="white" if rates[row, col] > 0.5 else "black", fontsize=11)
        ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
               xlabel="predicted", ylabel="true", title=f"{name} (n={counts.sum()})")
    fig.suptitle(f"Confusion matrices at threshold {threshold:.3f}")
    return _save(fig, path)


def plot_training_curves(history: Mapping[str, Sequence[float]], path: Path, best_epoch: int | None = None,
                         metrics: Sequence[str] = ("loss", "auc")) -> Path:
    """Per-epoch train vs val curves (Keras History keys `m` and `val_m`), marking the kept epoch."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4), dpi=120, squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "val")):
            if key in history:
                values = history[key]
                ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"kept (epoch {best_epoch})")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def _sigmoid(z: float) -> float:
    return float(1 / (1 + np.exp(-z)))


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)
