"""Optional manifest sections for models whose graph has more than a probability: calibration, out-of-scope
refusal and class-activation maps. Each names the ONNX output it relies on; all are absent for older models.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from marshmallow import RAISE, Schema, fields, post_dump, post_load, validate

from slimserve.contracts import without_unset

CALIBRATION_METHODS = ("temperature", "platt")


class Calibration(NamedTuple):
    """How the served probability was calibrated; already applied in the graph: sigmoid(scale·logit + bias)."""

    method: str
    scale: float
    bias: float = 0.0
    fitted_on: str = "val"


class OutOfScope(NamedTuple):
    """An ONNX output scoring how unlike the training images an input is; above `threshold` it is refused."""

    output: str
    threshold: float
    statistic: str = ""


class ActivationMap(NamedTuple):
    """An ONNX output holding a class-activation map (batch, h, w, 1) over the whole model input."""

    output: str
    units: str = ""


class _Strict(Schema):
    class Meta:
        unknown = RAISE

    @post_dump
    def _canonical(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return without_unset(data)


class CalibrationSchema(_Strict):
    method = fields.String(required=True, validate=validate.OneOf(CALIBRATION_METHODS))
    scale = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False))
    bias = fields.Float(load_default=0.0)
    fitted_on = fields.String(load_default="val")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Calibration:
        return Calibration(**data)


class OutOfScopeSchema(_Strict):
    output = fields.String(required=True, validate=validate.Length(min=1))
    threshold = fields.Float(required=True)
    statistic = fields.String(load_default="")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> OutOfScope:
        return OutOfScope(**data)


class ActivationMapSchema(_Strict):
    output = fields.String(required=True, validate=validate.Length(min=1))
    units = fields.String(load_default="")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ActivationMap:
        return ActivationMap(**data)
