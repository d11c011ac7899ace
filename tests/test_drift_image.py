"""Drift of the X-ray model: two image statistics and the predicted probability, from PneumoniaMNIST."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from slimserve import create_app
from slimserve.paths import BUNDLED_MODELS
from tests.conftest import NPZ, SAMPLES, needs_shared

PNEUMONIA = BUNDLED_MODELS / "pneumonia" / "1.0.0" / "model.h5"


@pytest.fixture
def app():
    return create_app({"MODEL_PATH": str(PNEUMONIA), "MODEL_REPOSITORY": None, "LOAD_ASYNC": False,
                       "RATELIMIT_ENABLED": False, "AUDIT_SINK": "off", "AUTO_COMPILE": False})


def png(pixels: np.ndarray) -> bytes:
    """A grayscale PNG of a uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def held_back(count: int) -> np.ndarray:
    """The first `count` images of the val split (not trained on; the test split has fewer pneumonias)."""
    needs_shared(NPZ)
    with np.load(NPZ, allow_pickle=False) as arrays:
        return arrays["val_images"][:count]


def send(client, images) -> dict:
    for pixels in images:
        assert client.post("/predict", data=png(pixels), content_type="image/png").status_code == 200
    return client.get("/models/pneumonia/drift").get_json()


def test_held_back_xrays_stay_ok(app):
    report = send(app.test_client(), held_back(250))
    assert report["judged"] and report["status"] == "ok", [(c["name"], c["psi"]) for c in report["features"]]
    assert [c["name"] for c in report["features"]] == ["image_mean", "image_std"]


def test_inverted_xrays_are_flagged(app):
    report = send(app.test_client(), 255 - held_back(250))
    mean = next(c for c in report["features"] if c["name"] == "image_mean")
    assert report["status"] == "drift" and mean["status"] == "drift"


def test_full_size_sample_jpegs_are_counted(app):
    needs_shared(SAMPLES)
    client = app.test_client()
    samples = sorted(SAMPLES.glob("*.jpeg"))
    for sample in samples:
        assert client.post("/predict", data=sample.read_bytes(), content_type="image/jpeg").status_code == 200
    assert client.get("/models/pneumonia/drift").get_json()["rows_seen"] == len(samples)


def test_the_test_splits_lower_pneumonia_share_shows_as_prediction_drift(app):
    """PneumoniaMNIST's test split is 62.5 % pneumonia, its train split 74 %: a prior shift the model sees."""
    needs_shared(NPZ)
    with np.load(NPZ, allow_pickle=False) as arrays:
        images = arrays["test_images"][:250]
    report = send(app.test_client(), images)
    assert report["prediction"]["status"] in ("warn", "drift")
    assert all(c["status"] == "ok" for c in report["features"] if c["name"] == "image_std")
