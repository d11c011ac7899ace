"""Pneumonia 1.0.0 and 2.0.0 side by side over HTTP: versions, out-of-scope refusal, heatmaps, model cards."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from slimserve import create_app
from slimserve.paths import BUNDLED_MODELS
from tests.conftest import SAMPLES, needs_shared

PNEUMONIA = BUNDLED_MODELS / "pneumonia"


def make_client(**config):
    return create_app({"MODEL_PATH": str(PNEUMONIA / "2.0.0" / "model.h5"), "MODEL_REPOSITORY": str(PNEUMONIA),
                       "LOAD_ASYNC": False, "AUDIT_SINK": "off", "RATELIMIT_ENABLED": False, **config}).test_client()


@pytest.fixture(scope="module")
def client():
    return make_client()


def samples() -> list:
    needs_shared(SAMPLES)
    return sorted(SAMPLES.glob("*.jpeg"))


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_newest_version_is_the_default_and_every_version_is_listed(client):
    model = client.get("/models/pneumonia").get_json()
    assert model["version"] == "2.0.0" and model["refuses_out_of_scope"] and model["explains"]
    assert model["versions"] == [{"version": "1.0.0", "default": False, "ready": True},
                                 {"version": "2.0.0", "default": True, "ready": True}]
    assert "Intended use" in model["model_card"]


def test_a_version_is_picked_by_its_route_and_the_default_by_configuration(client):
    image = samples()[0].read_bytes()
    assert client.post("/predict", data=image, content_type="image/jpeg").get_json()["version"] == "2.0.0"
    old = client.post("/models/pneumonia/versions/1.0.0/predict", data=image, content_type="image/jpeg")
    assert old.status_code == 200 and old.get_json()["version"] == "1.0.0"
    pinned = make_client(MODEL_VERSIONS="pneumonia=1.0.0")
    assert pinned.post("/predict", data=image, content_type="image/jpeg").get_json()["version"] == "1.0.0"
    missing = client.post("/models/pneumonia/versions/9.9.9/predict", data=image, content_type="image/jpeg")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "version_not_found"


def test_every_sample_x_ray_is_accepted(client):
    for path in samples():
        response = client.post("/predict", data=path.read_bytes(), content_type="image/jpeg")
        assert response.status_code == 200, path.name


@pytest.mark.parametrize("image", [
    np.full((256, 256), 128, np.uint8),  # a flat grey square: 1.0.0 called it PNEUMONIA (P 0.9994)
    (np.random.default_rng(0).random((300, 300, 3)) * 255).astype(np.uint8),  # colour noise (1.0.0: 0.9995)
    np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1)),  # a gradient
], ids=["grey", "noise", "gradient"])
def test_images_that_are_not_chest_x_rays_are_refused_without_a_prediction(client, image):
    response = client.post("/predict", data=png(image), content_type="image/png")
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"]["code"] == "not_a_chest_xray" and "prediction" not in body
    # The old model has no refusal: asked by version, it still answers (as it always did).
    assert client.post("/models/pneumonia/versions/1.0.0/predict", data=png(image),
                       content_type="image/png").status_code == 200


def test_explain_adds_a_heatmap_with_the_uploads_aspect_ratio(client):
    path = samples()[-1]
    with Image.open(path) as original:
        width, height = original.size
    response = client.post("/predict?explain=true", data=path.read_bytes(), content_type="image/jpeg")
    heatmap = response.get_json()["heatmap"]
    with Image.open(io.BytesIO(base64.b64decode(heatmap["data"]))) as drawn:
        assert drawn.format == "PNG" and drawn.size == (heatmap["width"], heatmap["height"])
    assert max(heatmap["width"], heatmap["height"]) <= 128
    assert abs(heatmap["width"] / heatmap["height"] - width / height) < 0.05
    assert "heatmap" not in client.post("/predict", data=path.read_bytes(), content_type="image/jpeg").get_json()


def test_explain_on_a_version_without_an_activation_map_is_a_clear_400(client):
    response = client.post("/models/pneumonia/versions/1.0.0/predict?explain=true",
                           data=samples()[0].read_bytes(), content_type="image/jpeg")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "explain_unavailable"


def test_a_model_path_naming_one_version_makes_it_that_names_default():
    client = create_app({"MODEL_PATH": str(PNEUMONIA / "1.0.0" / "model.h5"), "MODEL_REPOSITORY": str(PNEUMONIA),
                         "LOAD_ASYNC": False, "AUDIT_SINK": "off"}).test_client()
    assert client.get("/models/pneumonia").get_json()["version"] == "1.0.0"


def test_the_answer_is_already_what_its_schema_would_dump(client):
    # /predict returns its answer without a PredictionSchema.dump per request: it must be built in that shape.
    from slimserve.schemas import PredictionSchema

    for query in ("", "?explain=true"):
        body = client.post(f"/predict{query}", data=samples()[0].read_bytes(), content_type="image/jpeg",
                           headers={"X-Filename": "a.jpeg"}).get_json()
        assert PredictionSchema().dump(body) == body
        assert PredictionSchema().validate(body) == {}


def test_the_spec_offers_explain_only_where_an_activation_map_exists(client):
    paths = client.get("/openapi.json").get_json()["paths"]

    def params(path):
        return {p["name"] for p in paths[path]["post"]["parameters"]}

    assert "explain" in params("/predict") and "explain" in params("/models/pneumonia/predict")
    assert "explain" not in params("/models/pneumonia/versions/1.0.0/predict")  # 1.0.0 answers 400 to it
