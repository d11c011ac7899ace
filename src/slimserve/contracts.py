"""A model's input contract: how an uploaded image becomes its tensor, or the typed columns of its table.

The manifest (slimserve.manifest) holds one of these; training, import, the benchmark and the server all
use these classes, so a feature is defined and validated in one place.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from marshmallow import RAISE, Schema, ValidationError, fields, post_dump, post_load, validate, validates_schema

COLOR_CHANNELS = {"grayscale": 1, "rgb": 3}
RESIZE_METHODS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
CROPS = ("center_square", "none")
FEATURE_TYPES = ("number", "integer", "boolean", "category")


class ImageContract(NamedTuple):
    """Exactly how an uploaded image becomes the model's input tensor."""

    height: int
    width: int
    channels: int = 1
    color: str = "grayscale"
    crop: str = "center_square"
    resize: str = "bilinear"
    scale: float = 1 / 255
    offset: float = 0.0
    layout: str = "NHWC"
    dtype: str = "float32"

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of one input, without the batch axis."""
        if self.layout == "NCHW":
            return (self.channels, self.height, self.width)
        return (self.height, self.width, self.channels)


class Feature(NamedTuple):
    """One input column of a tabular model, exactly as clients must send it."""

    name: str
    type: str
    description: str = ""
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    categories: list[str] | None = None
    required: bool = True
    nullable: bool = False
    zero_means_missing: bool = False


class ImageContractSchema(Schema):
    class Meta:
        unknown = RAISE

    height = fields.Integer(required=True, validate=validate.Range(min=1, max=4096))
    width = fields.Integer(required=True, validate=validate.Range(min=1, max=4096))
    channels = fields.Integer(load_default=1, validate=validate.OneOf([1, 3]))
    color = fields.String(load_default="grayscale", validate=validate.OneOf(list(COLOR_CHANNELS)))
    crop = fields.String(load_default="center_square", validate=validate.OneOf(CROPS))
    resize = fields.String(load_default="bilinear", validate=validate.OneOf(RESIZE_METHODS))
    scale = fields.Float(load_default=1 / 255)
    offset = fields.Float(load_default=0.0)
    layout = fields.String(load_default="NHWC", validate=validate.OneOf(["NHWC", "NCHW"]))
    dtype = fields.String(load_default="float32", validate=validate.OneOf(["float32"]))

    @validates_schema
    def _channels_match_color(self, data: dict[str, Any], **_: Any) -> None:
        if COLOR_CHANNELS[data.get("color", "grayscale")] != data.get("channels", 1):
            raise ValidationError("channels must be 1 for grayscale and 3 for rgb", "channels")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> ImageContract:
        return ImageContract(**data)


class FeatureSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    type = fields.String(required=True, validate=validate.OneOf(FEATURE_TYPES))
    description = fields.String(load_default="")
    unit = fields.String(load_default=None, allow_none=True)
    minimum = fields.Float(load_default=None, allow_none=True)
    maximum = fields.Float(load_default=None, allow_none=True)
    categories = fields.List(fields.String(), load_default=None, allow_none=True)
    required = fields.Boolean(load_default=True)
    nullable = fields.Boolean(load_default=False)
    zero_means_missing = fields.Boolean(load_default=False)

    @post_dump
    def _canonical(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return without_unset(data)

    @validates_schema
    def _categories_for_categoricals(self, data: dict[str, Any], **_: Any) -> None:
        if (data["type"] == "category") != bool(data.get("categories")):
            raise ValidationError("categories are required for, and only for, category features", "categories")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Feature:
        return Feature(**data)


def without_unset(data: dict[str, Any]) -> dict[str, Any]:
    """Data without None and empty containers (loading fills in the same defaults)."""
    return {k: v for k, v in data.items() if v is not None and v != {} and v != []}


def contract_as_dict(contract: ImageContract) -> dict[str, Any]:
    """The image contract as plain data (for /models responses)."""
    return contract._asdict()
