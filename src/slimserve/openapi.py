"""The OpenAPI document, generated from the marshmallow schemas the views use (never written by hand)."""

from __future__ import annotations

import math
from typing import Any

from slimserve import __version__
from slimserve.manifest import Feature, Manifest

ERROR = {"$ref": "#/components/responses/Error"}
PROBABILITIES = {"name": "probabilities", "in": "query", "required": False, "schema": {"type": "boolean"},
                 "description": "add class probabilities per row"}
TOO_MANY_REQUESTS = {"$ref": "#/components/responses/TooManyRequests"}
IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "additionalProperties": False,
                       "properties": {"file": {"type": "string", "format": "binary", "minLength": 1,
                                               "description": "a JPEG or PNG image, at least the model's "
                                                              "input size (`input` in /models/{name})"}}},
            "encoding": {"file": {"contentType": "image/jpeg, image/png"}},
        },
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    },
}


MLFLOW_BODY = {
    "required": True,
    "description": "exactly one of dataframe_split, dataframe_records, instances, inputs (MLflow formats), "
                   "or CSV with a header row",
    "content": {
        "application/json": {"schema": {"type": "object", "example": {
            "dataframe_split": {"columns": ["Age", "Sex"], "data": [[54, "M"]]}}}},
        "text/csv": {"schema": {"type": "string"}},
    },
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): TOO_MANY_REQUESTS if status == 429 else ERROR for status in statuses}


