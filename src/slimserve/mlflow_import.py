"""`slimserve import-mlflow`: an MLflow scikit-learn model → ONNX + manifest, offline, so serving never unpickles.

Runs with the training requirements (mlflow's YAML, skl2onnx). Pickle runs arbitrary code when loaded,
so a cloudpickle model is read only with an explicit `trust=True`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from slimserve import sklearn_onnx
from slimserve.errors import ModelConfigError
from slimserve.manifest import Artifact, Feature, Manifest, compiled_record, save_manifest
from slimserve.parity import onnx_max_abs_diff

MLFLOW_TYPES = {"long": "integer", "integer": "integer", "double": "number", "float": "number",
                "boolean": "boolean", "string": "category"}


def import_mlflow(model_dir: Path, out: Path, *, trust: bool = False, name: str | None = None,
                  version: str = "1") -> Manifest:
    """Convert the MLflow model in `model_dir` into `out/model.onnx` and `out/manifest.json`."""
    import yaml

    model_dir = Path(model_dir)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    flavor = (mlmodel.get("flavors") or {}).get("sklearn")
    if flavor is None:
        raise ModelConfigError("only scikit-learn MLflow models can be imported (no `sklearn` flavor)")
    estimator = _load_estimator(model_dir / flavor["pickled_model"], flavor.get("serialization_format"), trust)
    features = _features(mlmodel, estimator)
    labels = [str(c) for c in estimator.classes_]
    onnx_model = sklearn_onnx.to_onnx(estimator, features)
    onnx_bytes, outputs = onnx_model.SerializeToString(), sklearn_onnx.output_names(onnx_model)
    frame = _parity_frame(model_dir, features)
    diff = onnx_max_abs_diff(onnx_bytes, sklearn_onnx.onnx_feed(frame, features),
                             estimator.predict_proba(frame[[f.name for f in features]]),
                             outputs["probabilities_output"])
    if diff > sklearn_onnx.MAX_PARITY_DIFF:
        raise ModelConfigError(f"ONNX differs from the MLflow model by {diff:.2e}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(onnx_bytes)
    compiled = compiled_record(out / "model.onnx", tool=sklearn_onnx.tool(),
                               opset=sklearn_onnx.default_opset(onnx_model), max_abs_diff=diff)
    manifest = Manifest(
        name=name or re.sub(r"[^A-Za-z0-9_.-]+", "-", model_dir.name).strip("-._") or "model",
        version=version, task="tabular_classification",
        description=f"imported from MLflow ({flavor.get('serialization_format', 'pickle')})",
        labels=labels, positive_label=labels[1] if len(labels) == 2 else None, activation="softmax",
        features=features, onnx=outputs, source=Artifact(compiled.file, compiled.sha256), compiled=compiled,
        training={"imported_from": str(model_dir.name), "mlflow_version": mlmodel.get("mlflow_version"),
                  "run_id": mlmodel.get("run_id"), "estimator": type(estimator).__name__},
        folder=out.resolve(),
    )
    save_manifest(manifest)
    return manifest


def _load_estimator(path: Path, fmt: str | None, trust: bool) -> Any:
    if fmt == "skops":
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=path)
        if untrusted and not trust:
            raise ModelConfigError(f"the skops file names {len(untrusted)} type(s) outside skops' trusted set; "
                                   "review them and pass --trust to load it")
        return skops.io.load(path, trusted=untrusted)
    if not trust:
        raise ModelConfigError(f"{path.name} is a pickle ({fmt or 'pickle'}): loading it runs any code it holds. "
                               "Pass --trust only for a model you trust; the server itself never unpickles")
    import cloudpickle

    with open(path, "rb") as handle:
        return cloudpickle.load(handle)


def _features(mlmodel: dict[str, Any], estimator: Any) -> list[Feature]:
    signature = (mlmodel.get("signature") or {}).get("inputs")
    if not signature:
        raise ModelConfigError("the MLflow model has no input signature; "
                               "log it with one (mlflow.models.infer_signature)")
    categories = find_categories(estimator)
    features = []
    for column in json.loads(signature):
        kind = MLFLOW_TYPES.get(column.get("type"))
        if kind is None or "name" not in column:
            raise ModelConfigError(f"unsupported signature column type {column.get('type')!r}")
        known = categories.get(column["name"])
        if kind == "category" and not known:
            raise ModelConfigError(f"no fitted encoder lists the categories of `{column['name']}`")
        features.append(Feature(name=column["name"], type=kind, categories=known if kind == "category" else None,
                                required=column.get("required", True),
                                description="imported from the MLflow signature; add minimum/maximum here"))
    return features


def find_categories(estimator: Any) -> dict[str, list[str]]:
    """Column → categories, from every fitted encoder inside pipelines and column transformers."""
    found: dict[str, list[str]] = {}
    for step in getattr(estimator, "steps", []):
        found.update(find_categories(step[1]))
    for _, transformer, columns in getattr(estimator, "transformers_", []):
        encoders = [s for _, s in getattr(transformer, "steps", [])] or [transformer]
        for encoder in encoders:
            if hasattr(encoder, "categories_") and isinstance(columns, list | tuple):
                pairs = zip(columns, encoder.categories_, strict=False)
                found.update({column: [str(v) for v in cats] for column, cats in pairs})
    return found


def _parity_frame(model_dir: Path, features: list[Feature]) -> Any:
    """Rows to compare on: the logged input example, else rows drawn over each feature's domain."""
    import pandas as pd

    example = model_dir / "input_example.json"
    if example.is_file():
        data = json.loads(example.read_text())
        frame = pd.DataFrame(data["data"], columns=data["columns"]) if "columns" in data else pd.DataFrame(data)
        if set(f.name for f in features) <= set(frame.columns):
            return frame
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        f.name: rng.choice(f.categories, 64) if f.type == "category"
        else rng.integers(0, 2, 64) if f.type == "boolean" else rng.normal(50, 30, 64).round(1)
        for f in features
    })

