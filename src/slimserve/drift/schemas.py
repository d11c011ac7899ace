"""The drift report's response schema: the view serializes with it and the OpenAPI document is built from it."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

STATUS = validate.OneOf(["ok", "warn", "drift"])


class DriftColumnSchema(Schema):
    name = fields.String(required=True, metadata={"description": "feature name, or `prediction`"})
    psi = fields.Float(allow_none=True, metadata={"description": "population stability index vs training"})
    p_value = fields.Float(allow_none=True, metadata={"description": "chi-square two-sample test p-value"})
    status = fields.String(required=True, validate=STATUS)
    bins = fields.List(fields.String(), required=True, metadata={"description": "a label per bin"})
    reference = fields.List(fields.Float(), required=True, metadata={"description": "training frequencies"})
    window = fields.List(fields.Float(), required=True, metadata={"description": "window frequencies"})


class DriftThresholdsSchema(Schema):
    psi_warn = fields.Float(required=True)
    psi_drift = fields.Float(required=True)
    alpha = fields.Float(required=True)
    min_rows = fields.Integer(required=True)


class DriftReportSchema(Schema):
    model = fields.String(required=True)
    version = fields.String(required=True)
    store = fields.String(required=True, metadata={"description": "`memory` (restarts empty) or `postgresql`"})
    status = fields.String(required=True, validate=STATUS)
    judged = fields.Boolean(required=True, metadata={"description": "false below `min_rows` rows"})
    window_rows = fields.Integer(required=True)
    window_size = fields.Integer(required=True)
    rows_seen = fields.Integer(required=True, metadata={"description": "rows counted since start (or restore)"})
    reference_rows = fields.Integer(required=True)
    features = fields.List(fields.Nested(DriftColumnSchema), required=True)
    prediction = fields.Nested(DriftColumnSchema, required=True)
    thresholds = fields.Nested(DriftThresholdsSchema, required=True)