def build_spec(manifests: list[Manifest] | None = None, default: str | None = None,
               max_rows: int = 10_000, table_default: str | None = None,
               other_versions: list[Manifest] | None = None) -> dict[str, Any]:
    """Build the OpenAPI 3 document for every route, with exact request schemas for each tabular model.

    The routes that take a model name or use the default model document the body of the model(s) they
    reach: the `{name}` templates list the image models only, each tabular model has its own paths.
    """
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    from slimserve import schemas

    spec = APISpec(title="slimserve", version=__version__, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Medical model serving inside 256 MB / 0.1 vCPU."})
    for name in ("Error", "Prediction", "Health", "Ready", "Version", "Model", "ModelList", "RecordsRequest",
                 "RecordsResponse", "RecordPrediction", "Invocations"):
        spec.components.schema(name, schema=getattr(schemas, f"{name}Schema"))
    spec.components.response("Error", _json("Error", "an error; `code` is stable, `message` is for people"))
    spec.components.response("TooManyRequests", {
        **_json("Error", "`too_many_requests`: this client's rate limit for the route is used up"),
        "headers": {"Retry-After": {"description": "seconds until the limit's window resets",
                                    "schema": {"type": "integer", "minimum": 1}}}})
    predict = {
        "summary": "Classify one image",
        "requestBody": IMAGE_BODY,
        "parameters": [{"name": "X-Filename", "in": "header", "required": False, "schema": {"type": "string"},
                        "description": "file name to report for a raw (non-multipart) body"},
                       {"name": "filename", "in": "query", "required": False, "schema": {"type": "string"},
                        "deprecated": True, "description": "old form of X-Filename (URLs end up in logs)"},
                       {"name": "X-Patient-ID", "in": "header", "required": False, "schema": {"type": "string"},
                        "description": "recorded in the audit trail only as a keyed HMAC, never in the clear"},
                       {"name": "explain", "in": "query", "required": False, "schema": {"type": "boolean"},
                        "description": "add a class-activation heatmap (models that export one; else 400)"}],
        "responses": {"200": _json("Prediction", "the prediction"), **_errors(400, 404, 413, 415, 422, 429, 503)},
    }
    manifests = manifests or []
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    default_manifest = next((m for m in manifests if m.name == default), manifests[0] if manifests else None)
    spec.path("/predict", operations={"post": explained(predict, default_manifest)})
    spec.path("/health", operations={"get": {"summary": "Liveness", "responses": {
        "200": _json("Health", "the process answers")}}})
    spec.path("/ready", operations={"get": {"summary": "Readiness of every model", "responses": {
        "200": _json("Ready", "all models loaded"), "503": _json("Ready", "still loading or failed")}}})
    spec.path("/version", operations={"get": {"summary": "Service, commit and model versions", "responses": {
        "200": _json("Version", "versions"), **_errors(429)}}})
    spec.path("/models", operations={"get": {"summary": "Served models", "responses": {
        "200": _json("ModelList", "every model"), **_errors(429)}}})
    spec.path("/models/{name}", operations={"get": {"summary": "One model's metadata and input contract",
                                                     "parameters": [name_param], "responses": {
        "200": _json("Model", "the model"), **_errors(404, 429)}}})
    spec.path("/models/{name}/ready", operations={"get": {"summary": "Readiness of one model",
                                                           "parameters": [name_param], "responses": {
        "200": _json("Ready", "loaded"), "503": _json("Ready", "loading or failed"), **_errors(404)}}})
    body = MLFLOW_BODY if default_manifest is None else model_body(default_manifest, max_rows)
    table_manifest = next((m for m in manifests if m.name == table_default), None)
    if default_manifest is not None and not default_manifest.features and table_manifest is not None:
        # An image default: table bodies go to the default tabular model (service.resolve).
        table_body = model_body(table_manifest, max_rows)
        body = {**body, "content": {**body["content"], **table_body["content"]}}
    invocations = {
        "summary": "MLflow scoring protocol on the default model (table bodies: the default tabular model)",
        "requestBody": body,
        "parameters": [PROBABILITIES],
        "responses": {"200": _json("Invocations", "one prediction per row"),
                      **_errors(400, 404, 413, 415, 422, 429, 503)},
    }
    spec.path("/invocations", operations={"post": invocations})
    spec.path("/ping", operations={"get": {"summary": "MLflow-style health check", "responses": {
        "200": {"description": "models loaded"}, "503": {"description": "still loading"}}}})
    # Each model (and each served version) has its own paths: what a route accepts depends on the model.
    for manifest in [*manifests, *(other_versions or [])]:
        prefix = f"/models/{manifest.name}" + (f"/versions/{manifest.version}" if manifest not in manifests else "")
        if manifest.features:
            add_tabular_model(spec, manifest, max_rows, prefix)
        else:
            add_image_model(spec, manifest, predict, invocations, prefix)
    add_monitoring(spec, manifests)
    return spec.to_dict()


def add_monitoring(spec: Any, manifests: list[Manifest]) -> None:
    """`/metrics`, and `/models/<name>/drift` for every model whose manifest has a drift reference."""
    from slimserve.drift.schemas import DriftReportSchema

    spec.components.schema("DriftReport", schema=DriftReportSchema)
    spec.path("/metrics", operations={"get": {"summary": "Prometheus metrics (text exposition)", "responses": {
        "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
        **_errors(401, 429)}}})
    for manifest in manifests:
        if manifest.drift_reference:
            spec.path(f"/models/{manifest.name}/drift", operations={"get": {
                "summary": f"Input and prediction drift of {manifest.name} against its training data",
                "responses": {"200": _json("DriftReport", "PSI and p-value per column, and a status"),
                              **_errors(401, 403, 429)}}})


def model_body(manifest: Manifest, max_rows: int) -> dict[str, Any]:
    """The request body a model's prediction routes take: records or CSV for tabular models, else an image."""
    return tabular_body(manifest, max_rows) if manifest.features else IMAGE_BODY


def add_image_model(spec: Any, manifest: Manifest, predict: dict[str, Any], invocations: dict[str, Any],
                    prefix: str = "") -> None:
    """Concrete paths for one image model."""
    size = f"{manifest.input.width}x{manifest.input.height}" if manifest.input else "the model's input size"
    spec.path(f"{prefix or '/models/' + manifest.name}/predict", operations={"post": {
        **explained(predict, manifest), "summary": f"{manifest.name}: classify one image (at least {size} pixels)"}})
    spec.path(f"{prefix or '/models/' + manifest.name}/invocations", operations={"post": {
        **invocations, "summary": f"{manifest.name}: MLflow scoring of one image (at least {size} pixels)",
        "requestBody": IMAGE_BODY}})


def explained(predict: dict[str, Any], manifest: Manifest | None) -> dict[str, Any]:
    """The predict operation for `manifest`: `?explain` only where the model exports an activation map."""
    if manifest is None or manifest.features or manifest.cam is not None:
        return predict
    return {**predict, "parameters": [p for p in predict["parameters"] if p["name"] != "explain"]}


def feature_schema(feature: Feature) -> dict[str, Any]:
    """JSON Schema of one column, from the same feature spec the validating marshmallow schema is built from."""
    schema: dict[str, Any] = {"type": {"category": "string"}.get(feature.type, feature.type)}
    if feature.type == "boolean":
        # MLflow clients send booleans as 0/1 (pandas bool columns often arrive as integers).
        variants = [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]
        schema = {"anyOf": [{**v, "nullable": True} for v in variants] if feature.nullable else variants}
    if feature.categories:
        schema["enum"] = list(feature.categories)
    if feature.minimum is not None:
        schema["minimum"] = feature.minimum
    if feature.maximum is not None:
        schema["maximum"] = feature.maximum
    if feature.nullable and "type" in schema:
        schema["nullable"] = True
    unit = f" ({feature.unit})" if feature.unit else ""
    missing = "; 0 means not measured" if feature.zero_means_missing else ""
    schema["description"] = f"{feature.description or feature.name}{unit}{missing}"
    return schema


def _rows(manifest: Manifest, max_rows: int) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": max_rows,
            "items": {"$ref": f"#/components/schemas/{manifest.name}.Record"}}


