"""The OpenAPI document, generated from the marshmallow schemas the views use (never written by hand)."""

from __future__ import annotations

from typing import Any

from slimserve import __version__

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


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): ERROR for status in statuses}


def build_spec() -> dict[str, Any]:
    """Build the OpenAPI 3 document for every route."""
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    from slimserve import schemas

    spec = APISpec(title="slimserve", version=__version__, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Medical model serving inside 256 MB / 0.1 vCPU."})
    for name in ("Error", "Prediction", "Health", "Ready", "Version", "Model", "ModelList"):
        spec.components.schema(name, schema=getattr(schemas, f"{name}Schema"))
    spec.components.response("Error", _json("Error", "an error; `code` is stable, `message` is for people"))
    predict = {
        "summary": "Classify one image",
        "requestBody": IMAGE_BODY,
        "parameters": [{"name": "filename", "in": "query", "required": False, "schema": {"type": "string"},
                        "description": "file name to report for a raw (non-multipart) body"}],
        "responses": {"200": _json("Prediction", "the prediction"), **_errors(400, 404, 413, 415, 422, 503)},
    }
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    spec.path("/predict", operations={"post": predict})
    spec.path("/models/{name}/predict", operations={"post": {**predict, "parameters": [
        name_param, *predict["parameters"]]}})
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
    return spec.to_dict()
