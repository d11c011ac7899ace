"""scikit-learn → ONNX, one ONNX input per feature column. Needs the training requirements (skl2onnx)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Above this the converted graph is not the fitted model; float32 round-off stays around 1e-7.
MAX_PARITY_DIFF = 1e-5
TARGET_OPSET = 17


def to_onnx(estimator: Any, features: Sequence[Any], name: str = "model") -> Any:
    """The fitted classifier as an ONNX model: one input per feature, a plain probabilities tensor."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    # Float, not double: with DoubleTensorType the graph converts but ONNX Runtime refuses to load it.
    types = [(f.name, StringTensorType([None, 1]) if f.type == "category" else FloatTensorType([None, 1]))
             for f in features]
    classifier = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    # zipmap off: probabilities come out as a (rows, classes) tensor instead of a list of dicts.
    model = convert_sklearn(estimator, name=name, initial_types=types, target_opset=TARGET_OPSET,
                            options={id(classifier): {"zipmap": False}})
    # skl2onnx lists opsets in set order (varies with the hash seed): sort them so reruns give the same bytes.
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, opset in opsets:
        model.opset_import.add(domain=domain, version=opset)
    return model


def output_names(model: Any) -> dict[str, str]:
    """The manifest's `onnx` section: which graph outputs hold the labels and the probabilities."""
    outputs = [o.name for o in model.graph.output]
    return {"label_output": outputs[0], "probabilities_output": outputs[-1]}


def onnx_feed(frame: Any, features: Sequence[Any]) -> dict[str, np.ndarray]:
    """Columns of a DataFrame as the (rows, 1) float32 or string arrays the ONNX inputs take."""
    return {f.name: frame[[f.name]].to_numpy().astype(object if f.type == "category" else np.float32)
            for f in features}


def tool() -> str:
    """The converter and library versions, as the manifest's `compiled.tool` records them."""
    import skl2onnx
    import sklearn

    return f"skl2onnx {skl2onnx.__version__} (scikit-learn {sklearn.__version__})"


def default_opset(model: Any) -> int:
    """The ONNX (default domain) opset the converted graph declares."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
