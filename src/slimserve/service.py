"""The prediction service: one framework-free entry between the HTTP routes and the registry.

`predict(model, body, content_type, fmt)` finds the model, lets the handler for the model's input kind
(an explicit table: image, table) turn the body into the runtime's input, runs the model, and labels the
result. Label choice, label names, MLflow label values and rounding happen here and nowhere else; routes
only pick the response shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from slimserve.errors import BadRequest, UnprocessableEntity, UnsupportedMediaType
from slimserve.imaging import ImageLimits, decode_image
from slimserve.manifest import Manifest
from slimserve.out_of_scope import is_out_of_scope
from slimserve.registry import IMAGE, TABLE, ModelEntry, ModelRegistry
from slimserve.runtimes.base import to_class_probabilities

MLFLOW = "mlflow"  # dataframe_split / dataframe_records / instances / inputs, or CSV
RECORDS = "records"  # {"records": [{column: value}, ...]}
# An image arrives as a multipart `file` part or a raw body of these types; its bytes decide what it is.
IMAGE_BODY_TYPES = frozenset({"multipart/form-data", "image/jpeg", "image/jpg", "image/png",
                              "application/octet-stream"})
ROUND = 6  # digits of every probability the service returns


class Prediction(NamedTuple):
    """A labelled answer: one entry per input row (an image is one row)."""

    model: str
    version: str
    kind: str
    labels: list[str]
    label_names: list[str]
    values: list[Any]  # the labels as MLflow returns them: integers where the training labels were
    scores: list[float]  # P(positive label) for binary models, else P(predicted label)
    probabilities: list[dict[str, float]]
    threshold: float | None
    inference_ms: float
    heatmap: Heatmap | None = None


class Heatmap(NamedTuple):
    """A PNG heatmap with the upload's aspect ratio."""

    png: bytes
    width: int
    height: int


class Request(NamedTuple):
    """What a route hands the service, already free of HTTP."""

    body: bytes
    content_type: str
    fmt: str = MLFLOW
    version: str | None = None  # None: the model's default version
    explain: bool = False  # add an activation heatmap (image models that export one)


class ImageBatch(NamedTuple):
    """A batch of one image, and the upload's (width, height) after EXIF orientation."""

    batch: np.ndarray
    size: tuple[int, int]


InputHandler = Callable[[ModelEntry, Request, "PredictionService"], Any]


def image_input(entry: ModelEntry, request: Request, service: PredictionService) -> ImageBatch:
    """Image bytes → a batch of one model input (decoded under the image limits), and the image's size."""
    if request.content_type not in IMAGE_BODY_TYPES:
        raise UnsupportedMediaType(
            "send multipart/form-data with a `file` field, or a raw body typed image/jpeg or image/png",
            code="unsupported_media_type")
    if request.explain and entry.manifest.cam is None:
        raise BadRequest(f"{entry.manifest.name} {entry.manifest.version} has no activation map to explain with",
                         code="explain_unavailable", field="explain")
    return ImageBatch(*decode_image(request.body, entry.manifest.input, service.limits))


def table_input(entry: ModelEntry, request: Request, service: PredictionService) -> dict[str, np.ndarray]:
    """A JSON or CSV body → validated named columns, each a (rows, 1) array."""
    # Imported on first use: a server that only ever sees images never pays for the table parsers.
    from slimserve.payloads import parse_records, parse_table

    features = entry.manifest.features
    if request.fmt == RECORDS:
        table = parse_records(request.content_type, request.body, features, service.max_rows)
    else:
        table = parse_table(request.content_type, request.body, features, service.max_rows)
    return entry.table_schema.load(table.columns)


# The model's input kind decides who reads the body: an explicit table, not an if/elif in every route.
INPUT_HANDLERS: dict[str, InputHandler] = {IMAGE: image_input, TABLE: table_input}


