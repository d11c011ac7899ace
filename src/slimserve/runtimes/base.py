"""The runtime interface every model executor implements."""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np


class RuntimeOptions(NamedTuple):
    """Execution settings shared by all runtimes."""

    # One thread and no spinning: under a 0.1 vCPU quota a spinning pool burns the whole budget.
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False


@runtime_checkable
class Runtime(Protocol):
    """Executes one model: `load()` once, then `predict(batch)` from any thread."""

    name: str

    def load(self) -> None:
        """Load the model; raises ModelConfigError when the artifact cannot be used."""
        ...

    def predict(self, inputs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """Return class probabilities, shape (N, len(labels)), for an image batch or named columns."""
        ...


def to_class_probabilities(raw: np.ndarray, activation: str) -> np.ndarray:
    """Turn a model's raw output into (N, classes) probabilities."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim == 1:
        raw = raw[:, np.newaxis]
    if activation == "sigmoid":
        positive = raw[:, -1]
        return np.stack([1.0 - positive, positive], axis=1)
    return raw
