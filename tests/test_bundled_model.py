"""The bundled pneumonia model: artifacts present and consistent, ONNX identical to TensorFlow on the test split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slimserve.manifest import load_manifest, sha256_file
from slimserve.registry import build_registry
from tests.conftest import BUNDLED, NPZ, needs_shared

FOLDER = BUNDLED.parent


def test_every_artifact_is_committed_beside_the_h5():
    for name in ("model.h5", "model.onnx", "manifest.json", "metrics.json", "confusion_matrix.png", "roc.png",
                 "training_curves.png"):
        assert (FOLDER / name).is_file(), name
    assert (FOLDER / "model.h5").stat().st_size <= 1024 * 1024


def test_manifest_records_the_committed_files():
    manifest = load_manifest(BUNDLED)
    assert manifest.source.sha256 == sha256_file(BUNDLED)
    assert manifest.compiled.source_sha256 == sha256_file(BUNDLED)
    assert manifest.compiled.sha256 == sha256_file(FOLDER / "model.onnx")
    assert manifest.labels == ["NORMAL", "PNEUMONIA"] and manifest.positive_label == "PNEUMONIA"


def onnx_probabilities(images: np.ndarray, runtime: str = "onnx") -> np.ndarray:
    """P(pneumonia) for uint8 28x28 images through the named runtime, in batches."""
    registry = build_registry(str(BUNDLED), runtime, auto_compile=False)
    registry.load_all(background=False)
    runtime_ = registry.get().runtime
    batch = images.astype(np.float32)[..., np.newaxis] / np.float32(255)
    return np.concatenate([runtime_.predict(batch[i:i + 128])[:, 1] for i in range(0, len(batch), 128)])


@pytest.fixture(scope="module")
def test_split():
    needs_shared(NPZ)
    with np.load(NPZ) as data:
        return data["test_images"], data["test_labels"].ravel()


def test_served_model_reproduces_the_reported_test_metrics(test_split):
    from sklearn.metrics import accuracy_score, roc_auc_score

    images, labels = test_split
    manifest = load_manifest(BUNDLED)
    scores = onnx_probabilities(images)
    predictions = (scores >= manifest.threshold).astype(int)
    metrics = json.loads((FOLDER / "metrics.json").read_text())["test"]
    assert accuracy_score(labels, predictions) == pytest.approx(metrics["accuracy"], abs=1e-3)
    assert roc_auc_score(labels, scores) == pytest.approx(metrics["auc"], abs=1e-3)


@pytest.mark.tensorflow
@pytest.mark.slow
def test_onnx_matches_tensorflow_within_1e_5_on_the_test_split(test_split):
    images, _ = test_split
    difference = np.abs(onnx_probabilities(images, "onnx") - onnx_probabilities(images, "tensorflow"))
    assert difference.max() < 1e-5


def test_draft_decoding_keeps_the_bundled_models_predictions():
    from slimserve.imaging import ImageLimits, open_image, preprocess
    from tests.conftest import SAMPLES

    needs_shared(SAMPLES)
    manifest = load_manifest(BUNDLED)
    registry = build_registry(str(BUNDLED), "onnx", auto_compile=False)
    registry.load_all(background=False)
    runtime = registry.get().runtime
    for sample in sorted(SAMPLES.glob("*.jpeg")):
        scores = [
            runtime.predict(preprocess(open_image(sample.read_bytes(), manifest.input, ImageLimits(), draft=draft),
                                       manifest.input)[np.newaxis])[0, 1]
            for draft in (True, False)
        ]
        assert abs(scores[0] - scores[1]) < 0.01, sample.name
        assert (scores[0] >= manifest.threshold) == (scores[1] >= manifest.threshold), sample.name
