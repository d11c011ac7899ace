"""Probability calibration for binary models: Platt / temperature scaling fitted on logits, ECE, reliability plot.

No TensorFlow here; the fitted scale and bias are baked into the exported graph by the training script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from scripts.training.common import _save, plt

ECE_BINS = 15


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, stable for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def fit_platt(logits: np.ndarray, y_true: np.ndarray, with_bias: bool = True) -> tuple[float, float]:
    """(scale, bias) minimising the log loss of sigmoid(scale·logit + bias); bias 0 is temperature scaling."""
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(y_true, dtype=np.float64).ravel()

    def loss(params: np.ndarray) -> float:
        scale, bias = params[0], params[1] if with_bias else 0.0
        s = scale * z + bias
        # log(1 + e^s) - y·s, written to stay finite for large |s|
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    start = np.array([1.0, 0.0] if with_bias else [1.0])
    result = minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 4000})
    scale = float(result.x[0])
    bias = float(result.x[1]) if with_bias else 0.0
    if scale <= 0:
        raise ValueError(f"calibration found a non-positive scale {scale}: the logits do not rank the classes")
    return scale, bias


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean |accuracy − confidence| over equal-width bins of P(positive), weighted by bin size."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(y[members].mean() - p[members].mean())
    return float(total / len(y))


def reliability_curve(y_true: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: mean predicted P(positive), observed positive rate, and count."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows = [(p[which == b].mean(), y[which == b].mean(), (which == b).sum()) for b in range(bins) if (which == b).any()]
    mean_p, observed, counts = (np.asarray(column) for column in zip(*rows, strict=True))
    return mean_p, observed, counts


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Reliability diagram: observed positive rate against predicted P(positive), one line per curve name."""
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    for name, (y_true, probabilities) in curves.items():
        mean_p, observed, counts = reliability_curve(y_true, probabilities)
        ece = expected_calibration_error(y_true, probabilities)
        ax.plot(mean_p, observed, marker="o", lw=1.5, label=f"{name} (ECE {ece:.3f}, n={int(counts.sum())})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(PNEUMONIA)", ylabel="observed fraction PNEUMONIA",
           title=f"{title}\n({ECE_BINS} equal-width bins)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)
