"""PSI and a two-sample chi-square test on bin counts, in numpy and math only (no scipy at serving time)."""

from __future__ import annotations

import math

import numpy as np

# Empty bins would make PSI infinite; a small floor keeps it finite and barely moves full bins.
PSI_FLOOR = 1e-4
MIN_EXPECTED = 5.0


def psi(reference: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index of observed counts against reference frequencies (or counts)."""
    ref = np.asarray(reference, dtype=np.float64)
    obs = np.asarray(observed, dtype=np.float64)
    ref = np.maximum(ref / max(ref.sum(), 1e-12), PSI_FLOOR)
    obs = np.maximum(obs / max(obs.sum(), 1e-12), PSI_FLOOR)
    return float(np.sum((obs - ref) * np.log(obs / ref)))


def chi_square_two_sample(reference_counts: np.ndarray, observed_counts: np.ndarray) -> float:
    """p-value of Pearson's chi-square test that two binned samples share one distribution (2×k table)."""
    table = np.stack([np.asarray(reference_counts, np.float64), np.asarray(observed_counts, np.float64)])
    table = table[:, table.sum(axis=0) > 0]  # bins empty in both samples carry no information
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    expected = _expected(table)
    # Pearson's approximation needs ~5 expected per cell: rare bins (a value training never or hardly saw)
    # are pooled into one, or a single row in them would read as drift.
    sparse = expected.min(axis=0) < MIN_EXPECTED
    if sparse.any():
        pooled = table[:, sparse].sum(axis=1, keepdims=True)
        table = table[:, ~sparse]
        if table.shape[1] and _expected(np.concatenate([table, pooled], axis=1)).min(axis=0)[-1] < MIN_EXPECTED:
            smallest = int(np.argmin(table.sum(axis=0)))  # still too rare: joined with the smallest bin
            table = table.copy()
            table[:, smallest] += pooled[:, 0]
        else:
            table = np.concatenate([table, pooled], axis=1)
        if table.shape[1] < 2:
            return 1.0
        expected = _expected(table)
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return chi_square_sf(statistic, table.shape[1] - 1)


def _expected(table: np.ndarray) -> np.ndarray:
    return table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()


def chi_square_sf(statistic: float, dof: int) -> float:
    """P(X ≥ statistic) for X ~ chi-square(dof): the regularized upper incomplete gamma Q(dof/2, x/2)."""
    if statistic <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, statistic / 2.0)


def _gamma_q(a: float, x: float) -> float:
    # Numerical Recipes' split: the series converges fast for x < a + 1, the continued fraction beyond.
    if x < a + 1:
        term = total = 1.0 / a
        denominator = a
        for _ in range(1000):
            denominator += 1
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - math.lgamma(a)) * h)
