"""Metrics, decision thresholds and plots for the tabular training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: training runs headless

import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

SCALARS = ("auc", "accuracy", "f1", "pr_auc", "brier")
BOOTSTRAP_ROUNDS = 500
THRESHOLD_RULES = {
    "fixed": "fixed at 0.5",
    "max_f1": "the threshold in 0.05..0.95 (step 0.01) maximising F1 of the positive class on the "
              "out-of-fold CV probabilities of the training part",
    "argmax": "none: the class with the highest probability (multi-class)",
}

def predict(proba: np.ndarray, labels: list[str], positive: str | None, threshold: float | None) -> np.ndarray:
    """Class decisions: P(positive) >= threshold for binary models, argmax otherwise."""
    if positive is None:
        return np.asarray(labels)[proba.argmax(axis=1)]
    negative = next(label for label in labels if label != positive)
    return np.where(proba[:, labels.index(positive)] >= threshold, positive, negative)


def metrics(y: np.ndarray, proba: np.ndarray, labels: list[str], positive: str | None,
            threshold: float | None) -> dict[str, Any]:
    """AUC, accuracy, F1, per-class recall, PR-AUC and Brier (binary), confusion matrix."""
    decided = predict(proba, labels, positive, threshold)
    result: dict[str, Any] = {"n": len(y)}
    if positive is not None:
        truth, score = y == positive, proba[:, labels.index(positive)]
        result["auc"] = roc_auc_score(truth, score)
        result["pr_auc"] = average_precision_score(truth, score)
        result["brier"] = brier_score_loss(truth, score)
        result["f1"] = f1_score(y, decided, pos_label=positive, average="binary", zero_division=0)
    else:
        result["auc"] = roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels)
        result["f1"] = f1_score(y, decided, labels=labels, average="macro", zero_division=0)
    result["accuracy"] = accuracy_score(y, decided)
    recall = recall_score(y, decided, labels=labels, average=None, zero_division=0)
    result = {k: round(float(v), 4) if k in SCALARS else v for k, v in result.items()}
    result["recall"] = {label: round(float(r), 4) for label, r in zip(labels, recall, strict=True)}
    result["confusion_matrix"] = confusion_matrix(y, decided, labels=labels).tolist()  # rows true, cols predicted
    return result


def choose_threshold(y: np.ndarray, oof: np.ndarray, labels: list[str], positive: str | None,
                     rule: str) -> float | None:
    """The decision threshold on P(positive) by the named rule; None for multi-class models."""
    if positive is None:
        return None
    if rule == "fixed":
        return 0.5
    if rule != "max_f1":
        raise ValueError(f"unknown threshold rule {rule!r}")
    truth, score = y == positive, oof[:, labels.index(positive)]
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    scores = [f1_score(truth, score >= t, zero_division=0) for t in grid]
    return float(grid[int(np.argmax(scores))])


def cv_summary(y: np.ndarray, oof: np.ndarray, folds: list[np.ndarray], labels: list[str],
               positive: str | None, threshold: float | None) -> dict[str, Any]:
    """Mean and std over folds of each metric, the per-fold figures, and the pooled out-of-fold confusion."""
    per_fold = [metrics(y[rows], oof[rows], labels, positive, threshold) for rows in folds]
    keys = [k for k in SCALARS if k in per_fold[0]]
    table = {k: [fold[k] for fold in per_fold] for k in keys}
    table.update({f"recall_{label}": [fold["recall"][label] for fold in per_fold] for label in labels})

    def summarise(reduce: Any) -> dict[str, Any]:
        summary = {k: round(float(reduce(table[k])), 4) for k in keys}
        summary["recall"] = {label: round(float(reduce(table[f"recall_{label}"])), 4) for label in labels}
        return summary

    pooled = metrics(y, oof, labels, positive, threshold)
    return {"folds": len(folds), "mean": summarise(np.mean), "std": summarise(np.std),
            "per_fold": [{k: fold[k] for k in (*keys, "recall")} for fold in per_fold],
            "pooled_confusion_matrix": pooled["confusion_matrix"]}


def bootstrap_ci(y: np.ndarray, proba: np.ndarray, labels: list[str], positive: str | None,
                 threshold: float | None, seed: int) -> dict[str, list[float]]:
    """95 % percentile bootstrap intervals of test AUC and accuracy (the test part is small for some sets)."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"auc": [], "accuracy": []}
    for _ in range(BOOTSTRAP_ROUNDS):
        rows = rng.integers(0, len(y), len(y))
        if len(set(y[rows])) < len(labels):
            continue  # AUC is undefined when a resample lacks a class
        if positive is not None:
            samples["auc"].append(roc_auc_score(y[rows] == positive, proba[rows, labels.index(positive)]))
        else:
            samples["auc"].append(roc_auc_score(y[rows], proba[rows], multi_class="ovr", labels=labels))
        samples["accuracy"].append(accuracy_score(y[rows], predict(proba[rows], labels, positive, threshold)))
    return {k: [round(float(q), 4) for q in np.percentile(v, [2.5, 97.5])] for k, v in samples.items()}


def counts(y: np.ndarray, labels: list[str]) -> dict[str, int]:
    """Rows per class."""
    return {label: int(np.sum(y == label)) for label in labels}


def plot_all(folder: Path, y: np.ndarray, proba: np.ndarray, labels: list[str], positive: str | None,
             threshold: float | None, title: str) -> None:
    """calibration.png, confusion_matrix.png and roc.png for the held-out test part."""
    shown = [positive] if positive is not None else labels  # one curve per class for multi-class (one-vs-rest)
    where = f"test part, n={len(y)}"

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    for label in shown:
        score = proba[:, labels.index(label)]
        observed, predicted = calibration_curve(y == label, score, n_bins=10, strategy="uniform")
        top.plot(predicted, observed, marker="o", label=f"P({label})")
        bottom.hist(score, bins=20, range=(0, 1), histtype="step", label=f"P({label})")
    top.set(ylabel="observed fraction", title=f"{title}: reliability ({where})")
    top.legend(loc="upper left")
    bottom.set(xlabel="predicted probability", ylabel="rows", yscale="log")
    _save(figure, folder / "calibration.png")

    figure, axis = plt.subplots(figsize=(5.5, 5))
    rule = f"P({positive}) ≥ {threshold}" if positive is not None else "argmax"
    ConfusionMatrixDisplay.from_predictions(y, predict(proba, labels, positive, threshold), labels=labels,
                                            ax=axis, colorbar=False, cmap="Blues")
    axis.set_title(f"{title}: confusion ({where}, {rule})", fontsize=9)
    _save(figure, folder / "confusion_matrix.png")

    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    for label in shown:
        score = proba[:, labels.index(label)]
        fpr, tpr, _ = roc_curve(y == label, score)
        axis.plot(fpr, tpr, label=f"{label} vs rest, AUC {roc_auc_score(y == label, score):.3f}")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{title}: ROC ({where})")
    axis.legend(loc="lower right")
    _save(figure, folder / "roc.png")


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
