"""MLflow's scoring protocol (`/invocations`, `/ping`) and the friendlier records route for tabular models."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, g, request
from marshmallow import ValidationError

from slimserve import jsonio
from slimserve.errors import BadRequest, UnsupportedMediaType, safe_name
from slimserve.payloads import bounded, max_columns_for, parse_table, precheck_json, table_from_records
from slimserve.registry import ModelEntry
from slimserve.schemas import InvocationsSchema, RecordsRequestSchema, RecordsResponseSchema
from slimserve.service import TablePrediction
from slimserve.views.context import body_limit, registry, service
from slimserve.views.uploads import read_body, read_upload

bp = Blueprint("invocations", __name__)
_records_schema = RecordsRequestSchema()
_records_response = RecordsResponseSchema()
_invocations_response = InvocationsSchema()
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


@bp.get("/ping")
def ping():
    """MLflow's health check: 200 with an empty line once the models are loaded."""
    ready = registry().ready
    return Response("\n", status=200 if ready else 503, mimetype="application/json")


@bp.post("/invocations")
def invocations_default():
    """MLflow scoring on the default model."""
    return _invocations(None)


@bp.post("/models/<name>/invocations")
def invocations_named(name: str):
    """MLflow scoring on the named model."""
    return _invocations(name)


def _invocations(name: str | None):
    entry = registry().get(name)
    with_probabilities = _flag("probabilities")
    if not entry.is_tabular:
        data, filename = read_upload()
        result = service().predict_image(data, filename, name)
        body: dict[str, Any] = {"predictions": [result.prediction]}
        if with_probabilities:
            body["probabilities"] = [result.probabilities]
        return _invocations_response.dump(body)
    table = parse_table(request.mimetype, _table_body(entry), entry.manifest.features,
                        current_app.config["MAX_ROWS"])
    result = service().predict_table(table, name)
    values = {label: mlflow_value(label) for label in entry.manifest.labels}
    body = {"predictions": [values[label] for label in result.labels]}
    if with_probabilities:
        body["probabilities"] = probability_rows(result)
    return _invocations_response.dump(body)


def _table_body(entry: ModelEntry) -> bytes:
    # Sized from the row limit, so a body that cannot be within it is refused before it is read.
    request.max_content_length = body_limit(entry)
    return read_body()


def _flag(name: str) -> bool:
    value = request.args.get(name, "").lower()
    if value not in _FLAGS:
        raise BadRequest(f"`{name}` must be true or false", code="invalid_parameter", field=name)
    return _FLAGS[value]


def predict_records(name: str):
    """`{"records": [...]}` → label, human label name and probabilities for every record."""
    entry = service().model(name, tabular=True)
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send application/json: {\"records\": [...]}", code="unsupported_media_type")
    body, features, max_rows = _table_body(entry), entry.manifest.features, current_app.config["MAX_ROWS"]
    precheck_json(body, features, max_rows)
    try:
        raw = jsonio.loads(body)
    except ValueError:  # not JSON (UnicodeDecodeError included): answered as a body without `records`
        raw = None
    try:
        payload = _records_schema.load(raw or {})
    except ValidationError as exc:
        field = sorted(exc.normalized_messages(), key=str)[0]
        raise BadRequest("send {\"records\": [ {column: value, ...}, ... ]}", code="invalid_payload",
                         field=safe_name(field)) from None
    table = bounded(table_from_records(payload["records"], max_columns_for(features)), max_rows)
    result = service().predict_table(table, name)
    label_names = entry.manifest.label_names
    return _records_response.dump({
        "model": entry.manifest.name,
        "version": entry.manifest.version,
        "predictions": [
            {"label": label, "label_name": label_names.get(label, label), "probabilities": probs}
            for label, probs in zip(result.labels, probability_rows(result), strict=True)
        ],
        "inference_ms": result.inference_ms,
        "request_id": g.request_id,
    })


def probability_rows(result: TablePrediction) -> list[dict[str, float]]:
    """Class probabilities per row, keyed by label."""
    labels = result.manifest.labels
    rounded = np.round(result.probabilities.astype(np.float64), 6).tolist()
    return [dict(zip(labels, row, strict=True)) for row in rounded]


def mlflow_value(label: str) -> Any:
    """Labels that are integers in the training data come back as integers, as MLflow returns them."""
    return int(label) if label.lstrip("-").isdigit() else label
