"""Tabular training: the shared module end to end on a slice of heart.csv, and every committed tabular model."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from scripts.training.tabular import ModelSpec, load_table, parse_args, train
from scripts.training.train_heart_failure import SPEC as HEART_SPEC
from slimserve.manifest import Feature, load_manifest
from tests.conftest import REPO, SHARED, needs_shared

MODELS = REPO / "artifacts" / "models"
TABULAR = ("heart_failure", "diabetes", "aids", "modelo_GEN_NM", "modelo_ERY_NM", "modelo_TCY_NM", "modelo_CAZ_NM")
DATA_FOLDERS = {"heart.csv": "heart_failure", "diabetes_prediction_dataset.csv": "diabetes",
                "AIDS_Classification.csv": "aids", "camda2025_training_mic_sir.csv": "antibiotic"}
MANIFEST_KEYS = {"schema_version", "name", "version", "task", "description", "labels", "label_names",
                 "positive_label", "threshold", "activation", "features", "onnx", "source", "compiled", "training",
                 "metrics"}
ARTIFACT_FILES = {"model.onnx", "manifest.json", "metrics.json", "calibration.png", "confusion_matrix.png", "roc.png",
                  "MODEL_CARD.md"}
HEART = SHARED / "data" / "heart_failure" / "heart.csv"


def folder_of(name: str) -> Path:
    """The committed 1.0.0 folder of a model."""
    return MODELS / name / "1.0.0"


def read_manifest(name: str) -> dict:
    """A committed manifest as plain JSON."""
    return json.loads((folder_of(name) / "manifest.json").read_text(encoding="utf-8"))


def onnx_feed(rows: list[dict[str, str]], features: list[dict]) -> dict[str, np.ndarray]:
    """CSV rows as ONNX inputs, built from the manifest alone: strings for categories, float32 otherwise."""
    return {f["name"]: np.array([[row[f["name"]]] for row in rows],
                                dtype=object if f["type"] == "category" else np.float32) for f in features}


@pytest.mark.slow
def test_shared_module_trains_a_small_heart_model_end_to_end(tmp_path):
    needs_shared(HEART)
    sliced = tmp_path / "heart.csv"
    sliced.write_text("".join(HEART.read_text(encoding="utf-8").splitlines(keepends=True)[:301]), encoding="utf-8")
    args = parse_args(HEART, ["--data", str(sliced), "--out", str(tmp_path / "models"), "--jobs", "1"])

    folder = train(HEART_SPEC, args)

    assert folder == tmp_path / "models" / "heart_failure" / "1.0.0"
    assert {p.name for p in folder.iterdir()} == ARTIFACT_FILES  # nothing pickled
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["compiled"]["max_abs_diff"] < 1e-5
    assert manifest["training"]["n_train"] + manifest["training"]["n_test"] == 300
    assert [f["name"] for f in manifest["features"]] == [f.name for f in HEART_SPEC.features]
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    assert {"auc", "accuracy", "f1", "pr_auc", "recall"} <= set(metrics["cv"]["mean"])
    assert {"auc", "accuracy", "f1", "pr_auc", "recall", "confusion_matrix"} <= set(metrics["test"])
    assert set(metrics["baseline"]) == {"dummy_most_frequent", "dummy_stratified", "age_sex_logistic"}
    assert metrics["onnx"]["label_agreement"] == 1.0
    load_manifest(folder)  # the server's own validation accepts it


def spec_of(feature: Feature) -> ModelSpec:
    """A one-feature spec for the loader tests."""
    return ModelSpec("t", "test", "y", (feature,), classifier=lambda seed: None, scale=False, label_names={})


@pytest.mark.parametrize(("feature", "cell", "problem"), [
    (Feature("x", "number", minimum=0, maximum=10), "11", "row 1, field `x` must be between 0 and 10"),
    (Feature("x", "integer", minimum=0, maximum=10), "2.5", "row 1, field `x` must be an integer"),
    (Feature("x", "boolean"), "2", "row 1, field `x` must be true/false or 0/1"),
    (Feature("x", "category", categories=["1", "a"]), "c", "row 1, field `x` is not a known category"),
    (Feature("x", "number"), "inf", "row 1, field `x` must be a number"),
])
def test_loader_refuses_what_the_server_would_refuse_with_its_message(tmp_path, feature, cell, problem):
    path = tmp_path / "t.csv"
    path.write_text(f"x,y\n1,0\n{cell},1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        load_table(path, spec_of(feature))


def test_loader_keeps_an_empty_cell_as_a_category_value(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n,S\n<=,R\n", encoding="utf-8")
    X, y = load_table(path, spec_of(Feature("x", "category", categories=["", "<="])))
    assert X["x"].tolist() == ["", "<="] and y.tolist() == ["S", "R"]


@pytest.mark.parametrize("name", TABULAR)
def test_committed_model_matches_its_manifest(name):
    folder = folder_of(name)
    manifest = read_manifest(name)
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert manifest["source"]["sha256"] == manifest["compiled"]["sha256"] == digest
    assert {p.name for p in folder.iterdir()} == ARTIFACT_FILES
    assert manifest["compiled"]["max_abs_diff"] < 1e-5
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["onnx"]["max_abs_diff"] == manifest["compiled"]["max_abs_diff"]
    assert load_manifest(folder).name == name


@pytest.mark.parametrize("name", TABULAR)
def test_committed_model_inputs_are_the_manifest_features(name):
    manifest = read_manifest(name)
    session = ort.InferenceSession(str(folder_of(name) / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type, i.shape[1]) for i in session.get_inputs()]
    expected = [(f["name"], "tensor(string)" if f["type"] == "category" else "tensor(float)", 1)
                for f in manifest["features"]]
    assert inputs == expected
    assert [o.name for o in session.get_outputs()] == [manifest["onnx"]["label_output"],
                                                       manifest["onnx"]["probabilities_output"]]


@pytest.mark.parametrize("name", TABULAR)
def test_committed_model_answers_real_rows_with_one_probability_per_label(name):
    manifest = read_manifest(name)
    data = SHARED / "data" / DATA_FOLDERS[manifest["training"]["data"]] / manifest["training"]["data"]
    needs_shared(data)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == manifest["training"]["data_sha256"]
    wanted = manifest["training"].get("rows", {})
    with data.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if all(r[k] == v for k, v in wanted.items())][:20]
    session = ort.InferenceSession(str(folder_of(name) / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, onnx_feed(rows, manifest["features"]))
    assert probabilities.shape == (20, len(manifest["labels"]))
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert set(labels.ravel()) <= set(manifest["labels"])


def test_heart_cholesterol_zero_is_imputed_not_read_as_zero_mg_dl():
    manifest = read_manifest("heart_failure")
    session = ort.InferenceSession(str(folder_of("heart_failure") / "model.onnx"), providers=["CPUExecutionProvider"])
    row = {"Age": "55", "Sex": "M", "ChestPainType": "ASY", "RestingBP": "130", "FastingBS": "0",
           "RestingECG": "Normal", "MaxHR": "140", "ExerciseAngina": "N", "Oldpeak": "1", "ST_Slope": "Flat"}
    rows = [{**row, "Cholesterol": c} for c in ("0", "100", "400")]
    p_zero, p_low, p_high = session.run(None, onnx_feed(rows, manifest["features"]))[1][:, 1]
    # Read as 0 mg/dL, a linear model would put it beyond 100 mg/dL; imputed, it lands between 100 and 400.
    assert min(p_low, p_high) < p_zero < max(p_low, p_high)


def test_loader_trains_on_float64_values_the_server_schema_accepted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y\n0.1,0\n2,1\n", encoding="utf-8")
    X, _ = load_table(path, spec_of(Feature("x", "number", minimum=0)))
    assert X["x"].dtype == np.float64 and X["x"].tolist() == [0.1, 2.0]  # not the schema's float32 copy


def test_nominal_and_ignored_are_training_treatments_named_in_the_spec():
    from sklearn.linear_model import LogisticRegression

    from scripts.training.tabular import build_pipeline

    features = (Feature("arm", "integer", minimum=0, maximum=2), Feature("sign", "category", categories=["", "<"]),
                Feature("dose", "number"))
    pipeline = build_pipeline(features, LogisticRegression(), True, nominal=frozenset({"arm"}),
                              ignored=frozenset({"sign"}))
    groups = {name: list(columns) for name, _, columns in pipeline[0].transformers}
    assert groups == {"ignored": ["sign"], "nominal": ["arm"], "numeric": ["dose"]}