class PredictionService:
    """Turns request bodies into labelled predictions with the right model."""

    def __init__(self, registry: ModelRegistry, limits: ImageLimits, ready_wait_seconds: float,
                 max_rows: int = 10_000, default_table_model: str | None = None) -> None:
        self.registry = registry
        self.limits = limits
        self.ready_wait_seconds = ready_wait_seconds
        self.max_rows = max_rows
        self.default_table_model = default_table_model

    def resolve(self, name: str | None, content_type: str = "", fmt: str = RECORDS,
                version: str | None = None) -> ModelEntry:
        """The named model (at `version`), else the default one; MLflow scoring of a table body on an image
        default goes to the default tabular model (MLflow clients send `/invocations` without a model name)."""
        entry = self.registry.get(name, version)
        if name is None and fmt == MLFLOW and entry.kind == IMAGE and content_type in ("application/json",
                                                                                          "text/csv"):
            return self._default_table_model()
        return entry

    def default_table(self) -> ModelEntry | None:
        """The tabular model `/invocations` scores without a name: the configured one, or the only one."""
        if self.default_table_model:
            return self.registry.get(self.default_table_model)
        tables = [e for e in self.registry.entries.values() if e.kind == TABLE]
        return tables[0] if len(tables) == 1 else None

    def _default_table_model(self) -> ModelEntry:
        entry = self.default_table()
        if entry is not None:
            return entry
        tables = [n for n, e in self.registry.entries.items() if e.kind == TABLE]
        raise BadRequest(f"the default model takes images; name a tabular model: /models/<name>/invocations "
                         f"with one of {', '.join(tables) or '(none served)'}", code="model_required")

    def predict(self, name: str | None, request: Request) -> Prediction:
        """Decode the body for the model's input kind, run the model and label every row."""
        entry = self.resolve(name, request.content_type, request.fmt, request.version)
        inputs = INPUT_HANDLERS[entry.kind](entry, request, self)
        # Waiting here rather than answering 503 gives the request that woke the service a real answer.
        entry.wait_ready(self.ready_wait_seconds)
        started = time.perf_counter()
        if isinstance(inputs, ImageBatch):
            probabilities, heatmap = self._run_image(entry, inputs, request.explain)
        else:
            probabilities, heatmap = entry.runtime.predict(inputs), None
        elapsed_ms = (time.perf_counter() - started) * 1000
        return label(entry.manifest, entry.kind, probabilities, round(elapsed_ms, 3), heatmap)

    def _run_image(self, entry: ModelEntry, image: ImageBatch, explain: bool) -> tuple[np.ndarray, Heatmap | None]:
        """Run an image model; refuse inputs it was not made for; draw the heatmap when asked."""
        manifest = entry.manifest
        if manifest.ood is None and not explain:
            return entry.runtime.predict(image.batch), None
        # Only what this answer needs: the activation map is a whole extra output, fetched for `explain` alone.
        names = [manifest.onnx["probabilities_output"]]
        if manifest.ood is not None:
            names.append(manifest.ood.output)
        if explain and manifest.cam is not None:
            names.append(manifest.cam.output)
        outputs = entry.runtime.predict_named(image.batch, names)
        if is_out_of_scope(manifest, outputs):
            raise UnprocessableEntity("this image does not look like a frontal chest X-ray, so no prediction "
                                      "was made", code="not_a_chest_xray", field="file")
        probabilities = to_class_probabilities(outputs[manifest.onnx["probabilities_output"]], manifest.activation)
        if not explain:
            return probabilities, None
        from slimserve.explain import cam_png, heatmap_size  # PNG encoding, only for `?explain=true`

        return probabilities, Heatmap(cam_png(manifest, outputs, image.size), *heatmap_size(image.size))


def label(manifest: Manifest, kind: str, probabilities: np.ndarray, inference_ms: float,
          heatmap: Heatmap | None = None) -> Prediction:
    """Labels, label names, MLflow values, scores and rounded probabilities for every row."""
    labels = manifest.labels
    chosen = decide_rows(manifest, probabilities)
    rounded = np.round(probabilities.astype(np.float64), ROUND)
    positive = _positive_index(manifest)
    if positive is not None:
        scores = rounded[:, positive].tolist()
    else:
        scores = np.take_along_axis(rounded, np.argmax(probabilities, axis=1)[:, None], axis=1)[:, 0].tolist()
    names = [manifest.label_names.get(lab, lab) for lab in labels]
    name_of = dict(zip(labels, names, strict=True))
    value_of = {lab: int(lab) if lab.lstrip("-").isdigit() else lab for lab in labels}
    return Prediction(
        model=manifest.name, version=manifest.version, kind=kind, labels=chosen,
        label_names=[name_of[c] for c in chosen], values=[value_of[c] for c in chosen], scores=scores,
        probabilities=[dict(zip(labels, row, strict=True)) for row in rounded.tolist()],
        threshold=manifest.threshold if positive is not None else None, inference_ms=inference_ms,
        heatmap=heatmap)


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
