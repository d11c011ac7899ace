"""/metrics: requests, latency, in-flight, refusals, load time, build info, memory; no client-made labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from slimserve import create_app
from tests.conftest import image_bytes, write_fake_model, write_fake_tabular_model


@pytest.fixture
def client(tmp_path, fake_runtimes):
    write_fake_model(tmp_path / "pneumonia")
    write_fake_tabular_model(tmp_path / "heart")
    app = create_app({"MODEL_PATH": str(tmp_path), "DEFAULT_MODEL": "pneumonia", "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False, "RATELIMIT_ENABLED": False})
    return app.test_client()


def samples(client) -> dict[str, list]:
    """Every sample of the exposition by name, as (labels, value)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found: dict, name: str, **labels) -> float:
    """The value of the one sample of `name` whose labels include `labels` (0 if none)."""
    matching = [v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(matching) <= 1, matching
    return matching[0] if matching else 0.0


def test_predictions_are_counted_by_route_model_version_and_status(client):
    for _ in range(3):
        assert client.post("/predict", data=image_bytes(), content_type="image/jpeg").status_code == 200
    assert client.post("/models/heart/predict", json={"records": [{"Age": 50}]}).status_code == 422
    found = samples(client)
    assert value(found, "slimserve_requests_total", route="/predict", model="pneumonia", version="9.9.9",
                 status="200", method="POST") == 3
    assert value(found, "slimserve_requests_total", route="/models/<name>/predict", model="heart",
                 version="1.0.0", status="422") == 1
    assert value(found, "slimserve_request_duration_seconds_count", route="/predict", model="pneumonia") == 3


def test_refusals_are_counted_by_error_code(client):
    client.post("/models/heart/predict", json={"records": [{"Age": 50}]})
    client.post("/predict", data=b"not an image", content_type="image/jpeg")
    found = samples(client)
    refusals = {lab["code"] for lab, _ in found["slimserve_refusals_total"]}
    assert len(refusals) == 2 and all(refusals)
    assert value(found, "slimserve_refusals_total", model="heart", status="422") == 1


def test_client_input_never_becomes_a_label_value(client):
    client.get("/models/attacker-chosen-name")
    client.get("/no/such/route/attacker")
    client.open("/predict", method="ATTACKERMETHOD")
    text = client.get("/metrics").get_data(as_text=True)
    assert "attacker" not in text.lower()
    found = samples(client)
    assert value(found, "slimserve_requests_total", route="/models/<name>", model="", status="404") == 1
    assert value(found, "slimserve_requests_total", route="unmatched", status="404") == 1


def test_in_flight_returns_to_zero_and_process_facts_are_there(client):
    client.post("/predict", data=image_bytes(), content_type="image/jpeg")
    found = samples(client)
    # The scrape itself is the one request in flight while the exposition is written.
    assert value(found, "slimserve_requests_in_flight") == 1
    assert value(found, "process_resident_memory_bytes") > 10 * 1024 * 1024
    assert value(found, "slimserve_build_info") == 1
    assert value(found, "slimserve_model_ready", model="heart", version="1.0.0") == 1
    assert value(found, "slimserve_model_load_seconds", model="pneumonia", version="9.9.9") >= 0
    assert {lab["model"] for lab, _ in found["slimserve_model_load_seconds"]} == {"pneumonia", "heart"}


def test_metrics_token_when_configured(tmp_path, fake_runtimes):
    write_fake_model(tmp_path / "pneumonia")
    app = create_app({"MODEL_PATH": str(tmp_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "AUTO_COMPILE": False, "METRICS_TOKEN": "scrape-secret-123"})
    client = app.test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "credentials_required"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
    assert allowed.status_code == 200 and b"slimserve_requests_total" in allowed.data
