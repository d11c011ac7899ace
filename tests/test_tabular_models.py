"""The bundled tabular models through the real ONNX runtime: MLflow payloads on real patient rows."""

from __future__ import annotations

import csv
import io

import numpy as np
import onnxruntime as ort
import pytest

from slimserve import create_app
from slimserve.manifest import load_manifest
from slimserve.paths import BUNDLED_MODELS
from tests.conftest import SHARED, needs_shared

HEART_CSV = SHARED / "data" / "heart_failure" / "heart.csv"
HEART = BUNDLED_MODELS / "heart_failure" / "1.0.0"
TABULAR = sorted(p.parent.parent.name for p in BUNDLED_MODELS.glob("*/*/manifest.json")
                 if '"tabular_classification"' in p.read_text())


@pytest.fixture(scope="module")
def client():
    app = create_app({"MODEL_PATH": str(BUNDLED_MODELS), "MODEL_REPOSITORY": None, "LOAD_ASYNC": False,
                      "DEFAULT_MODEL": "heart_failure", "AUTO_COMPILE": False})
    return app.test_client()


@pytest.fixture(scope="module")
def heart_rows() -> list[dict]:
    """Ten real rows of heart.csv, typed as an MLflow client's DataFrame would send them."""
    needs_shared(HEART_CSV)
    manifest = load_manifest(HEART)
    kinds = {f.name: f.type for f in manifest.features}
    with open(HEART_CSV, newline="") as handle:
        raw = list(csv.DictReader(handle))[:10]
    cast = {"integer": int, "number": float, "boolean": int, "category": str}
    return [{name: cast[kinds[name]](float(row[name]) if kinds[name] in ("integer", "boolean") else row[name])
             for name in kinds} for row in raw]


def reference_probabilities(rows: list[dict]) -> np.ndarray:
    """P(class) straight from ONNX Runtime, without the server."""
    manifest = load_manifest(HEART)
    session = ort.InferenceSession(str(HEART / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {f.name: np.array([[r[f.name]] for r in rows], dtype=object if f.type == "category" else np.float32)
            for f in manifest.features}
    return session.run([manifest.onnx["probabilities_output"]], feed)[0]


def payloads(rows: list[dict]) -> dict[str, tuple[str, object]]:
    """The same rows in every input format MLflow's scoring server accepts."""
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return {
        "dataframe_split": ("json", {"dataframe_split": {"columns": columns,
                                                         "data": [[r[c] for c in columns] for r in rows]}}),
        "dataframe_records": ("json", {"dataframe_records": rows}),
        "instances": ("json", {"instances": rows}),
        "inputs-records": ("json", {"inputs": rows}),
        "inputs-columns": ("json", {"inputs": {c: [r[c] for r in rows] for c in columns}}),
        "csv": ("csv", buffer.getvalue()),
    }


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs-records",
                                 "inputs-columns", "csv"])
def test_heart_failure_answers_every_mlflow_format_identically(client, heart_rows, fmt):
    kind, payload = payloads(heart_rows)[fmt]
    if kind == "json":
        response = client.post("/invocations?probabilities=true", json=payload)
    else:
        response = client.post("/invocations?probabilities=true", data=payload, content_type="text/csv")
    assert response.status_code == 200, response.data
    body = response.get_json()
    expected = reference_probabilities(heart_rows)
    served = np.array([[p["0"], p["1"]] for p in body["probabilities"]])
    assert np.max(np.abs(served - expected)) < 1e-5
    assert body["predictions"] == [int(p >= 0.5) for p in expected[:, 1]]


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs-records",
                                 "inputs-columns", "csv"])
def test_every_mlflow_format_keeps_the_row_order(client, heart_rows, fmt):
    expected = reference_probabilities(heart_rows)[:, 1]
    assert len(set(np.round(expected, 6))) == len(heart_rows)  # distinct rows: a reordering would show
    for rows, want in ((heart_rows, expected), (heart_rows[::-1], expected[::-1])):
        kind, payload = payloads(rows)[fmt]
        response = (client.post("/invocations?probabilities=true", json=payload) if kind == "json" else
                    client.post("/invocations?probabilities=true", data=payload, content_type="text/csv"))
        served = np.array([p["1"] for p in response.get_json()["probabilities"]])
        assert np.max(np.abs(served - want)) < 1e-5


