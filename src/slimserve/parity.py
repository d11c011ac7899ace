"""Does a converted ONNX graph compute what the model it came from computes? One check for every converter.

`slimserve compile` (TensorFlow), `import-mlflow` and the tabular training (scikit-learn) all record the
figure this returns as `compiled.max_abs_diff` and refuse a graph above their limit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_onnx(onnx: Path | bytes, feed: dict[str, np.ndarray] | np.ndarray,
             outputs: list[str] | None = None) -> list[np.ndarray]:
    """The named outputs (default: all) of the ONNX graph on `feed`; a bare array feeds its only input."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx) if isinstance(onnx, Path) else onnx, providers=["CPUExecutionProvider"])
    if not isinstance(feed, dict):
        feed = {session.get_inputs()[0].name: feed}
    return session.run(outputs, feed)


def onnx_max_abs_diff(onnx: Path | bytes, feed: dict[str, np.ndarray] | np.ndarray, expected: np.ndarray,
                      output: str | None = None) -> float:
    """Max |expected − ONNX| over `feed`, on the named output (default: the first)."""
    (actual,) = run_onnx(onnx, feed, [output] if output else None)[:1]
    return float(np.max(np.abs(np.asarray(expected, dtype=np.float64) - actual)))
