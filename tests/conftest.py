"""Shared fixtures: a fake model folder and runtime, so HTTP tests need no ML framework."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimserve import create_app
from slimserve.manifest import sha256_file

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SLIMSERVE_SHARED", REPO.parent / "shared"))
SAMPLES = SHARED / "data" / "pneumonia" / "samples"
NPZ = SHARED / "data" / "pneumonia" / "pneumoniamnist.npz"
BUNDLED = REPO / "artifacts" / "models" / "pneumonia" / "1.0.0" / "model.h5"


class FakeRuntime:
    """Answers a fixed probability: the HTTP layer is tested without ONNX Runtime or TensorFlow."""

    name = "fake"

    def __init__(self, manifest, options, probability: float = 0.8, gate: threading.Event | None = None):
        self.manifest = manifest
        self.probability = probability
        self.gate = gate
        self.batches: list[np.ndarray] = []

    def load(self) -> None:
        if self.gate is not None:
            self.gate.wait(10)

    def predict(self, batch):
        self.batches.append(batch)
        rows = len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)
        width = len(self.manifest.labels)
        if width == 2:
            return np.tile([1 - self.probability, self.probability], (rows, 1)).astype(np.float32)
        return np.tile(np.eye(width, dtype=np.float32)[-1], (rows, 1))


def write_fake_model(folder: Path, name: str = "pneumonia", **manifest_overrides) -> Path:
    """A model folder whose artifacts are placeholder bytes with correct sha256s."""
    folder.mkdir(parents=True, exist_ok=True)
    h5, onnx = folder / "model.h5", folder / "model.onnx"
    h5.write_bytes(b"placeholder h5 " + name.encode())
    onnx.write_bytes(b"placeholder onnx " + name.encode())
    manifest = {
        "name": name, "version": "9.9.9", "task": "image_classification",
        "labels": ["NORMAL", "PNEUMONIA"], "positive_label": "PNEUMONIA", "threshold": 0.5,
        "input": {"height": 28, "width": 28, "channels": 1, "color": "grayscale"},
        "source": {"file": "model.h5", "sha256": sha256_file(h5)},
        "compiled": {"file": "model.onnx", "sha256": sha256_file(onnx), "source_sha256": sha256_file(h5)},
        **manifest_overrides,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return h5


HEART_FEATURES = [
    {"name": "Age", "type": "integer", "unit": "years", "minimum": 0, "maximum": 120},
    {"name": "Sex", "type": "category", "categories": ["F", "M"]},
    {"name": "Cholesterol", "type": "number", "unit": "mg/dL", "minimum": 0, "maximum": 700,
     "zero_means_missing": True},
    {"name": "FastingBS", "type": "boolean"},
]


def write_fake_tabular_model(folder: Path, name: str = "heart") -> Path:
    """A tabular model folder (placeholder ONNX) with four typed features."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "model.onnx"
    onnx.write_bytes(b"placeholder tabular onnx " + name.encode())
    digest = sha256_file(onnx)
    manifest = {
        "name": name, "version": "1.0.0", "task": "tabular_classification", "labels": ["0", "1"],
        "label_names": {"0": "healthy", "1": "heart disease"}, "positive_label": "1", "activation": "softmax",
        "features": HEART_FEATURES, "onnx": {"label_output": "label", "probabilities_output": "probabilities"},
        "source": {"file": "model.onnx", "sha256": digest},
        "compiled": {"file": "model.onnx", "sha256": digest, "source_sha256": digest},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return onnx


@pytest.fixture(autouse=True)
def only_the_named_models(monkeypatch):
    """Tests serve the models they name, not every bundled model (MODEL_REPOSITORY off)."""
    monkeypatch.setenv("MODEL_REPOSITORY", "")


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    """Path of a fake model's .h5 with a valid manifest and compiled artifact."""
    return write_fake_model(tmp_path / "pneumonia")


@pytest.fixture
def fake_runtimes():
    """A runtime table whose only entry builds FakeRuntime; the instances are collected."""
    made: list[FakeRuntime] = []

    def factory(manifest, options):
        runtime = FakeRuntime(manifest, options)
        made.append(runtime)
        return runtime

    factory.made = made
    return {"onnx": factory}


@pytest.fixture
def app(model_path: Path, fake_runtimes):
    """The app on the fake model, loaded synchronously."""
    return create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                       "GIT_COMMIT": "abc1234", "RENDER_GIT_COMMIT": None, "AUTO_COMPILE": False})


@pytest.fixture
def client(app):
    """A test client for `app`."""
    return app.test_client()


def image_bytes(size=(64, 48), fmt: str = "JPEG", mode: str = "L", color=128) -> bytes:
    """A small synthetic image encoded in memory."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def needs_shared(path: Path) -> None:
    """Skip only where GitHub CI says the ../shared data cannot be there; elsewhere its absence fails."""
    if not path.exists():
        if os.environ.get("SLIMSERVE_ALLOW_NO_SHARED") == "1":
            pytest.skip(f"{path.name} absent (SLIMSERVE_ALLOW_NO_SHARED=1)")
        pytest.fail(f"missing {path}: clone the project beside ../shared (see README)")


class EndlessBody(io.RawIOBase):
    """An unbounded request body with no Content-Length, counting what the server reads of it."""

    def __init__(self, fill: bytes) -> None:
        super().__init__()
        self.fill, self.consumed = fill, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.consumed += len(buffer)
        buffer[:] = self.fill * len(buffer)
        return len(buffer)
