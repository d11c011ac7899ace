"""The real gunicorn server on the bundled model: HTTP end to end, and TensorFlow never loaded."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from tests.conftest import BUNDLED, REPO, SAMPLES, needs_shared
from tests.server_process import ServerProcess, multipart

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    needs_shared(SAMPLES)
    with ServerProcess({"MODEL_PATH": str(BUNDLED), "SLIMSERVE_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024)}) as srv:
        srv.wait_ready()
        yield srv


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.jpeg")) or ["none"])
def test_curl_style_upload_of_every_sample(server, sample):
    body, content_type = multipart("file", sample, (SAMPLES / sample).read_bytes())
    status, data, _ = server.request("POST", "/predict", body, {"Content-Type": content_type})
    assert status == 200
    assert list(data)[:3] == ["filename", "prediction", "probability"]
    assert data["filename"] == sample and data["prediction"] in {"NORMAL", "PNEUMONIA"}
    assert 0.0 <= data["probability"] <= 1.0 and data["model"] == "pneumonia"


def test_chunked_upload_over_the_limit_is_refused_with_413(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "image/jpeg")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"\xff\xd8\xff" + b"\0" * (64 * 1024 - 3)
        try:
            for _ in range(64):  # 4 MB against a 2 MB limit, bounded
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading once it has answered
        response = conn.getresponse()
        assert response.status == 413
        assert b"payload_too_large" in response.read()
    finally:
        conn.close()


def test_content_length_over_the_limit_is_413_before_the_body_is_sent(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "image/jpeg")
        conn.putheader("Content-Length", str(50 * 1024 * 1024))
        conn.endheaders()
        response = conn.getresponse()  # no body sent at all
        assert response.status == 413
    finally:
        conn.close()


def test_serving_processes_never_load_tensorflow(server):
    # TensorFlow is installed in this environment, so any import would map its libraries.
    assert server.request("GET", "/version")[0] == 200
    for pid in server.pids():
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "onnxruntime" in maps or pid == server.pids()[0]
        assert "tensorflow" not in maps and "keras" not in maps, f"pid {pid} mapped TensorFlow"


def test_runtime_requirements_have_no_tensorflow():
    requirements = (REPO / "requirements.txt").read_text().lower()
    for package in ("tensorflow", "keras", "tf-keras", "tf2onnx", "scikit-image", "scipy"):
        assert f"\n{package}" not in "\n" + requirements
