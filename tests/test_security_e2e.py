"""End to end on real gunicorn: markers sent in every field never come back out, and every prediction is audited.

Markers go into the API key, the bearer token, X-Patient-ID, the file name (query string, X-Filename,
multipart part) and submitted values. Afterwards every response (body and headers) and everything the server
wrote (access log, error log, audit records on stdout) is searched for them.
"""

from __future__ import annotations

import http.client
import json
import uuid

import pytest

from tests.auth_support import BUNDLED_MODELS, LoopbackIssuer, bundled_manifests, key_for, valid_record
from tests.conftest import REPO
from tests.server_process import ServerProcess, all_at_once, multipart

XRAY = REPO / "tests" / "data" / "sample_xray.jpeg"

pytestmark = pytest.mark.slow

PATIENT = "PATIENTMARKER-Jane-Doe-MRN-5551234"
FILENAME = "FILENAMEMARKER_Jane_Doe_MRN5551234.jpeg"
VALUE = "VALUEMARKER-3f9c"
NUMBER = 87.654321  # a submitted value that is valid, so it reaches the model
AUDIT_KEY = "e2e-audit-key-5d1f0c"


def send(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, bytes]:
    """One request; the status and everything that came back (status line, headers, body) as bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        head = "".join(f"{k}: {v}\n" for k, v in response.getheaders())
        return response.status, head.encode() + raw
    finally:
        conn.close()


def test_no_marker_leaks_and_every_prediction_is_audited():
    """Responses, access/error logs and audit records hold no secret, patient id, file name or value."""
    issuer = LoopbackIssuer()
    key, line = key_for("aids", "pneumonia", name="e2e")
    other_key, other_line = key_for("diabetes", name="other")
    wrong_key = key[:-43] + "W" * 43
    token = issuer.token(models=["aids"], amr=["pwd", "otp"])
    expired = issuer.token(models=["aids"], expires_in=-300)
    secrets = {"key": key, "key secret": key[17:], "other key": other_key, "wrong key": wrong_key[17:],
               "token": token, "token signature": token.rsplit(".", 1)[1], "expired token": expired,
               "audit key": AUDIT_KEY, "patient": PATIENT, "patient digits": "5551234", "file name": FILENAME,
               "file stem": "FILENAMEMARKER", "value": VALUE, "number": str(NUMBER)}
    env = {"MODEL_REPOSITORY": str(BUNDLED_MODELS), "SLIMSERVE_API_KEYS": f"{line}\n{other_line}",
           "SLIMSERVE_AUDIT_KEY": AUDIT_KEY, "LOG_LEVEL": "debug", **{
               f"SLIMSERVE_{k}": v for k, v in issuer.config().items()}}
    aids = next(m for m in bundled_manifests() if m.name == "aids")
    number_field = next(f.name for f in aids.features if f.type == "number")
    good = {**valid_record(aids), number_field: NUMBER}
    bad = {**valid_record(aids), number_field: VALUE}
    image = XRAY.read_bytes()  # a real X-ray: pneumonia 2.0.0 refuses what is not one
    raw_headers = {"Content-Type": "image/jpeg", "X-Patient-ID": PATIENT}
    form, form_type = multipart("file", FILENAME, image)
    requests = [  # (method, path, body, headers, expected status)
        ("POST", f"/predict?filename={FILENAME}", image, raw_headers, 200),
        ("POST", "/predict", image, {**raw_headers, "X-Filename": FILENAME}, 200),
        ("POST", "/predict", form, {"Content-Type": form_type, "X-Patient-ID": PATIENT}, 200),
        ("POST", "/models/aids/predict", json.dumps({"records": [good]}).encode(),
         {"Content-Type": "application/json", "X-API-Key": key, "X-Patient-ID": PATIENT}, 200),
        ("POST", "/models/aids/predict", json.dumps({"records": [bad]}).encode(),
         {"Content-Type": "application/json", "Authorization": f"Bearer {token}", "X-Patient-ID": PATIENT}, 422),
        ("POST", "/models/aids/invocations", json.dumps({"dataframe_records": [good]}).encode(),
         {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, 200),
        ("POST", f"/models/aids/predict?filename={FILENAME}", json.dumps({"records": [good]}).encode(),
         {"Content-Type": "application/json", "X-API-Key": wrong_key, "X-Patient-ID": PATIENT}, 401),
        ("POST", "/models/aids/predict", json.dumps({"records": [good]}).encode(),
         {"Content-Type": "application/json", "Authorization": f"Bearer {expired}"}, 401),
        ("POST", "/models/aids/predict", json.dumps({"records": [good]}).encode(),
         {"Content-Type": "application/json", "X-API-Key": other_key}, 403),
        ("POST", f"/models/aids/predict?filename={FILENAME}", json.dumps({"records": [good]}).encode(),
         {"Content-Type": "application/json", "X-Patient-ID": PATIENT}, 401),
    ]
    seen: list[bytes] = []
    try:
        with ServerProcess(env) as server:
            server.wait_ready(timeout=120)
            request_ids = []
            for method, path, body, headers, expected in requests:
                request_id = uuid.uuid4().hex
                status, raw = send(server.port, method, path, body, {**headers, "X-Request-ID": request_id})
                assert status == expected, (path, status, raw[-300:])
                # The one deliberate echo: a 200 image prediction returns the caller's own file name to that
                # caller (the documented `filename` field). Anywhere else the name must not appear.
                echo = f'"filename":"{FILENAME}"'.encode()
                seen.append(raw.replace(echo, b'"filename":<echoed to its sender>', 1) if status == 200 else raw)
                request_ids.append(request_id)
            log = server.stop()
    finally:
        issuer.close()
    everything = b"\n".join(seen).decode("utf-8", "replace") + "\n" + log
    leaks = [name for name, marker in secrets.items() if marker in everything]
    assert leaks == [], f"leaked: {leaks}"
    audit = [json.loads(x[x.index("{"):]) for x in log.splitlines() if '"type":"slimserve.audit"' in x]
    assert sorted(r["request_id"] for r in audit) == sorted(request_ids)  # 100 %: one record per request
    assert {r["principal"] for r in audit} >= {f"key:{key[4:16]}", "sub:clinician-42"}
    access = [x for x in log.splitlines() if '"POST /' in x]
    assert len(access) == len(requests) and all("?" not in x for x in access)


def test_predictions_shed_by_the_worker_are_audited_too():
    """Past the in-flight bound the event loop answers 503 itself; each of those answers has a record."""
    body, content_type = multipart("file", "x.jpeg", XRAY.read_bytes())
    request = (f"POST /predict HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    env = {"MODEL_REPOSITORY": "", "SLIMSERVE_MAX_INFLIGHT": "1", "GUNICORN_THREADS": "1"}
    with ServerProcess(env) as server:
        server.wait_ready()
        answers = all_at_once(server.port, request)  # all sent before any is answered: one can be in flight
        probe = send(server.port, "GET", "/health")[1].decode()  # answered by the loop as well
        log = server.stop()
    ids = {json.loads(a.split(b"\r\n\r\n", 1)[1])["request_id"]: int(a.split(b" ", 2)[1]) for a in answers}
    assert 503 in ids.values() and 200 in ids.values()
    audit = {r["request_id"]: r["status"] for r in map(json.loads, (x[x.index("{"):] for x in log.splitlines()
                                                                    if '"type":"slimserve.audit"' in x))}
    assert audit == ids
    assert "Referrer-Policy: no-referrer" in probe and "frame-ancestors 'none'" in probe
