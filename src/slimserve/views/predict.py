"""Prediction routes: an image (multipart `-F file=@x.jpg` or a raw body), or records for tabular models."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, g

from slimserve.schemas import PredictionSchema
from slimserve.views.context import registry, service
from slimserve.views.invocations import predict_records
from slimserve.views.uploads import read_upload

bp = Blueprint("predict", __name__)
_prediction_schema = PredictionSchema()


@bp.post("/predict")
def predict_default():
    """Classify one image with the default model."""
    return _predict(None)


@bp.post("/models/<name>/predict")
def predict_named(name: str):
    """Classify one image, or a list of records, with the named model."""
    if registry().get(name).is_tabular:
        return predict_records(name)
    return _predict(name)


def _predict(model: str | None):
    data, filename = read_upload()
    result = service().predict_image(data, filename, model)
    return _prediction_schema.dump({**asdict(result), "request_id": g.request_id})
