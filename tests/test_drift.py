"""Drift: reference profiles, the sliding window, PSI and the test, the route, /metrics and the simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from slimserve import create_app
from slimserve.drift.monitor import DriftMonitor, Thresholds
from slimserve.drift.profile import build_profile, profile_from_dict, profile_to_dict
from slimserve.drift.simulate import parse_shift, simulate
from slimserve.drift.stats import chi_square_sf, chi_square_two_sample
from slimserve.errors import ModelConfigError
from slimserve.manifest import Feature, load_manifest, parse_manifest
from slimserve.paths import BUNDLED_MODELS
from tests.conftest import SHARED, needs_shared

HEART = BUNDLED_MODELS / "heart_failure" / "1.0.0"
HEART_CSV = SHARED / "data" / "heart_failure" / "heart.csv"
FEATURES = [Feature("Age", "integer"), Feature("Chol", "number", zero_means_missing=True),
            Feature("Sex", "category", categories=["F", "M"])]


def small_profile(rows: int = 2000, seed: int = 0):
    """A profile of synthetic training data: Age ~ N(55, 9), Chol with 20 % zeros, Sex 80 % M."""
    rng = np.random.default_rng(seed)
    columns = {"Age": rng.normal(55, 9, rows).round(), "Chol": np.where(rng.random(rows) < 0.2, 0,
                                                                         rng.normal(240, 50, rows)),
               "Sex": rng.choice(["F", "M"], rows, p=[0.2, 0.8]).astype(object)}
    probabilities = rng.random(rows)
    return build_profile(FEATURES, columns, np.stack([1 - probabilities, probabilities], 1), ["0", "1"], "1")


def test_profile_survives_the_manifest_round_trip_and_bad_ones_are_refused():
    manifest = load_manifest(HEART)
    assert manifest.drift_reference is not None
    data = manifest.to_dict()
    assert profile_to_dict(profile_from_dict(manifest.drift_reference)) == data["drift_reference"]
    data["drift_reference"]["features"][0]["frequencies"].append(0.1)  # one more frequency than bins
    with pytest.raises(ModelConfigError):
        parse_manifest(data, HEART)


def test_every_bundled_tabular_model_has_a_reference_whose_frequencies_sum_to_one():
    for path in BUNDLED_MODELS.glob("*/*/manifest.json"):
        manifest = load_manifest(path.parent)
        if manifest.features is None:
            continue
        reference = profile_from_dict(manifest.drift_reference)
        assert [s.name for s in reference.features] == [f.name for f in manifest.features]
        for spec in reference.columns:
            assert sum(spec.frequencies) == pytest.approx(1, abs=1e-4), (manifest.name, spec.name)


def test_zero_means_missing_and_unknown_categories_get_their_own_bins():
    profile = small_profile()
    chol, sex = profile.features[1], profile.features[2]
    assert chol.frequencies[-1] == pytest.approx(0.2, abs=0.03)  # the `missing` bin holds the zeros
    assert chol.index([0.0, float("nan")]).tolist() == [chol.bins - 1] * 2
    assert sex.index(["M", "X"]).tolist() == [1, 2]


@pytest.mark.parametrize(("statistic", "dof"), [(0.3, 1), (4.0, 2), (15.0, 9), (40.0, 9), (120.0, 12), (1.5, 20)])
def test_chi_square_survival_matches_scipy(statistic, dof):
    assert chi_square_sf(statistic, dof) == pytest.approx(stats.chi2.sf(statistic, dof), rel=1e-9, abs=1e-300)


def test_two_sample_test_matches_scipy_contingency():
    a, b = np.array([30, 50, 20, 0]), np.array([10, 25, 30, 0])
    expected = stats.chi2_contingency(np.stack([a[:3], b[:3]]), correction=False).pvalue
    assert chi_square_two_sample(a, b) == pytest.approx(expected, rel=1e-9)


def test_the_window_slides_and_keeps_only_counts():
    profile = small_profile()
    monitor = DriftMonitor(profile, window=200, blocks=4)
    rng = np.random.default_rng(1)

    def batch(rows: int, age_mean: float):
        columns = {"Age": rng.normal(age_mean, 9, (rows, 1)).round(), "Chol": rng.normal(240, 50, (rows, 1)),
                   "Sex": np.array([["M"]] * rows, dtype=object)}
        p = rng.random(rows)
        return columns, np.stack([1 - p, p], 1)

    monitor.update(*batch(200, 64))  # one training SD up
    shifted = monitor.report(Thresholds(min_rows=100))
    assert shifted["window_rows"] == 150  # a full window minus the block that just started
    assert next(f for f in shifted["features"] if f["name"] == "Age")["status"] == "drift"
    monitor.update(*batch(200, 55))
    back = monitor.report(Thresholds(min_rows=100))
    assert next(f for f in back["features"] if f["name"] == "Age")["status"] == "ok"
    assert back["rows_seen"] == 400
    assert set(monitor.state()) == {"counts", "block_rows", "current", "rows_seen"}


def test_below_min_rows_nothing_is_judged():
    monitor = DriftMonitor(small_profile(), window=500)
    columns = {"Age": np.array([[99.0]] * 10), "Chol": np.array([[600.0]] * 10),
               "Sex": np.array([["F"]] * 10, dtype=object)}
    monitor.update(columns, np.tile([0.0, 1.0], (10, 1)))
    report = monitor.report(Thresholds(min_rows=100))
    assert report["status"] == "ok" and report["judged"] is False


@pytest.fixture(scope="module")
def heart_client():
    app = create_app({"MODEL_PATH": str(HEART), "MODEL_REPOSITORY": None, "LOAD_ASYNC": False,
                      "RATELIMIT_ENABLED": False, "AUDIT_SINK": "off", "AUTO_COMPILE": False})
    return app


def sender(app):
    """A simulate() sender over a fresh test client."""
    client = app.test_client()

    def send(method, path, body):
        response = client.open(path, method=method, json=body)
        return response.status_code, response.get_json()

    return send


def reset(app):
    for monitor in app.extensions["slimserve.drift"]["monitors"].values():
        monitor.reset()


def test_one_sd_shift_of_one_feature_is_flagged_within_500_rows(heart_client):
    needs_shared(HEART_CSV)
    reset(heart_client)
    result = simulate(sender(heart_client), "heart_failure", "MaxHR=-1sd", 500, seed=3)
    assert result["answers"] == {"200": 20}
    assert result["status"] == "drift"
    assert result["columns"]["MaxHR"]["status"] == "drift"
    assert [name for name, c in result["columns"].items() if c["status"] == "drift"] == ["MaxHR"]


def test_unshifted_training_rows_stay_ok(heart_client):
    needs_shared(HEART_CSV)
    reset(heart_client)
    result = simulate(sender(heart_client), "heart_failure", None, 500, seed=4)
    assert result["status"] == "ok", result["columns"]


def test_drift_route_shape_and_metrics(heart_client):
    needs_shared(HEART_CSV)
    reset(heart_client)
    simulate(sender(heart_client), "heart_failure", "Age=+1sd", 300, seed=5)
    client = heart_client.test_client()
    body = client.get("/models/heart_failure/drift").get_json()
    assert body["model"] == "heart_failure" and body["store"] == "memory"
    assert body["window_size"] == 500 and body["window_rows"] == 300
    assert body["prediction"]["name"] == "prediction" and body["prediction"]["psi"] is not None
    age = next(f for f in body["features"] if f["name"] == "Age")
    assert len(age["bins"]) == len(age["reference"]) == len(age["window"])
    text = client.get("/metrics").get_data(as_text=True)
    assert 'slimserve_drift_psi{feature="Age",model="heart_failure",version="1.0.0"}' in text
    assert 'slimserve_drift_status{model="heart_failure",version="1.0.0"} 2.0' in text
    assert 'slimserve_drift_window_rows{model="heart_failure",version="1.0.0"} 300.0' in text


def test_a_model_without_reference_answers_404_with_a_code(tmp_path, fake_runtimes):
    from tests.conftest import write_fake_model

    app = create_app({"MODEL_PATH": str(write_fake_model(tmp_path / "p")), "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False})
    response = app.test_client().get("/models/pneumonia/drift")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "drift_not_available"
    assert app.test_client().get("/models/nope/drift").get_json()["error"]["code"] == "model_not_found"


def test_invalid_rows_are_not_counted(heart_client):
    reset(heart_client)
    client = heart_client.test_client()
    assert client.post("/models/heart_failure/predict", json={"records": [{"Age": 50}]}).status_code == 422
    assert client.get("/models/heart_failure/drift").get_json()["rows_seen"] == 0


def test_shift_syntax():
    assert parse_shift("Age=+1sd") == ("Age", 1.0, True)
    assert parse_shift("Cholesterol=-20") == ("Cholesterol", -20.0, False)
    with pytest.raises(ValueError):
        parse_shift("Age+1")
    assert json.dumps(profile_to_dict(small_profile()))  # plain JSON, nothing else


def test_a_value_on_an_edge_falls_in_the_same_bin_served_as_float32_as_in_training():
    from slimserve.drift.profile import numeric_spec

    spec = numeric_spec("bmi", np.array([20.0, 27.32, 27.32, 27.32, 35.0]), edges=[27.32])
    served = spec.index(np.array([[27.32]], dtype=np.float32))  # what the table schema hands the model
    trained = spec.index(np.array([27.32], dtype=np.float64))
    assert served.tolist() == trained.tolist() == [1]


def test_rare_bins_are_pooled_before_the_chi_square_test():
    """Heart failure's held-back RestingBP at 100 rows: bins expecting < 5 rows are merged, as Pearson needs."""
    reference = np.array([0.050409, 0.118529, 0.216621, 0.019074, 0.19346, 0.032698, 0.16485, 0.099455,
                          0.104905, 0.0]) * 734
    observed = np.array([8, 12, 22, 3, 17, 13, 11, 5, 8, 1])
    # Expected window counts under H0 are below 5 in bins 3 and 9 (and 0): pooled, then joined if still rare.
    table = np.stack([reference, observed])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    rare = expected.min(axis=0) < 5
    pooled = np.concatenate([table[:, ~rare], table[:, rare].sum(axis=1, keepdims=True)], axis=1)
    assert chi_square_two_sample(reference, observed) == pytest.approx(
        stats.chi2_contingency(pooled, correction=False).pvalue, rel=1e-9)


