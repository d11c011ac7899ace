"""Drift counts survive a restart when DATABASE_URL is set (a real PostgreSQL started by the test)."""

from __future__ import annotations

from slimserve import create_app
from slimserve.drift.simulate import simulate
from slimserve.paths import BUNDLED_MODELS
from tests.conftest import SHARED, needs_shared
from tests.infra_postgres import cluster_fixture  # noqa: F401 (the `cluster` fixture)

HEART = BUNDLED_MODELS / "heart_failure" / "1.0.0"



def heart_app(url: str):
    return create_app({"MODEL_PATH": str(HEART), "MODEL_REPOSITORY": None, "LOAD_ASYNC": False,
                       "RATELIMIT_ENABLED": False, "AUDIT_SINK": "off", "AUTO_COMPILE": False,
                       "DATABASE_URL": url, "DRIFT_FLUSH_SECONDS": 3600.0})


def send_with(app):
    client = app.test_client()

    def send(method, path, body):
        response = client.open(path, method=method, json=body)
        return response.status_code, response.get_json()

    return send


def test_counts_survive_a_restart(cluster):
    needs_shared(SHARED / "data" / "heart_failure" / "heart.csv")
    first = heart_app(cluster.url)
    assert first.extensions["slimserve.drift"]["store"] == "postgresql"
    simulate(send_with(first), "heart_failure", "Age=+1sd", 300, seed=7)
    before = first.test_client().get("/models/heart_failure/drift").get_json()
    first.extensions["slimserve.drift"]["flusher"].stop()  # what happens at exit

    second = heart_app(cluster.url)
    after = second.test_client().get("/models/heart_failure/drift").get_json()
    second.extensions["slimserve.drift"]["flusher"].stop()
    assert after["rows_seen"] == before["rows_seen"] == 300
    assert after["status"] == "drift"
    assert after["features"] == before["features"]


def test_a_database_outage_does_not_fail_predictions(cluster):
    needs_shared(SHARED / "data" / "heart_failure" / "heart.csv")
    app = heart_app(cluster.url)
    flusher = app.extensions["slimserve.drift"]["flusher"]
    restored_rows = app.test_client().get("/models/heart_failure/drift").get_json()["rows_seen"]
    cluster.stop()
    try:
        result = simulate(send_with(app), "heart_failure", None, 50, seed=8)
        assert result["answers"] == {"200": 2}
        flusher.flush()  # logs a warning and keeps the counts for the next round
        assert app.extensions["slimserve.drift"]["monitors"]["heart_failure"].dirty
    finally:
        cluster.start()
    flusher.stop()
    restored = heart_app(cluster.url)
    assert restored.test_client().get("/models/heart_failure/drift").get_json()["rows_seen"] == restored_rows + 50
    restored.extensions["slimserve.drift"]["flusher"].stop()
