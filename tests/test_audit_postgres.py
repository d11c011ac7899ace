"""The PostgreSQL audit sink against a real server: records land, survive a 10 s outage, and can be queried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from slimserve import create_app
from tests.auth_support import REPO
from tests.conftest import BUNDLED, image_bytes, write_fake_model
from tests.infra_postgres import cluster_fixture  # noqa: F401 (the `cluster` fixture)
from tests.server_process import ServerProcess

AUDIT_KEY = "pg-audit-key-abcdef"



@pytest.fixture
def app(cluster, tmp_path, fake_runtimes):
    """An app whose audit sink is the cluster."""
    app = create_app({"MODEL_PATH": str(write_fake_model(tmp_path / "p")), "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False, "DATABASE_URL": cluster.url,
                      "AUDIT_KEY": AUDIT_KEY, "RATELIMIT_ENABLED": False})  # the outage test sends >60/min
    yield app
    app.extensions["slimserve.audit"].close()


def stored(url: str, request_ids: list[str]) -> dict[str, dict]:
    """Stored records by request id."""
    from slimserve.audit.postgres import query

    return {r["request_id"]: r for r in query(url, limit=100_000) if r["request_id"] in set(request_ids)}


def predict(client, request_id: str, patient: str = "P-1"):
    """One public image prediction with a request id and a patient id."""
    return client.post("/predict", data=image_bytes(), content_type="image/jpeg",
                       headers={"X-Request-ID": request_id, "X-Patient-ID": patient})


def test_records_reach_postgres_with_every_field(app, cluster):
    """A prediction's record is in the table, pseudonymous, with its status and model version."""
    client = app.test_client()
    assert predict(client, "pg-one", "MRN-1").status_code == 200
    assert app.extensions["slimserve.audit"].flush(10)
    record = stored(cluster.url, ["pg-one"])["pg-one"]
    assert (record["status"], record["outcome"], record["model"], record["model_version"]) == (
        200, "accepted", "pneumonia", "9.9.9")
    assert record["patient_ref"] and "MRN-1" not in json.dumps(record)


def test_a_ten_second_outage_loses_no_record(app, cluster):
    """Requests during a 10 s database outage all succeed; every record arrives after the database returns."""
    client = app.test_client()
    ids = []
    cluster.stop()
    try:
        until = time.monotonic() + 10
        while time.monotonic() < until:
            ids.append(f"outage-{len(ids)}")
            assert predict(client, ids[-1]).status_code == 200
            time.sleep(0.05)
    finally:
        cluster.start()
    assert app.extensions["slimserve.audit"].flush(30), "records still pending 30 s after recovery"
    assert set(stored(cluster.url, ids)) == set(ids)
    assert len(ids) > 50


def test_cli_lists_a_patients_records_from_postgres(app, cluster):
    """`slimserve audit --patient-id` computes the HMAC and finds exactly that patient's records."""
    client = app.test_client()
    for i, patient in enumerate(["Q-1", "Q-2", "Q-1"]):
        predict(client, f"cli-{i}", patient)
    assert app.extensions["slimserve.audit"].flush(10)
    env = {"PYTHONPATH": str(REPO / "src"), "SLIMSERVE_AUDIT_KEY": AUDIT_KEY, "DATABASE_URL": cluster.url,
           "PATH": os.environ["PATH"]}
    done = subprocess.run([sys.executable, "-m", "slimserve", "audit", "--patient-id", "Q-1", "--model",
                           "pneumonia"], capture_output=True, text=True, env=env, check=True)
    assert sorted(r["request_id"] for r in json.loads(done.stdout)) == ["cli-0", "cli-2"]


def served_ids(server: ServerProcess, prefix: str, count: int, pause: float = 0.0) -> list[str]:
    """`count` public predictions through real gunicorn, each with its own request id; all must be 200."""
    ids = []
    for i in range(count):
        ids.append(f"{prefix}-{i}")
        status, _, _ = server.request("POST", "/predict", image_bytes(), {
            "Content-Type": "image/jpeg", "X-Request-ID": ids[-1], "X-Patient-ID": "E2E-1"})
        assert status == 200
        time.sleep(pause)
    return ids


def wait_stored(url: str, ids: list[str], timeout: float = 30) -> set[str]:
    """Poll the table until every id is there (or the timeout passes); the ids found."""
    deadline = time.monotonic() + timeout
    found: set[str] = set()
    while time.monotonic() < deadline and found != set(ids):
        found = set(stored(url, ids))
        time.sleep(0.2)
    return found


@pytest.mark.slow
def test_gunicorn_keeps_every_record_through_a_ten_second_outage(cluster):
    """Under real gunicorn, requests before, during and after a 10 s outage are all in the table afterwards."""
    env = {"MODEL_PATH": str(BUNDLED), "DATABASE_URL": cluster.url, "SLIMSERVE_AUDIT_KEY": AUDIT_KEY,
           "SLIMSERVE_RATE_LIMIT_ENABLED": "false"}
    with ServerProcess(env) as server:
        server.wait_ready()
        ids = served_ids(server, "gu-before", 10)
        cluster.stop()
        try:
            started = time.monotonic()
            while time.monotonic() - started < 10:
                ids += served_ids(server, f"gu-during-{len(ids)}", 1, pause=0.1)
        finally:
            cluster.start()
        ids += served_ids(server, "gu-after", 10)
        found = wait_stored(cluster.url, ids)
        log = server.stop()
    assert found == set(ids), f"{len(set(ids) - found)} records missing"
    assert "audit sink postgresql unavailable" in log and "is back" in log


@pytest.mark.slow
def test_records_pending_at_shutdown_go_to_stdout(cluster):
    """SIGTERM while the database is down: the worker writes the records it still holds to its log."""
    env = {"MODEL_PATH": str(BUNDLED), "DATABASE_URL": cluster.url, "SLIMSERVE_AUDIT_KEY": AUDIT_KEY,
           "SLIMSERVE_RATE_LIMIT_ENABLED": "false"}
    with ServerProcess(env) as server:
        server.wait_ready()
        cluster.stop()
        try:
            ids = served_ids(server, "pending", 5)
            log = server.stop()
        finally:
            cluster.start()
    diverted = {json.loads(x[x.index("{"):])["request_id"] for x in log.splitlines()
                if '"type":"slimserve.audit"' in x}
    assert diverted == set(ids)
