"""`slimserve import-mlflow`: a model logged with mlflow becomes ONNX + manifest; pickles need --trust."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slimserve import create_app
from slimserve.cli import main
from tests.conftest import SHARED, needs_shared

pytestmark = [
    pytest.mark.slow,
    # mlflow and sklearn talk about their own defaults (AnyType hints, integer columns, pickle caution).
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]
HEART = SHARED / "data" / "heart_failure" / "heart.csv"
NUMERIC = ["Age", "RestingBP", "Cholesterol", "FastingBS", "MaxHR", "Oldpeak"]
CATEGORICAL = ["Sex", "ChestPainType", "RestingECG", "ExerciseAngina", "ST_Slope"]


@pytest.fixture(scope="module")
def heart():
    needs_shared(HEART)
    import pandas as pd

    # object columns: mlflow 3.17's infer_signature does not understand pandas 3's string dtype.
    frame = pd.read_csv(HEART).astype({c: object for c in CATEGORICAL})
    return frame[NUMERIC + CATEGORICAL], frame["HeartDisease"]


def save_mlflow_model(folder: Path, heart, serialization_format: str):
    """Fit the MLflow reference pipeline (OneHot + Scaler + LogisticRegression) and save it with mlflow."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features, target = heart
    pipeline = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), NUMERIC),
                                    ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])),
        ("clf", LogisticRegression(max_iter=1000)),
    ]).fit(features, target)
    signature = infer_signature(features, pipeline.predict(features))
    mlflow.sklearn.save_model(pipeline, str(folder), signature=signature, serialization_format=serialization_format)
    return pipeline


@pytest.fixture(scope="module")
def cloudpickled(tmp_path_factory, heart):
    folder = tmp_path_factory.mktemp("mlflow") / "heart_lr"
    return folder, save_mlflow_model(folder, heart, "cloudpickle")


def test_pickle_is_refused_without_trust(cloudpickled, tmp_path, capsys):
    folder, _ = cloudpickled
    assert main(["import-mlflow", str(folder), "--out", str(tmp_path / "out")]) == 1
    assert "--trust" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_imported_model_serves_the_same_probabilities(cloudpickled, heart, tmp_path):
    folder, pipeline = cloudpickled
    out = tmp_path / "heart_lr" / "1"
    assert main(["import-mlflow", str(folder), "--trust", "--out", str(out), "--name", "heart_lr"]) == 0
    features, _ = heart
    rows = features.head(50)
    client = create_app({"MODEL_PATH": str(out), "LOAD_ASYNC": False}).test_client()
    payload = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
    response = client.post("/models/heart_lr/invocations?probabilities=true", json=payload)
    assert response.status_code == 200, response.data
    body = response.get_json()
    served = np.array([[p["0"], p["1"]] for p in body["probabilities"]])
    assert np.max(np.abs(served - pipeline.predict_proba(rows))) < 1e-5
    assert body["predictions"] == pipeline.predict(rows).tolist()


def test_manifest_takes_types_from_the_signature_and_categories_from_the_encoder(cloudpickled, tmp_path):
    from slimserve.manifest import load_manifest

    folder, _ = cloudpickled
    assert main(["import-mlflow", str(folder), "--trust", "--out", str(tmp_path / "m")]) == 0
    manifest = load_manifest(tmp_path / "m")
    kinds = {f.name: f.type for f in manifest.features}
    assert kinds["Age"] == "integer" and kinds["Oldpeak"] == "number" and kinds["Sex"] == "category"
    assert next(f for f in manifest.features if f.name == "Sex").categories == ["F", "M"]
    assert manifest.labels == ["0", "1"] and manifest.compiled.max_abs_diff < 1e-5


def test_skops_model_imports_without_running_pickle(heart, tmp_path, monkeypatch):
    import pickle

    import cloudpickle

    folder = tmp_path / "heart_skops"
    pipeline = save_mlflow_model(folder, heart, "skops")

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used to load the model")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (cloudpickle, "load"),
                         (cloudpickle, "loads")):
        monkeypatch.setattr(module, name, refuse)
    # No --trust: a skops file of standard scikit-learn types needs no trust, since nothing in it can run code.
    assert main(["import-mlflow", str(folder), "--out", str(tmp_path / "s")]) == 0
    monkeypatch.undo()
    features, _ = heart
    rows = features.head(50)
    client = create_app({"MODEL_PATH": str(tmp_path / "s"), "LOAD_ASYNC": False}).test_client()
    payload = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
    body = client.post("/models/heart_skops/invocations?probabilities=true", json=payload).get_json()
    served = np.array([[p["0"], p["1"]] for p in body["probabilities"]])
    assert np.max(np.abs(served - pipeline.predict_proba(rows))) < 1e-5  # the fitted model, read without pickle
