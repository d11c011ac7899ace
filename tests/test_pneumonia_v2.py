"""The committed pneumonia 2.0.0: calibrated in its graph, refuses what is not a chest X-ray, explains with a CAM."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from slimserve.explain import cam_png
from slimserve.imaging import ImageLimits, image_to_input
from slimserve.manifest import load_manifest, sha256_file
from slimserve.out_of_scope import is_out_of_scope
from slimserve.paths import REPO_ROOT
from slimserve.runtimes.base import RuntimeOptions
from slimserve.runtimes.onnx import OnnxRuntime
from tests.conftest import SAMPLES, SHARED, needs_shared

FOLDER = REPO_ROOT / "artifacts" / "models" / "pneumonia" / "2.0.0"
KERMANY = SHARED / "data" / "chest_xray_train"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(FOLDER)


@pytest.fixture(scope="module")
def runtime(manifest):
    runtime = OnnxRuntime(manifest, RuntimeOptions())
    runtime.load()
    return runtime


def served(runtime, manifest, data: bytes) -> dict[str, np.ndarray]:
    """Every named output for one upload, decoded as the server decodes it."""
    return runtime.predict_named(image_to_input(data, manifest.input, ImageLimits()))


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_the_folder_holds_every_artifact_within_the_size_budget(manifest):
    for name in ("model.h5", "model.onnx", "manifest.json", "metrics.json", "MODEL_CARD.md", "roc.png",
                 "confusion_matrix.png", "training_curves.png", "reliability.png"):
        assert (FOLDER / name).is_file(), name
    assert manifest.compiled.sha256 == sha256_file(FOLDER / "model.onnx")
    assert manifest.compiled.source_sha256 == manifest.source.sha256 == sha256_file(FOLDER / "model.h5")
    assert (FOLDER / "model.onnx").stat().st_size <= 2 * 1024 * 1024
    assert manifest.input.crop == "none" and manifest.input.color == "grayscale"
    assert manifest.training["seed"] == 0 and "train_pneumonia_kermany" in manifest.training["command"]


def test_the_served_probability_is_the_calibrated_logit(manifest, runtime):
    # The CAM's mean over its cells is the network's logit, so the graph's own outputs show the calibration.
    needs_shared(SAMPLES)
    calibration = manifest.calibration
    assert abs(calibration.scale - 1) > 0.01 or abs(calibration.bias) > 0.01  # not the identity
    uncalibrated_gaps = []
    for path in sorted(SAMPLES.glob("*.jpeg")):
        outputs = served(runtime, manifest, path.read_bytes())
        logit = float(outputs["cam"].mean(dtype=np.float64))
        probability = float(outputs["probability"][0, 0])
        assert probability == pytest.approx(1 / (1 + np.exp(-(calibration.scale * logit + calibration.bias))),
                                            abs=2e-5)
        uncalibrated_gaps.append(abs(probability - 1 / (1 + np.exp(-logit))))
    assert max(uncalibrated_gaps) > 0.01  # the samples that are not saturated show the difference


def test_the_eight_sample_x_rays_are_accepted(manifest, runtime):
    needs_shared(SAMPLES)
    paths = sorted(SAMPLES.glob("*.jpeg"))
    assert len(paths) == 8
    for path in paths:
        assert not is_out_of_scope(manifest, served(runtime, manifest, path.read_bytes())), path.name


@pytest.mark.parametrize("image", [
    Image.new("L", (512, 512), 128),                                                    # a flat grey square
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (400, 500, 3), dtype=np.uint8)),  # colour noise
    Image.new("RGB", (300, 200), (255, 255, 255)),
], ids=["flat-grey", "colour-noise", "white-page"])
def test_what_issue_9_found_diagnosed_is_refused(manifest, runtime, image):
    assert is_out_of_scope(manifest, served(runtime, manifest, encoded(image)))


@pytest.mark.slow
def test_at_least_95_percent_of_a_freshly_generated_out_of_scope_set_is_refused(manifest, runtime):
    from scripts.training.out_of_scope_set import out_of_scope_images

    items = out_of_scope_images(seed=1)  # other crops, pages and noise than the seed-0 set in metrics.json
    refused = [is_out_of_scope(manifest, served(runtime, manifest, data)) for _, data in items]
    assert np.mean(refused) >= 0.95


def test_the_heatmap_is_the_models_grid_laid_over_the_whole_upload(manifest, runtime):
    needs_shared(SAMPLES)
    path = sorted(SAMPLES.glob("pneumonia_*.jpeg"))[0]
    data = path.read_bytes()
    outputs = served(runtime, manifest, data)
    assert outputs["cam"].shape == (1, 12, 12, 1)
    size = Image.open(io.BytesIO(data)).size
    png = Image.open(io.BytesIO(cam_png(manifest, outputs, size)))
    assert png.mode == "RGBA" and max(png.size) == 128
    assert png.size[0] / png.size[1] == pytest.approx(size[0] / size[1], rel=0.02)
    assert np.asarray(png)[..., 3].max() > 0  # a pneumonia X-ray has positive evidence somewhere


@pytest.fixture(scope="module")
def internal_test():
    needs_shared(KERMANY)
    from scripts.training.kermany import load_kermany

    manifest = load_manifest(FOLDER)
    return load_kermany(KERMANY, manifest.input.height, manifest.training["seed"]).test


@pytest.mark.slow
def test_the_served_graph_reproduces_the_reported_internal_test_metrics(manifest, internal_test):
    from sklearn.metrics import accuracy_score, roc_auc_score

    from scripts.training.pneumonia_report import served_outputs

    scores = served_outputs(manifest.compiled_path, internal_test.x)["probability"]
    reported = json.loads((FOLDER / "metrics.json").read_text())["test"]
    assert reported["n"] == len(internal_test.y)
    accuracy = accuracy_score(internal_test.y, scores >= manifest.threshold)
    assert accuracy == pytest.approx(reported["accuracy"], abs=1e-4)
    assert roc_auc_score(internal_test.y, scores) == pytest.approx(reported["auc"], abs=1e-4)


@pytest.mark.tensorflow
@pytest.mark.slow
def test_onnx_matches_keras_on_the_internal_test_for_every_output(manifest, internal_test):
    from scripts.training.pneumonia_export import OUTPUTS
    from slimserve.parity import run_onnx
    from slimserve.runtimes.tensorflow import load_keras_model

    model = load_keras_model(str(manifest.source_path))
    expected = [np.asarray(value) for value in model.predict(internal_test.x, batch_size=256, verbose=0)]
    actual = run_onnx(manifest.compiled_path, internal_test.x, list(OUTPUTS))
    for name, keras_value, onnx_value in zip(OUTPUTS, expected, actual, strict=True):
        scale = max(1.0, float(np.abs(keras_value).max()))
        assert np.max(np.abs(keras_value - onnx_value)) / scale < 1e-4, name


@pytest.mark.tensorflow
def test_the_tensorflow_runtime_serves_the_multi_output_graph_like_onnx(manifest, runtime):
    # The baseline benchmark runs 2.0.0 in TensorFlow too: `predict` must pick the probability output.
    from slimserve.runtimes.tensorflow import TensorflowRuntime

    baseline = TensorflowRuntime(manifest, RuntimeOptions())
    baseline.load()
    paths = sorted(SAMPLES.glob("*.jpeg"))[:4]
    batch = np.concatenate([image_to_input(path.read_bytes(), manifest.input, ImageLimits()) for path in paths])
    np.testing.assert_allclose(baseline.predict(batch), runtime.predict(batch), atol=1e-4)


def test_asking_for_some_outputs_gives_those_with_the_same_values(manifest, runtime):
    # The service asks for the activation map only with `explain`: the other outputs must not change.
    batch = image_to_input(encoded(Image.new("L", (300, 300), 120)), manifest.input, ImageLimits())
    every = runtime.predict_named(batch)
    some = runtime.predict_named(batch, ["probability", "ood_distance"])
    assert set(every) == {"probability", "ood_distance", "cam"} and set(some) == {"probability", "ood_distance"}
    for name in some:
        np.testing.assert_allclose(some[name], every[name], rtol=1e-6)
