"""Bin counts of served inputs in a sliding window, and how far they are from the training reference.

The window is a ring of blocks of bin counts: a full block is kept, the oldest one is dropped when a new
one starts, so the window holds between `window - block` and `window` rows and no row is ever stored.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from slimserve.drift.profile import Profile
from slimserve.drift.stats import chi_square_two_sample, psi

STATUSES = ("ok", "warn", "drift")


@dataclass(frozen=True)
class Thresholds:
    """When a column counts as drifted: PSI at or past a level and the two-sample test's p below alpha."""

    psi_warn: float = 0.1
    psi_drift: float = 0.25
    alpha: float = 0.001
    min_rows: int = 200  # below this the window is reported but not judged


class DriftMonitor:
    """Sliding-window bin counts of one model's inputs and predictions (thread-safe)."""

    def __init__(self, profile: Profile, window: int = 500, blocks: int = 10) -> None:
        self.profile = profile
        self.block_size = max(1, window // blocks)
        self.window = self.block_size * blocks
        sizes = [spec.bins for spec in profile.columns]
        self.offsets = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        self.total_bins = int(sum(sizes))
        self.counts = np.zeros((blocks, self.total_bins), dtype=np.int64)
        self.block_rows = np.zeros(blocks, dtype=np.int64)
        self.current = 0
        self.rows_seen = 0
        self.dirty = False
        self.lock = threading.Lock()

    def bin_rows(self, columns: dict[str, Any], probabilities: np.ndarray) -> np.ndarray:
        """(N, columns) flat bin numbers of a batch; columns are named as in the profile."""
        from slimserve.drift.profile import PREDICTION

        values = {**columns, PREDICTION: prediction_values(self.profile, probabilities)}
        binned = [spec.index(values[spec.name]) for spec in self.profile.columns]
        return np.stack(binned, axis=1) + self.offsets

    def update(self, columns: dict[str, Any], probabilities: np.ndarray) -> None:
        """Count one batch of served rows."""
        rows = self.bin_rows(columns, probabilities)
        with self.lock:
            start = 0
            while start < len(rows):
                room = self.block_size - int(self.block_rows[self.current])
                chunk = rows[start:start + room]
                self.counts[self.current] += np.bincount(chunk.ravel(), minlength=self.total_bins)
                self.block_rows[self.current] += len(chunk)
                start += len(chunk)
                if self.block_rows[self.current] >= self.block_size:
                    self.current = (self.current + 1) % len(self.block_rows)
                    self.counts[self.current] = 0
                    self.block_rows[self.current] = 0
            self.rows_seen += len(rows)
            self.dirty = True

    def reset(self) -> None:
        """Forget every count (e.g. after a retrain or a simulation)."""
        with self.lock:
            self.counts[:] = 0
            self.block_rows[:] = 0
            self.current = 0
            self.rows_seen = 0
            self.dirty = True

    def report(self, thresholds: Thresholds) -> dict[str, Any]:
        """Per-column PSI and p-value against the reference, the window's size and an overall status."""
        with self.lock:
            totals = self.counts.sum(axis=0)
            rows = int(self.block_rows.sum())
            seen = self.rows_seen
        judged = rows >= thresholds.min_rows
        columns = []
        for spec, offset in zip(self.profile.columns, self.offsets, strict=True):
            observed = totals[offset:offset + spec.bins]
            expected = np.asarray(spec.frequencies)
            value = psi(expected, observed) if rows else None
            p_value = chi_square_two_sample(expected * self.profile.rows, observed) if rows else None
            columns.append({
                "name": spec.name, "psi": _round(value), "p_value": _round(p_value),
                "status": column_status(value, p_value, thresholds) if judged else "ok",
                "bins": spec.labels(), "reference": spec.frequencies,
                "window": [round(float(c) / rows, 6) if rows else 0.0 for c in observed],
            })
        features, prediction = columns[:-1], columns[-1]
        worst = max((STATUSES.index(c["status"]) for c in columns), default=0)
        return {
            "status": STATUSES[worst], "judged": judged, "window_rows": rows, "window_size": self.window,
            "rows_seen": seen, "reference_rows": self.profile.rows, "features": features,
            "prediction": prediction,
            "thresholds": {"psi_warn": thresholds.psi_warn, "psi_drift": thresholds.psi_drift,
                           "alpha": thresholds.alpha, "min_rows": thresholds.min_rows},
        }

    def state(self) -> dict[str, Any]:
        """The counts as plain data (what the store persists)."""
        with self.lock:
            self.dirty = False
            return {"counts": self.counts.tolist(), "block_rows": self.block_rows.tolist(),
                    "current": self.current, "rows_seen": self.rows_seen}

    def restore(self, state: dict[str, Any]) -> bool:
        """Take counts saved earlier; False (and nothing changed) when they do not fit this profile."""
        counts = np.asarray(state.get("counts", []), dtype=np.int64)
        block_rows = np.asarray(state.get("block_rows", []), dtype=np.int64)
        if counts.shape != self.counts.shape or block_rows.shape != self.block_rows.shape:
            return False
        with self.lock:
            self.counts[:] = counts
            self.block_rows[:] = block_rows
            self.current = int(state.get("current", 0)) % len(block_rows)
            self.rows_seen = int(state.get("rows_seen", 0))
        return True


def prediction_values(profile: Profile, probabilities: np.ndarray) -> np.ndarray:
    """What the prediction bins count: P(positive) for binary models, else the predicted label."""
    spec = profile.prediction
    if spec.kind == "numeric":
        return probabilities[:, profile.positive_index]
    return np.asarray(spec.categories, dtype=object)[np.argmax(probabilities, axis=1)]


def column_status(value: float | None, p_value: float | None, thresholds: Thresholds) -> str:
    """ok, warn or drift for one column."""
    if value is None or p_value is None or p_value >= thresholds.alpha:
        return "ok"
    if value >= thresholds.psi_drift:
        return "drift"
    return "warn" if value >= thresholds.psi_warn else "ok"


def _round(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(float(value), 6)
