"""scikit-learn → ONNX, one ONNX input per feature column. Needs the training requirements (skl2onnx)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from slimserve.manifest import Feature

# Above this the converted graph is not the fitted model; float32 round-off stays around 1e-7.
MAX_PARITY_DIFF = 1e-5
TARGET_OPSET = 17


def convert(estimator: Any, features: list[Feature]) -> tuple[bytes, dict[str, str]]:
    """Convert a fitted classifier; returns the ONNX bytes and the names of its label/probability outputs."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [
        (f.name, StringTensorType([None, 1]) if f.type == "category" else FloatTensorType([None, 1]))
        for f in features
    ]
    # zipmap off: a plain (rows, classes) probabilities tensor instead of a list of dicts.
    options = {id(estimator): {"zipmap": False}}
    onnx_model = to_onnx(estimator, initial_types=initial_types, options=options, target_opset=TARGET_OPSET)
    outputs = [o.name for o in onnx_model.graph.output]
    return onnx_model.SerializeToString(), {"label_output": outputs[0], "probabilities_output": outputs[-1]}


def onnx_feed(frame: Any, features: list[Feature]) -> dict[str, np.ndarray]:
    """Columns of a pandas DataFrame as the (rows, 1) arrays the ONNX graph takes."""
    feed = {}
    for feature in features:
        column = frame[feature.name].to_numpy()
        if feature.type == "category":
            feed[feature.name] = column.astype(str).astype(object).reshape(-1, 1)
        else:
            feed[feature.name] = column.astype(np.float32).reshape(-1, 1)
    return feed


def parity(estimator: Any, onnx_bytes: bytes, frame: Any, features: list[Feature], output: str) -> float:
    """Max |Δp| between the estimator's predict_proba and ONNX Runtime over `frame`."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    actual = session.run([output], onnx_feed(frame, features))[0]
    expected = estimator.predict_proba(frame[[f.name for f in features]])
    return float(np.max(np.abs(np.asarray(expected, dtype=np.float64) - actual)))


def compiled_record(onnx_sha256: str, diff: float) -> dict[str, Any]:
    """The manifest's `compiled` section for an ONNX file that is its own source."""
    import skl2onnx
    import sklearn

    return {"file": "model.onnx", "sha256": onnx_sha256, "source_sha256": onnx_sha256,
            "tool": f"skl2onnx {skl2onnx.__version__} (scikit-learn {sklearn.__version__})",
            "opset": TARGET_OPSET, "max_abs_diff": diff,
            "compiled_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