def test_drift_of_a_guarded_model_needs_its_credentials():
    from tests.auth_support import key_for

    key, line = key_for("heart_failure", name="drift")
    other_key, other_line = key_for("diabetes", name="other")
    app = create_app({"MODEL_PATH": str(HEART), "MODEL_REPOSITORY": None, "LOAD_ASYNC": False,
                      "RATELIMIT_ENABLED": False, "AUDIT_SINK": "off", "AUTO_COMPILE": False,
                      "API_KEYS": f"{line}\n{other_line}"})
    client = app.test_client()
    assert client.get("/models/heart_failure/drift").status_code == 401
    assert client.get("/models/heart_failure/drift", headers={"X-API-Key": other_key}).status_code == 403
    assert client.get("/models/heart_failure/drift", headers={"X-API-Key": key}).status_code == 200


def test_the_openapi_document_describes_the_drift_route_the_server_answers(heart_client):
    from openapi_spec_validator import validate

    client = heart_client.test_client()
    spec = client.get("/openapi.json").get_json()
    validate(spec)
    operation = spec["paths"]["/models/heart_failure/drift"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("DriftReport")
    body = client.get("/models/heart_failure/drift").get_json()
    assert set(body) == set(spec["components"]["schemas"]["DriftReport"]["properties"])
    assert "/metrics" in spec["paths"]
