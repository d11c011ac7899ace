"""Liveness, readiness, version, model metadata and the OpenAPI document."""

from __future__ import annotations

import io
import threading

from slimserve import __version__, create_app
from tests.conftest import FakeRuntime, image_bytes


def gated_app(model_path, gate: threading.Event, wait: float = 0.05):
    """An app whose model load blocks until `gate` is set."""
    table = {"onnx": lambda manifest, options: FakeRuntime(manifest, options, gate=gate)}
    return create_app({"MODEL_PATH": str(model_path), "RUNTIMES": table, "LOAD_ASYNC": True,
                       "READY_WAIT_SECONDS": wait})


def test_health_is_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_is_200_when_loaded(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json() == {"ready": True, "models": {"pneumonia": "ready"}}


def test_ready_is_503_while_loading_and_health_still_answers(model_path):
    gate = threading.Event()
    client = gated_app(model_path, gate).test_client()
    try:
        response = client.get("/ready")
        assert response.status_code == 503
        assert response.get_json()["models"] == {"pneumonia": "loading"}
        assert client.get("/health").status_code == 200
    finally:
        gate.set()


def test_predict_waits_then_503_with_retry_after_while_loading(model_path):
    gate = threading.Event()
    client = gated_app(model_path, gate).test_client()
    try:
        response = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "model_loading"
        assert response.headers["Retry-After"] == "1"
    finally:
        gate.set()


def test_predict_during_load_answers_once_the_model_is_ready(model_path):
    gate = threading.Event()
    client = gated_app(model_path, gate, wait=10).test_client()
    threading.Timer(0.2, gate.set).start()
    response = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
    assert response.status_code == 200


def test_failed_model_load_is_reported_not_raised(model_path):
    class Broken(FakeRuntime):
        def load(self):
            raise RuntimeError("corrupt weights")

    app = create_app({"MODEL_PATH": str(model_path), "LOAD_ASYNC": False,
                      "RUNTIMES": {"onnx": lambda m, o: Broken(m, o)}})
    client = app.test_client()
    assert client.get("/ready").get_json()["models"] == {"pneumonia": "failed"}
    response = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "model_unavailable"


def test_version_reports_commit_and_models(client):
    body = client.get("/version").get_json()
    assert body["git_commit"] == "abc1234"
    assert body["version"] == __version__
    assert body["models"] == [{"name": "pneumonia", "version": "9.9.9"}]


def test_render_commit_wins_over_build_arg(model_path, fake_runtimes):
    app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "GIT_COMMIT": "buildarg", "RENDER_GIT_COMMIT": "render123"})
    assert app.test_client().get("/version").get_json()["git_commit"] == "render123"


def test_models_lists_the_default_model(client):
    body = client.get("/models").get_json()
    assert body["default_model"] == "pneumonia"
    assert [m["name"] for m in body["models"]] == ["pneumonia"]


def test_model_metadata_includes_the_input_contract(client):
    body = client.get("/models/pneumonia").get_json()
    assert body["input"]["height"] == 28 and body["input"]["color"] == "grayscale"
    assert body["input"]["crop"] == "center_square" and body["input"]["resize"] == "bilinear"
    assert body["labels"] == ["NORMAL", "PNEUMONIA"]
    assert body["accepts"] == ["image/jpeg", "image/png"]


def test_model_ready_route(client):
    assert client.get("/models/pneumonia/ready").status_code == 200


def test_openapi_document_is_valid_and_covers_the_routes(client):
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").get_json()
    validate(spec)
    assert {"/predict", "/health", "/ready", "/version", "/models", "/models/{name}"} <= set(spec["paths"])
    assert "Prediction" in spec["components"]["schemas"]
