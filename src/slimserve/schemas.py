"""Marshmallow schemas, defined once: request validation, response serialization and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from slimserve.manifest import FeatureSchema, ImageContractSchema


class UploadSchema(Schema):
    """A multipart upload: exactly one non-empty part called `file`, nothing else."""

    class Meta:
        unknown = RAISE

    file = fields.List(fields.Raw(), required=True, metadata={"description": "the image (JPEG or PNG)"})

    @validates("file")
    def _one_file(self, value: list[Any], **_: Any) -> None:
        if len(value) != 1:
            raise ValidationError("send exactly one file per request")


class ErrorDetailSchema(Schema):
    field = fields.String(required=True)
    row = fields.Integer(allow_none=True, required=True)
    code = fields.String(required=True)
    message = fields.String(required=True)


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "unsupported_image_type"})
    message = fields.String(required=True)
    field = fields.String(metadata={"description": "the request field at fault, when there is one"})
    row = fields.Integer(allow_none=True, metadata={"description": "tabular input: the row of the first problem"})
    details = fields.List(fields.Nested(ErrorDetailSchema),
                          metadata={"description": "tabular input: every problem found (at most 50)"})


class ErrorSchema(Schema):
    """Every error response, whatever the route."""

    error = fields.Nested(ErrorBodySchema, required=True)
    request_id = fields.String(required=True)


class VersionRefSchema(Schema):
    version = fields.String(required=True)
    default = fields.Boolean(required=True)
    ready = fields.Boolean(required=True)


class HeatmapSchema(Schema):
    """A class-activation heatmap: a small PNG with the upload's aspect ratio, to stretch over it."""

    media_type = fields.String(required=True, metadata={"example": "image/png"})
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    data = fields.String(required=True, metadata={"description": "base64 of the PNG"})


class PredictionSchema(Schema):
    """The answer of POST /predict. The first three keys are a contract with earlier clients."""

    class Meta:
        ordered = True

    filename = fields.String(allow_none=True, required=True)
    prediction = fields.String(required=True, metadata={"example": "PNEUMONIA"})
    probability = fields.Float(required=True, metadata={"description": "P(positive label), e.g. P(pneumonia)"})
    probabilities = fields.Dict(keys=fields.String(), values=fields.Float())
    threshold = fields.Float()
    model = fields.String(required=True)
    version = fields.String(required=True)
    inference_ms = fields.Float()
    heatmap = fields.Nested(HeatmapSchema, metadata={"description": "with `?explain=true`"})
    request_id = fields.String(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "loading", "unavailable"]))


class ModelRefSchema(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)


class VersionSchema(Schema):
    service = fields.String(required=True)
    version = fields.String(required=True)
    git_commit = fields.String(allow_none=True, required=True)
    image_digest = fields.String(allow_none=True, required=True)
    runtime = fields.String(required=True)
    default_model = fields.String(required=True)
    models = fields.List(fields.Nested(ModelRefSchema), required=True)
    auth = fields.String(required=True, metadata={"description": "on, or off (every model open: local use)"})


class ModelSchema(Schema):
    """Manifest-derived metadata of one model, including its exact input contract."""

    class Meta:
        ordered = True

    name = fields.String(required=True)
    version = fields.String(required=True)
    task = fields.String(required=True)
    description = fields.String()
    ready = fields.Boolean(required=True)
    default = fields.Boolean(required=True)
    labels = fields.List(fields.String(), required=True)
    positive_label = fields.String(allow_none=True)
    threshold = fields.Float()
    label_names = fields.Dict(keys=fields.String(), values=fields.String())
    input = fields.Nested(ImageContractSchema, allow_none=True, metadata={"description": "image models"})
    features = fields.List(fields.Nested(FeatureSchema), allow_none=True,
                           metadata={"description": "tabular models: the columns to send, with types and ranges"})
    accepts = fields.List(fields.String(), metadata={"description": "accepted upload media types"})
    max_body_bytes = fields.Integer(metadata={
        "description": "largest request body accepted (tabular models: sized from the row limit)"})
    metrics = fields.Dict()
    source_sha256 = fields.String()
    compiled_sha256 = fields.String(allow_none=True)
    versions = fields.List(fields.Nested(VersionRefSchema), metadata={"description": "every served version"})
    refuses_out_of_scope = fields.Boolean(metadata={"description": "answers 422 not_a_chest_xray to other images"})
    explains = fields.Boolean(metadata={"description": "`?explain=true` adds an activation heatmap"})
    model_card = fields.String(allow_none=True, metadata={"description": "MODEL_CARD.md (markdown)"})


class ModelListSchema(Schema):
    default_model = fields.String(required=True)
    models = fields.List(fields.Nested(ModelSchema), required=True)


class ReadySchema(Schema):
    ready = fields.Boolean(required=True)
    models = fields.Dict(keys=fields.String(), values=fields.String())


class RecordsRequestSchema(Schema):
    """POST /models/<name>/predict for tabular models: `{"records": [{column: value, ...}, ...]}`."""

    class Meta:
        unknown = RAISE

    # Raw plus one check: a List(Dict) field would visit every key of every record (16-24 ms for 1,000 rows).
    records = fields.Raw(required=True, metadata={"type": "array", "items": {"type": "object"}, "minItems": 1})

    @validates("records")
    def _non_empty_list_of_objects(self, value: Any, **_: Any) -> None:
        if not isinstance(value, list) or not value or not all(isinstance(r, dict) for r in value):
            raise ValidationError("must be a non-empty list of objects")


class RecordPredictionSchema(Schema):
    label = fields.String(required=True)
    label_name = fields.String(required=True)
    probabilities = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)


class RecordsResponseSchema(Schema):
    """The answer of POST /models/<name>/predict for tabular models."""

    model = fields.String(required=True)
    version = fields.String(required=True)
    # Built by the view already shaped as RecordPrediction; Raw avoids one nested dump per row.
    predictions = fields.Raw(required=True, metadata={
        "type": "array", "items": {"$ref": "#/components/schemas/RecordPrediction"}})
    inference_ms = fields.Float()
    request_id = fields.String(required=True)


class InvocationsSchema(Schema):
    """MLflow's response: one prediction per row; probabilities with `?probabilities=true`."""

    # Raw: per-element fields cost more than the model itself at 1,000 rows.
    predictions = fields.Raw(required=True, metadata={"type": "array", "items": {}})
    probabilities = fields.Raw(metadata={"type": "array", "items": {"type": "object",
                                                                     "additionalProperties": {"type": "number"}}})
