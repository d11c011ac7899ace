"""The prediction service: framework-free, between the HTTP views and the registry."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from slimserve.errors import BadRequest
from slimserve.imaging import ImageLimits, image_to_input
from slimserve.manifest import Manifest
from slimserve.payloads import Table
from slimserve.registry import ModelEntry, ModelRegistry

_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ImagePrediction:
    """The answer for one image."""

    filename: str | None
    prediction: str
    probability: float
    probabilities: dict[str, float]
    threshold: float
    model: str
    version: str
    inference_ms: float


@dataclass(frozen=True)
class TablePrediction:
    """The answer for a table of records: one label and one probability row per record."""

    labels: list[str]
    probabilities: np.ndarray
    manifest: Manifest
    inference_ms: float


class PredictionService:
    """Turns uploaded bytes or records into labelled predictions with the right model."""

    def __init__(self, registry: ModelRegistry, limits: ImageLimits, ready_wait_seconds: float) -> None:
        self.registry = registry
        self.limits = limits
        self.ready_wait_seconds = ready_wait_seconds

    def model(self, name: str | None, tabular: bool) -> ModelEntry:
        """The named (or default) model, checked to take the kind of input at hand."""
        entry = self.registry.get(name)
        if entry.is_tabular != tabular:
            takes = "records (JSON or CSV)" if entry.is_tabular else "an image (multipart `file` or a raw body)"
            raise BadRequest(f"model `{entry.manifest.name}` takes {takes}", code="wrong_input_kind")
        return entry

    def predict_table(self, table: Table, model: str | None = None) -> TablePrediction:
        """Validate named columns against the model's schema, run it, and label every row."""
        entry = self.model(model, tabular=True)
        columns = entry.table_schema.load(table.columns)
        entry.wait_ready(self.ready_wait_seconds)
        started = time.perf_counter()
        probabilities = entry.runtime.predict(columns)
        elapsed_ms = (time.perf_counter() - started) * 1000
        labels = decide_rows(entry.manifest, probabilities)
        return TablePrediction(labels, probabilities, entry.manifest, round(elapsed_ms, 3))

    def predict_image(self, data: bytes, filename: str | None, model: str | None = None) -> ImagePrediction:
        """Validate and preprocess an image, run the model, and label the result."""
        entry = self.model(model, tabular=False)
        manifest = entry.manifest
        batch = image_to_input(data, manifest.input, self.limits)
        # Waiting here rather than answering 503 gives the request that woke the service a real answer.
        entry.wait_ready(self.ready_wait_seconds)
        started = time.perf_counter()
        probabilities = entry.runtime.predict(batch)[0]
        elapsed_ms = (time.perf_counter() - started) * 1000
        label, score = decide(manifest, probabilities)
        return ImagePrediction(
            filename=clean_filename(filename),
            prediction=label,
            probability=score,
            probabilities={name: round(float(p), 6) for name, p in zip(manifest.labels, probabilities,
                                                                        strict=True)},
            threshold=manifest.threshold,
            model=manifest.name,
            version=manifest.version,
            inference_ms=round(elapsed_ms, 3),
        )


def decide(manifest: Manifest, probabilities: np.ndarray) -> tuple[str, float]:
    """The predicted label and the probability that goes with the `probability` key.

    For a binary model that is P(positive label), whatever the decision, so clients can apply their
    own threshold; otherwise it is the probability of the predicted class.
    """
    (label,) = decide_rows(manifest, probabilities[np.newaxis, :])
    positive = _positive_index(manifest)
    index = positive if positive is not None else manifest.labels.index(label)
    return label, round(float(probabilities[index]), 6)


def decide_rows(manifest: Manifest, probabilities: np.ndarray) -> list[str]:
    """The predicted label of every row: threshold on P(positive) for binary models, else argmax."""
    names = np.asarray(manifest.labels, dtype=object)
    positive = _positive_index(manifest)
    if positive is not None:
        chosen = np.where(probabilities[:, positive] >= manifest.threshold, positive, 1 - positive)
    else:
        chosen = np.argmax(probabilities, axis=1)
    return names[chosen].tolist()


def _positive_index(manifest: Manifest) -> int | None:
    if manifest.activation == "sigmoid" or (manifest.positive_label and len(manifest.labels) == 2):
        return manifest.labels.index(manifest.positive_label or manifest.labels[1])
    return None


def clean_filename(filename: str | None) -> str | None:
    """The client's file name without any path or control characters, at most 255 characters."""
    if not filename:
        return None
    name = _UNSAFE_FILENAME.sub("", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:255] or None
