"""POST /predict: the documented success response, multipart and raw bodies."""

from __future__ import annotations

import io

from tests.conftest import image_bytes


def test_multipart_upload_returns_documented_keys_in_order(client):
    response = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "chest.jpeg")})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body)[:3] == ["filename", "prediction", "probability"]
    assert body["filename"] == "chest.jpeg"
    assert body["prediction"] == "PNEUMONIA"
    assert body["probability"] == 0.8
    assert body["model"] == "pneumonia" and body["version"] == "9.9.9"
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_probability_below_threshold_predicts_normal(client, fake_runtimes):
    fake_runtimes["onnx"].made[0].probability = 0.2
    body = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "x.jpg")}).get_json()
    assert body["prediction"] == "NORMAL"
    assert body["probability"] == 0.2
    assert body["probabilities"] == {"NORMAL": 0.8, "PNEUMONIA": 0.2}


def test_raw_jpeg_body_is_accepted_with_filename_from_query(client):
    response = client.post("/predict?filename=raw.jpg", data=image_bytes(), content_type="image/jpeg")
    assert response.status_code == 200
    assert response.get_json()["filename"] == "raw.jpg"


def test_raw_png_body_is_accepted(client):
    response = client.post("/predict", data=image_bytes(fmt="PNG"), content_type="image/png")
    assert response.status_code == 200
    assert response.get_json()["filename"] is None


def test_type_is_decided_by_bytes_not_by_name(client):
    png_named_jpeg = (io.BytesIO(image_bytes(fmt="PNG")), "looks-like.jpeg")
    assert client.post("/predict", data={"file": png_named_jpeg}).status_code == 200


def test_model_receives_the_contract_shape_and_scale(client, fake_runtimes):
    client.post("/predict", data={"file": (io.BytesIO(image_bytes(color=255)), "white.jpg")})
    batch = fake_runtimes["onnx"].made[0].batches[-1]
    assert batch.shape == (1, 28, 28, 1) and batch.dtype.name == "float32"
    assert abs(float(batch.max()) - 1.0) < 1e-6


def test_filename_loses_path_and_control_characters(client):
    upload = (io.BytesIO(image_bytes()), "../../etc/pa\x07ss.jpg")
    assert client.post("/predict", data={"file": upload}).get_json()["filename"] == "pass.jpg"


def test_client_request_id_is_echoed_when_plain(client):
    response = client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert response.headers["X-Request-ID"] == "trace-42"


def test_unsafe_client_request_id_is_replaced(client):
    response = client.get("/health", headers={"X-Request-ID": "bad id;<script>"})
    assert response.headers["X-Request-ID"] != "bad id;<script>"
    assert len(response.headers["X-Request-ID"]) == 32


def test_named_model_route_predicts(client):
    response = client.post("/models/pneumonia/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
    assert response.status_code == 200
    assert response.get_json()["model"] == "pneumonia"


def test_upload_page_is_served(client):
    response = client.get("/pages/pneumonia/try")
    assert response.status_code == 200
    assert b'type="file"' in response.data
