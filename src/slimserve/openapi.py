"""The OpenAPI document, generated from the marshmallow schemas the views use (never written by hand)."""

from __future__ import annotations

from typing import Any

from slimserve import __version__
from slimserve.manifest import Feature, Manifest

ERROR = {"$ref": "#/components/responses/Error"}
IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"],
                       "properties": {"file": {"type": "string", "format": "binary"}}},
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
    return {str(status): ERROR for status in statuses}


def build_spec(manifests: list[Manifest] | None = None) -> dict[str, Any]:
    """Build the OpenAPI 3 document for every route, with exact request schemas for each tabular model."""
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
    predict = {
        "summary": "Classify one image",
        "requestBody": IMAGE_BODY,
        "parameters": [{"name": "X-Filename", "in": "header", "required": False, "schema": {"type": "string"},
                        "description": "file name to report for a raw (non-multipart) body"},
                       {"name": "filename", "in": "query", "required": False, "schema": {"type": "string"},
                        "deprecated": True, "description": "old form of X-Filename (URLs end up in logs)"},
                       {"name": "X-Patient-ID", "in": "header", "required": False, "schema": {"type": "string"},
                        "description": "recorded in the audit trail only as a keyed HMAC, never in the clear"}],
        "responses": {"200": _json("Prediction", "the prediction"), **_errors(400, 404, 413, 415, 422, 503)},
    }
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    spec.path("/predict", operations={"post": predict})
    records_body = {"required": True, "content": {"application/json": {"schema": "RecordsRequest"}}}
    spec.path("/models/{name}/predict", operations={"post": {
        **predict, "summary": "Classify one image (image models) or a list of records (tabular models)",
        "parameters": [name_param, *predict["parameters"]],
        "requestBody": {**IMAGE_BODY, "content": {**IMAGE_BODY["content"], **records_body["content"]}},
        "responses": {**predict["responses"], "200": {"description": "the prediction(s)", "content": {
            "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Prediction"},
                                                      {"$ref": "#/components/schemas/RecordsResponse"}]}}}}},
    }})
    spec.path("/health", operations={"get": {"summary": "Liveness", "responses": {
        "200": _json("Health", "the process answers")}}})
    spec.path("/ready", operations={"get": {"summary": "Readiness of every model", "responses": {
        "200": _json("Ready", "all models loaded"), "503": _json("Ready", "still loading or failed")}}})
    spec.path("/version", operations={"get": {"summary": "Service, commit and model versions", "responses": {
        "200": _json("Version", "versions")}}})
    spec.path("/models", operations={"get": {"summary": "Served models", "responses": {
        "200": _json("ModelList", "every model")}}})
    spec.path("/models/{name}", operations={"get": {"summary": "One model's metadata and input contract",
                                                     "parameters": [name_param], "responses": {
        "200": _json("Model", "the model"), **_errors(404)}}})
    spec.path("/models/{name}/ready", operations={"get": {"summary": "Readiness of one model",
                                                           "parameters": [name_param], "responses": {
        "200": _json("Ready", "loaded"), "503": _json("Ready", "loading or failed"), **_errors(404)}}})
    invocations = {
        "summary": "MLflow scoring protocol (tabular models; image models take an image body)",
        "requestBody": MLFLOW_BODY,
        "parameters": [{"name": "probabilities", "in": "query", "required": False, "schema": {"type": "boolean"},
                        "description": "add class probabilities per row"}],
        "responses": {"200": _json("Invocations", "one prediction per row"), **_errors(400, 404, 413, 415, 422, 503)},
    }
    spec.path("/invocations", operations={"post": invocations})
    spec.path("/models/{name}/invocations", operations={"post": {
        **invocations, "parameters": [name_param, *invocations["parameters"]]}})
    spec.path("/ping", operations={"get": {"summary": "MLflow-style health check", "responses": {
        "200": {"description": "models loaded"}, "503": {"description": "still loading"}}}})
    for manifest in manifests or []:
        if manifest.features:
            add_tabular_model(spec, manifest)
    return spec.to_dict()


def feature_schema(feature: Feature) -> dict[str, Any]:
    """JSON Schema of one column, from the same feature spec the validating marshmallow schema is built from."""
    schema: dict[str, Any] = {"type": {"category": "string"}.get(feature.type, feature.type)}
    if feature.categories:
        schema["enum"] = list(feature.categories)
    if feature.minimum is not None:
        schema["minimum"] = feature.minimum
    if feature.maximum is not None:
        schema["maximum"] = feature.maximum
    if feature.nullable:
        schema["nullable"] = True
    unit = f" ({feature.unit})" if feature.unit else ""
    missing = "; 0 means not measured" if feature.zero_means_missing else ""
    schema["description"] = f"{feature.description or feature.name}{unit}{missing}"
    return schema


def add_tabular_model(spec: Any, manifest: Manifest) -> None:
    """Concrete paths for one tabular model, so clients and fuzzers see its exact columns."""
    record = f"{manifest.name}.Record"
    spec.components.schema(record, component={
        "type": "object", "additionalProperties": False,
        "required": [f.name for f in manifest.features if f.required],
        "properties": {f.name: feature_schema(f) for f in manifest.features},
    })
    rows = {"type": "array", "minItems": 1, "items": {"$ref": f"#/components/schemas/{record}"}}
    body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["dataframe_records"],
        "properties": {"dataframe_records": rows}}}, "text/csv": {"schema": {"type": "string"}}}}
    probabilities = {"name": "probabilities", "in": "query", "required": False, "schema": {"type": "boolean"}}
    spec.path(f"/models/{manifest.name}/invocations", operations={"post": {
        "summary": f"{manifest.name}: MLflow scoring ({manifest.description})".strip(),
        "description": "also accepts dataframe_split, instances and inputs, as the generic route documents",
        "requestBody": body, "parameters": [probabilities],
        "responses": {"200": _json("Invocations", "one prediction per row"), **_errors(400, 413, 415, 422, 503)},
    }})
    spec.path(f"/models/{manifest.name}/predict", operations={"post": {
        "summary": f"{manifest.name}: labels and probabilities per record",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["records"],
            "properties": {"records": rows}}}}},
        "responses": {"200": _json("RecordsResponse", "one prediction per record"),
                      **_errors(400, 413, 415, 422, 503)},
    }})