def tabular_body(manifest: Manifest, max_rows: int) -> dict[str, Any]:
    """The request body of a tabular model's MLflow route: dataframe_records JSON, or CSV."""
    csv = {"type": "string", "pattern": csv_pattern(manifest.features, max_rows),
           "description": "a header row, then one line per row; the pattern shows the plain spelling "
                          "(integers, 0/1/true/false), decimals within range are accepted too"}
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["dataframe_records"],
        "properties": {"dataframe_records": _rows(manifest, max_rows)}}}, "text/csv": {"schema": csv}}}


def add_tabular_model(spec: Any, manifest: Manifest, max_rows: int = 10_000, prefix: str = "") -> None:
    """Concrete paths for one tabular model, so clients and fuzzers see its exact columns."""
    record = f"{manifest.name}.Record"
    spec.components.schema(record, component={
        "type": "object", "additionalProperties": False,
        "required": [f.name for f in manifest.features if f.required],
        "properties": {f.name: feature_schema(f) for f in manifest.features},
    })
    rows, body = _rows(manifest, max_rows), tabular_body(manifest, max_rows)
    spec.path(f"{prefix or '/models/' + manifest.name}/invocations", operations={"post": {
        "summary": f"{manifest.name}: MLflow scoring ({manifest.description})".strip(),
        "description": "also accepts dataframe_split, instances and inputs, as the generic route documents",
        "requestBody": body, "parameters": [PROBABILITIES],
        "responses": {"200": _json("Invocations", "one prediction per row"), **_errors(400, 413, 415, 422, 429, 503)},
    }})
    spec.path(f"{prefix or '/models/' + manifest.name}/predict", operations={"post": {
        "summary": f"{manifest.name}: labels and probabilities per record",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["records"],
            "properties": {"records": rows}}}}},
        "responses": {"200": _json("RecordsResponse", "one prediction per record"),
                      **_errors(400, 413, 415, 422, 429, 503)},
    }})


def csv_pattern(features: list[Feature], max_rows: int) -> str:
    """A regular expression every CSV body matching it is accepted by: header, then 1..max_rows valid lines."""
    header = ",".join(_literal(f.name) for f in features)
    row = ",".join(_cell_pattern(f) for f in features)
    return rf"^{header}(?:\r?\n{row}){{1,{max_rows}}}(?:\r?\n)?$"


def _cell_pattern(feature: Feature) -> str:
    if feature.type == "category":
        cells = [_literal(c) for c in feature.categories or ()]
    elif feature.type == "boolean":
        cells = ["0", "1", "true", "false"]
    else:  # integers within the range: a plain spelling every number and integer feature accepts
        low = -999_999 if feature.minimum is None else math.ceil(feature.minimum)
        high = 999_999 if feature.maximum is None else math.floor(feature.maximum)
        cells = _integers(low, high)
    if feature.nullable:
        cells.append("")
    return f"(?:{'|'.join(cells)})"


def _literal(text: str) -> str:
    if any(ch in text for ch in ',"\r\n'):
        text = '"' + text.replace('"', '""') + '"'  # CSV quoting, as csv.writer does it
    return "".join("\\" + ch if ch in "\\^$.|?*+()[]{}/" else ch for ch in text)


def _integers(low: int, high: int) -> list[str]:
    """Alternatives matching exactly the decimal integers low..high, without leading zeros."""
    parts = _naturals(max(low, 0), high) if high >= 0 else []
    if low < 0:
        parts += ["-" + p for p in _naturals(max(1, -high), -low)]
    return parts


def _naturals(low: int, high: int) -> list[str]:
    parts = []
    for length in range(len(str(low)), len(str(high)) + 1):
        start, end = max(low, 10 ** (length - 1) if length > 1 else 0), min(high, 10 ** length - 1)
        if start <= end:
            parts += _same_length(str(start), str(end))
    return parts


def _same_length(low: str, high: str) -> list[str]:
    if low == high:
        return [low]
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    if low[0] == high[0]:
        return [low[0] + p for p in _same_length(low[1:], high[1:])]
    rest = len(low) - 1
    parts, first, last = [], int(low[0]), int(high[0])
    if low[1:] != "0" * rest:
        parts += [low[0] + p for p in _same_length(low[1:], "9" * rest)]
        first += 1
    tail = [] if high[1:] == "9" * rest else [high[0] + p for p in _same_length("0" * rest, high[1:])]
    if tail:
        last -= 1
    if first <= last:
        parts.append(f"[{first}-{last}]" + "[0-9]" * rest)
    return parts + tail