def test_heart_failure_matches_the_labels_of_most_real_rows(client, heart_rows):
    needs_shared(HEART_CSV)
    with open(HEART_CSV, newline="") as handle:
        truth = [int(r["HeartDisease"]) for r in list(csv.DictReader(handle))[:10]]
    predictions = client.post("/invocations", json={"dataframe_records": heart_rows}).get_json()["predictions"]
    assert sum(p == t for p, t in zip(predictions, truth, strict=True)) >= 8


def test_zero_means_missing_cholesterol_is_served_as_not_measured(client, heart_rows):
    # The manifest flags Cholesterol 0 as "not measured"; the served model must impute it, not read 0 mg/dL,
    # which a linear model would put beyond 100 mg/dL. Imputed, it lands between 100 and 400 mg/dL.
    assert next(f for f in load_manifest(HEART).features if f.name == "Cholesterol").zero_means_missing
    rows = [{**heart_rows[0], "Cholesterol": value} for value in (0, 100, 400)]
    response = client.post("/models/heart_failure/invocations?probabilities=true", json={"dataframe_records": rows})
    assert response.status_code == 200, response.data
    p_zero, p_low, p_high = (p["1"] for p in response.get_json()["probabilities"])
    assert min(p_low, p_high) < p_zero < max(p_low, p_high)


@pytest.mark.parametrize("name", TABULAR)
def test_every_bundled_tabular_model_answers_its_warmup_row(client, name):
    from slimserve.registry import warmup_input

    manifest = load_manifest(BUNDLED_MODELS / name / manifest_version(name))
    row = {k: v[0, 0].item() if hasattr(v[0, 0], "item") else v[0, 0] for k, v in warmup_input(manifest).items()}
    response = client.post(f"/models/{name}/predict", json={"records": [row]})
    assert response.status_code == 200, response.data
    prediction = response.get_json()["predictions"][0]
    assert prediction["label"] in manifest.labels
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def manifest_version(name: str) -> str:
    """The single version folder of a bundled model."""
    (version,) = [p.name for p in (BUNDLED_MODELS / name).iterdir() if p.is_dir()]
    return version


def test_invocations_without_a_name_on_an_image_default_names_the_tabular_models(heart_rows):
    app = create_app({"MODEL_PATH": str(BUNDLED_MODELS / "pneumonia"), "MODEL_REPOSITORY": str(BUNDLED_MODELS),
                      "LOAD_ASYNC": False})
    response = app.test_client().post("/invocations", json={"dataframe_records": heart_rows})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "model_required"
    assert "heart_failure" in response.get_json()["error"]["message"]


def test_invocations_without_a_name_use_the_configured_default_tabular_model(heart_rows):
    app = create_app({"MODEL_PATH": str(BUNDLED_MODELS / "pneumonia"), "MODEL_REPOSITORY": str(BUNDLED_MODELS),
                      "LOAD_ASYNC": False, "DEFAULT_TABLE_MODEL": "heart_failure"})
    client = app.test_client()
    response = client.post("/invocations?probabilities=true", json={"dataframe_records": heart_rows})
    assert response.status_code == 200
    served = np.array([p["1"] for p in response.get_json()["probabilities"]])
    assert np.max(np.abs(served - reference_probabilities(heart_rows)[:, 1])) < 1e-5
    assert client.get("/version").get_json()["default_model"] == "pneumonia"  # images still go to the X-ray model


@pytest.mark.parametrize("name", TABULAR)
def test_every_tabular_model_serves_a_model_card_that_matches_its_metrics(client, name):
    model = client.get(f"/models/{name}").get_json()
    card = model["model_card"]
    assert card and card.startswith(f"# Model card: {name} {model['version']}")
    for section in ("## Intended use", "## Out of scope", "## Data", "## Metrics", "## Limitations"):
        assert section in card
    assert f"- test (n = {model['metrics']['test']['n']}): accuracy {model['metrics']['test']['accuracy']:.3f}," in card
