"""`slimserve compile`: bring-your-own `.h5` (legacy Keras 2 included), served with no code change."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from slimserve import create_app
from slimserve.cli import main
from slimserve.errors import ModelConfigError
from slimserve.imaging import image_to_input
from slimserve.manifest import load_manifest
from tests.conftest import SAMPLES, needs_shared

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def legacy_rgb_model(folder: Path, seed: int = 0) -> Path:
    """A Keras 2 (tf_keras) `.h5` taking 150x150 RGB, sigmoid output, as a model trained elsewhere would be."""
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.Sequential([
        tf_keras.layers.Input((150, 150, 3)),
        tf_keras.layers.Conv2D(4, 5, strides=3, activation="relu"),
        tf_keras.layers.GlobalAveragePooling2D(),
        tf_keras.layers.Dense(1, activation="sigmoid"),
    ])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "their_model.h5"
    model.save(path)
    return path


def keras3_softmax_model(folder: Path) -> Path:
    """A Keras 3 `.h5` taking 32x32 grayscale with three softmax classes."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((32, 32, 1)),
        keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.h5"
    model.save(path)
    return path


BYO_FLAGS = ["--image-size", "150", "--color", "rgb", "--scale", "1/255", "--labels", "NORMAL,PNEUMONIA"]


@pytest.fixture(scope="module")
def byo_model(tmp_path_factory) -> Path:
    path = legacy_rgb_model(tmp_path_factory.mktemp("byo"))
    assert main(["compile", str(path), *BYO_FLAGS]) == 0
    return path


def test_compile_writes_onnx_and_records_the_h5_sha(byo_model):
    manifest = load_manifest(byo_model)
    assert byo_model.with_suffix(".onnx").is_file()
    assert manifest.compiled.source_sha256 == manifest.source.sha256
    assert manifest.input.shape == (150, 150, 3) and manifest.input.color == "rgb"
    assert manifest.compiled.max_abs_diff < 1e-5


def test_byo_model_is_served_with_no_code_change(byo_model):
    needs_shared(SAMPLES)
    import tf_keras

    sample = (SAMPLES / "pneumonia_person111_bacteria_535.jpeg").read_bytes()
    client = create_app({"MODEL_PATH": str(byo_model), "LOAD_ASYNC": False}).test_client()
    response = client.post("/predict", data={"file": (io.BytesIO(sample), "x.jpeg")})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == "their_model" and body["prediction"] in {"NORMAL", "PNEUMONIA"}
    reference = tf_keras.models.load_model(byo_model, compile=False)
    expected = float(reference(image_to_input(sample, load_manifest(byo_model).input))[0, 0])
    assert abs(body["probability"] - expected) < 1e-5


def test_changed_h5_after_compile_refuses_to_start(tmp_path):
    path = legacy_rgb_model(tmp_path / "m")
    assert main(["compile", str(path), *BYO_FLAGS]) == 0
    legacy_rgb_model(tmp_path / "m", seed=5)  # retrained in place, not recompiled
    with pytest.raises(ModelConfigError, match="stale compiled model"):
        create_app({"MODEL_PATH": str(path), "LOAD_ASYNC": False})


def test_flags_that_contradict_the_model_are_refused(tmp_path, capsys):
    path = legacy_rgb_model(tmp_path / "m")
    assert main(["compile", str(path), "--image-size", "64", "--color", "rgb"]) == 1
    assert "input height is 150, not 64" in capsys.readouterr().err


def test_colour_mode_must_fit_the_channels(tmp_path, capsys):
    path = legacy_rgb_model(tmp_path / "m")
    assert main(["compile", str(path), "--color", "grayscale"]) == 1
    assert "takes 3 channel(s)" in capsys.readouterr().err


def test_softmax_model_gets_argmax_labels(tmp_path):
    path = keras3_softmax_model(tmp_path / "tri")
    assert main(["compile", str(path), "--labels", "A,B,C", "--version", "2"]) == 0
    manifest = load_manifest(path)
    assert manifest.activation == "softmax" and manifest.name == "tri" and manifest.input.color == "grayscale"
    client = create_app({"MODEL_PATH": str(path), "LOAD_ASYNC": False}).test_client()
    png = io.BytesIO()
    from PIL import Image

    Image.new("L", (64, 64), 90).save(png, format="PNG")
    body = client.post("/predict", data={"file": (io.BytesIO(png.getvalue()), "p.png")}).get_json()
    assert body["prediction"] in {"A", "B", "C"}
    assert body["probability"] == pytest.approx(max(body["probabilities"].values()), abs=1e-6)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_label_count_must_match_softmax_outputs(tmp_path, capsys):
    path = keras3_softmax_model(tmp_path / "tri")
    assert main(["compile", str(path), "--labels", "A,B"]) == 1
    assert "3 outputs but 2 labels" in capsys.readouterr().err


def test_missing_onnx_is_compiled_in_a_child_process_when_tensorflow_is_installed(tmp_path):
    path = legacy_rgb_model(tmp_path / "m")
    assert main(["compile", str(path), *BYO_FLAGS]) == 0
    path.with_suffix(".onnx").unlink()
    app = create_app({"MODEL_PATH": str(path), "LOAD_ASYNC": False, "AUTO_COMPILE": True})
    assert path.with_suffix(".onnx").is_file()
    assert app.test_client().get("/ready").status_code == 200


def test_by_default_a_missing_onnx_is_refused_with_the_fix_even_with_tensorflow_installed(tmp_path):
    path = legacy_rgb_model(tmp_path / "m")
    assert main(["compile", str(path), *BYO_FLAGS]) == 0
    path.with_suffix(".onnx").unlink()
    with pytest.raises(ModelConfigError, match="slimserve compile"):
        create_app({"MODEL_PATH": str(path), "MODEL_REPOSITORY": None, "LOAD_ASYNC": False})
    assert not path.with_suffix(".onnx").exists()  # the server never rewrites model files on its own


def test_tensorflow_and_onnx_runtimes_agree_on_a_batch(byo_model):
    from slimserve.registry import build_registry

    batch = np.random.default_rng(3).random((4, 150, 150, 3), dtype=np.float32)
    outputs = []
    for runtime in ("onnx", "tensorflow"):
        registry = build_registry(str(byo_model), runtime, auto_compile=False)
        registry.load_all(background=False)
        outputs.append(registry.get().runtime.predict(batch))
    assert np.max(np.abs(outputs[0] - outputs[1])) < 1e-5
