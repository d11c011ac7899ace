"""scikit-learn pipeline → ONNX with one input per feature, and what ONNX Runtime makes of the result."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.pipeline import Pipeline

if TYPE_CHECKING:
    from scripts.training.tabular import FeatureSpec

MAX_PARITY_DIFF = 1e-5  # above this the ONNX graph is not the fitted model; float32 round-off is ~1e-7
TARGET_OPSET = 17  # the opset slimserve's own skl2onnx helper targets; ONNX Runtime 1.32 runs it

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


def to_onnx(pipeline: Pipeline, features: tuple[FeatureSpec, ...], name: str) -> Any:
    """The fitted pipeline as an ONNX model with one input per feature and a plain probabilities tensor."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    # Float, not double: with DoubleTensorType the graph converts but ONNX Runtime refuses to load it.
    types = [(f.name, StringTensorType([None, 1]) if f.type == "category" else FloatTensorType([None, 1]))
             for f in features]
    # zipmap off: probabilities come out as a (rows, classes) float tensor instead of a list of dicts.
    model = convert_sklearn(pipeline, name=name, initial_types=types, target_opset=TARGET_OPSET,
                            options={id(pipeline[-1]): {"zipmap": False}})
    # skl2onnx lists opsets in set order (varies with the hash seed): sort them so reruns give the same bytes.
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, opset in opsets:
        model.opset_import.add(domain=domain, version=opset)
    return model


def compile_to(path: Path, name: str, model: Pipeline, features: tuple[FeatureSpec, ...], X_check: pd.DataFrame,
               proba: np.ndarray) -> dict[str, Any]:
    """Write model.onnx, prove it matches `model` on X_check and measure its footprint; returns the facts."""
    onnx_model = to_onnx(model, features, name)
    outputs = [o.name for o in onnx_model.graph.output]
    if outputs != ["label", "probabilities"]:
        raise RuntimeError(f"{path}: unexpected ONNX outputs {outputs}")
    path.write_bytes(onnx_model.SerializeToString())
    feed = onnx_feed(X_check, features)
    checked = parity(path, feed, proba, model.predict(X_check))
    if checked["max_abs_diff"] >= MAX_PARITY_DIFF:
        raise RuntimeError(f"{path}: ONNX differs from scikit-learn by {checked['max_abs_diff']:.2e}")
    return {"inputs": [i.name for i in onnx_model.graph.input], "outputs": outputs,
            "opset": next(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")),
            "tool": f"skl2onnx {version('skl2onnx')} (scikit-learn {sklearn.__version__})",
            "bytes": path.stat().st_size, **checked,
            "footprint": session_footprint(path, {k: v[:5].tolist() for k, v in feed.items()})}


def onnx_feed(frame: pd.DataFrame, features: tuple[FeatureSpec, ...]) -> dict[str, np.ndarray]:
    """Columns as the (rows, 1) float32 or string arrays the ONNX inputs take."""
    return {f.name: frame[[f.name]].to_numpy().astype(object if f.type == "category" else np.float32)
            for f in features}


def parity(path: Path, feed: dict[str, np.ndarray], proba: np.ndarray, decided: np.ndarray) -> dict[str, Any]:
    """Max |Δp| between ONNX Runtime and scikit-learn probabilities, and how often their labels agree."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], feed)
    return {"max_abs_diff": float(np.abs(probabilities - proba).max()), "parity_rows": len(proba),
            "label_agreement": float(np.mean(label.ravel().astype(str) == decided.astype(str)))}


def session_footprint(path: Path, rows: dict[str, list]) -> dict[str, Any]:
    """RSS of a fresh process with ONNX Runtime imported, then with this model's session loaded and run once."""
    done = subprocess.run([sys.executable, "-c", _FOOTPRINT, str(path)], input=json.dumps(rows),
                          capture_output=True, text=True, check=True, timeout=120)
    figures = json.loads(done.stdout)
    figures["session_mb"] = round(figures["rss_with_session_mb"] - figures["rss_runtime_mb"], 1)
    return figures
