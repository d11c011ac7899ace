"""scikit-learn pipeline → ONNX with one input per feature, and what ONNX Runtime makes of the result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from slimserve import sklearn_onnx
from slimserve.manifest import Feature
from slimserve.parity import onnx_max_abs_diff, run_onnx
from slimserve.sklearn_onnx import MAX_PARITY_DIFF

# Run in a fresh interpreter so the figure is what one model costs a serving process, not this one.
_FOOTPRINT = """
import json, sys
import numpy as np
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
import onnxruntime as ort
before = rss()
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
rows = json.load(sys.stdin)
feed = {k: np.array(v, dtype=object if isinstance(v[0][0], str) else np.float32) for k, v in rows.items()}
session.run(None, feed)
print(json.dumps({"rss_runtime_mb": round(before, 1), "rss_with_session_mb": round(rss(), 1)}))
"""


def to_onnx(pipeline: Pipeline, features: tuple[Feature, ...], name: str) -> Any:
    """The fitted pipeline as ONNX, converted exactly as `slimserve import-mlflow` converts."""
    return sklearn_onnx.to_onnx(pipeline, features, name)


def compile_to(path: Path, name: str, model: Pipeline, features: tuple[Feature, ...], X_check: pd.DataFrame,
               proba: np.ndarray) -> dict[str, Any]:
    """Write model.onnx, prove it matches `model` on X_check and measure its footprint; returns the facts."""
    onnx_model = to_onnx(model, features, name)
    outputs = [o.name for o in onnx_model.graph.output]
    if outputs != ["label", "probabilities"]:
        raise RuntimeError(f"{path}: unexpected ONNX outputs {outputs}")
    path.write_bytes(onnx_model.SerializeToString())
    feed = sklearn_onnx.onnx_feed(X_check, features)
    diff = onnx_max_abs_diff(path, feed, proba, "probabilities")
    if diff >= MAX_PARITY_DIFF:
        raise RuntimeError(f"{path}: ONNX differs from scikit-learn by {diff:.2e}")
    (label,) = run_onnx(path, feed, ["label"])
    checked = {"max_abs_diff": diff, "parity_rows": len(proba),
               "label_agreement": float(np.mean(label.ravel().astype(str) == model.predict(X_check).astype(str)))}
    return {"inputs": [i.name for i in onnx_model.graph.input], "outputs": outputs,
            "opset": sklearn_onnx.default_opset(onnx_model), "tool": sklearn_onnx.tool(),
            "bytes": path.stat().st_size, **checked,
            "footprint": session_footprint(path, {k: v[:5].tolist() for k, v in feed.items()})}


def session_footprint(path: Path, rows: dict[str, list]) -> dict[str, Any]:
    """RSS of a fresh process with ONNX Runtime imported, then with this model's session loaded and run once."""
    done = subprocess.run([sys.executable, "-c", _FOOTPRINT, str(path)], input=json.dumps(rows),
                          capture_output=True, text=True, check=True, timeout=120)
    figures = json.loads(done.stdout)
    figures["session_mb"] = round(figures["rss_with_session_mb"] - figures["rss_runtime_mb"], 1)
    return figures
