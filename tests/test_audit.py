"""The audit trail: one record per prediction request, pseudonymous, and a writer that never loses records."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import subprocess
import sys
import threading

import pytest

from slimserve import create_app
from slimserve.audit.sinks import BackgroundWriter, StdoutSink
from tests.auth_support import REPO, key_for
from tests.conftest import image_bytes, write_fake_model, write_fake_tabular_model

AUDIT_KEY = "test-audit-key-0123456789"
RECORD = {"Age": 50, "Sex": "M", "Cholesterol": 200, "FastingBS": False}


@pytest.fixture
def app(tmp_path, fake_runtimes):
    """An image model (public) and a tabular model (key), the stdout sink, an audit key."""
    write_fake_model(tmp_path / "models" / "pneumonia")
    write_fake_tabular_model(tmp_path / "models" / "heart")
    key, line = key_for("heart")
    app = create_app({"MODEL_PATH": str(tmp_path / "models"), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "AUTO_COMPILE": False, "API_KEYS": line, "AUDIT_KEY": AUDIT_KEY,
                      "DEFAULT_MODEL": "pneumonia"})
    app.config["TEST_KEY"] = key
    return app


def audit_lines(text: str) -> list[dict]:
    """The audit records among captured stdout lines."""
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"type":"slimserve.audit"')]


def test_one_record_per_prediction_request_whatever_the_outcome(app, capsys):
    """Accepted, unauthenticated, forbidden-by-policy, invalid and unknown-model requests all leave a record."""
    client, key = app.test_client(), app.config["TEST_KEY"]
    client.post("/models/heart/predict", json={"records": [RECORD]}, headers={"X-API-Key": key})  # 200
    client.post("/models/heart/predict", json={"records": [RECORD]})  # 401
    client.post("/models/heart/predict", json={"records": [{"Age": "x"}]}, headers={"X-API-Key": key})  # 422
    client.post("/models/nosuch/predict", json={"records": [RECORD]})  # 404
    client.post("/predict", data=image_bytes(), content_type="image/jpeg")  # 200, public
    client.get("/models")  # not a prediction: no record
    records = audit_lines(capsys.readouterr().out)
    assert [(r["status"], r["outcome"]) for r in records] == [
        (200, "accepted"), (401, "unauthenticated"), (422, "refused"), (404, "refused"), (200, "accepted")]
    assert [r["model"] for r in records] == ["heart", "heart", "heart", None, "pneumonia"]
    assert records[0]["principal"].startswith("key:") and records[1]["principal"] is None
    assert records[0]["model_version"] == "1.0.0" and records[4]["model_version"] == "9.9.9"
    assert len({r["record_id"] for r in records}) == 5 and all(r["latency_ms"] >= 0 for r in records)


def test_input_hash_is_the_sha256_of_the_body_and_none_when_refused_unread(app, capsys):
    """The hash covers exactly the bytes sent; a request refused before reading has no hash."""
    client = app.test_client()
    body = image_bytes()
    client.post("/predict", data=body, content_type="image/jpeg")
    payload = json.dumps({"records": [RECORD]}).encode()
    client.post("/models/heart/predict", data=payload, content_type="application/json")  # 401
    first, second = audit_lines(capsys.readouterr().out)
    assert first["input_sha256"] == hashlib.sha256(body).hexdigest()
    assert second["input_sha256"] is None


def test_patient_reference_is_an_hmac_and_the_id_never_appears(app, capsys):
    """X-Patient-ID is stored as HMAC-SHA256 under the audit key, never in the clear; nor is the file name."""
    client = app.test_client()
    client.post("/predict?filename=Jane_Doe_MRN123456.jpeg", data=image_bytes(), content_type="image/jpeg",
                headers={"X-Patient-ID": "MRN-123456"})
    out = capsys.readouterr().out
    (record,) = audit_lines(out)
    assert record["patient_ref"] == hmac.new(AUDIT_KEY.encode(), b"MRN-123456", hashlib.sha256).hexdigest()
    assert "MRN-123456" not in out and "123456" not in out.replace(record["patient_ref"], "")
    assert "Jane_Doe" not in out


def test_without_an_audit_key_the_patient_id_is_not_recorded(tmp_path, fake_runtimes, capsys):
    """No key: no reference at all, rather than the raw id or an unkeyed (guessable) hash."""
    app = create_app({"MODEL_PATH": str(write_fake_model(tmp_path / "p")), "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False})
    app.test_client().post("/predict", data=image_bytes(), content_type="image/jpeg",
                           headers={"X-Patient-ID": "MRN-777"})
    out = capsys.readouterr().out
    assert audit_lines(out)[0]["patient_ref"] is None and "MRN-777" not in out


def test_a_broken_sink_never_fails_the_prediction(app, capsys, monkeypatch):
    """If writing the record raises, the client still gets its answer."""
    monkeypatch.setattr(StdoutSink, "write", lambda self, records: 1 / 0)
    response = app.test_client().post("/predict", data=image_bytes(), content_type="image/jpeg")
    assert response.status_code == 200


class FlakySink:
    """Fails while `down` is set, records what it accepted."""

    name = "flaky"

    def __init__(self) -> None:
        self.down = threading.Event()
        self.stored: list[dict] = []

    def write(self, records: list[dict]) -> None:
        if self.down.is_set():
            raise ConnectionError("sink down")
        self.stored.extend(records)


def test_writer_retries_during_an_outage_and_delivers_everything_in_order():
    """Records submitted while the sink is down arrive, once each, after it recovers."""
    sink = FlakySink()
    writer = BackgroundWriter(sink, capacity=1000, sleep=lambda s: threading.Event().wait(0.01))
    sink.down.set()
    for i in range(300):
        writer.submit({"n": i})
    assert not writer.flush(timeout=0.3)  # held, not lost
    sink.down.clear()
    assert writer.flush(timeout=5)
    assert [r["n"] for r in sink.stored] == list(range(300))


def test_a_full_queue_diverts_to_stdout_instead_of_blocking_or_dropping():
    """Past the bound, records go to the fallback at once."""
    sink, fallback = FlakySink(), StdoutSink(io.StringIO())
    sink.down.set()
    writer = BackgroundWriter(sink, capacity=10, fallback=fallback, sleep=lambda s: threading.Event().wait(0.01))
    for i in range(100):
        writer.submit({"n": i})
    writer.close()
    lines = [json.loads(x)["n"] for x in fallback.stream.getvalue().splitlines()]
    assert sorted(lines + [r["n"] for r in sink.stored]) == list(range(100))


def test_cli_lists_a_patients_records_from_a_log_file(app, capsys, tmp_path):
    """`slimserve audit --patient-id X --file log` finds that patient's records (needs the audit key)."""
    client = app.test_client()
    for patient in ("A-1", "B-2", "A-1"):
        client.post("/predict", data=image_bytes(), content_type="image/jpeg", headers={"X-Patient-ID": patient})
    log = tmp_path / "server.log"
    log.write_text("some access log line\n" + capsys.readouterr().out)
    env = {"PYTHONPATH": str(REPO / "src"), "SLIMSERVE_AUDIT_KEY": AUDIT_KEY}
    done = subprocess.run([sys.executable, "-m", "slimserve", "audit", "--patient-id", "A-1", "--file", str(log),
                           "--model", "pneumonia", "--since", "2000-01-01"], capture_output=True, text=True,
                          env=env, check=True)
    assert len(json.loads(done.stdout)) == 2
    refused = subprocess.run([sys.executable, "-m", "slimserve", "audit", "--patient-id", "A-1", "--file",
                              str(log)], capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src")})
    assert refused.returncode == 1 and "SLIMSERVE_AUDIT_KEY" in refused.stderr


def test_the_worker_loop_recorder_audits_prediction_paths_only(app, capsys):
    """Answers the event loop gives itself (shed, timed out) are recorded for prediction routes, nothing else."""
    record = app.extensions["slimserve.audit_loop"]
    record("POST", "/predict", 503, "loop-1")
    record("POST", "/models/heart/invocations", 503, "loop-2")
    record("POST", "/models/nosuch/predict", 408, "loop-3")
    record("GET", "/predict", 405, "loop-4")
    record("POST", "/health", 503, "loop-5")
    record("", "", 400, "loop-6")
    records = audit_lines(capsys.readouterr().out)
    assert [(r["request_id"], r["model"], r["route"], r["status"], r["outcome"]) for r in records] == [
        ("loop-1", "pneumonia", "/predict", 503, "refused"),
        ("loop-2", "heart", "/models/<name>/invocations", 503, "refused"),
        ("loop-3", None, "/models/<name>/predict", 408, "refused"),
    ]
    assert all(r["latency_ms"] is None and r["principal"] is None for r in records)
