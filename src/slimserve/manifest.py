"""The model manifest: what a model is, what input it expects and which artifacts belong to it.

A manifest is `manifest.json` in the model's folder, one model per folder (as MLServer's
model-settings.json). Training writes it, `slimserve compile` adds the `compiled` section, the server
reads it. The marshmallow schema below is the single definition of the format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from slimserve.errors import ModelConfigError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
COLOR_CHANNELS = {"grayscale": 1, "rgb": 3}
RESIZE_METHODS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
CROPS = ("center_square", "none")
TASKS = ("image_classification", "tabular_classification")
FEATURE_TYPES = ("number", "integer", "boolean", "category")


@dataclass(frozen=True)
class ImageContract:
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


@dataclass(frozen=True)
class Feature:
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


@dataclass(frozen=True)
class Artifact:
    """A file of the model and the sha256 it had when recorded."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Compiled:
    """The compiled (served) artifact and the source it was compiled from."""

    file: str
    sha256: str
    source_sha256: str
    tool: str = ""
    opset: int | None = None
    max_abs_diff: float | None = None
    compiled_at: str = ""


@dataclass(frozen=True)
class Manifest:
    """Everything the server needs to know about one model."""

    name: str
    version: str
    task: str
    labels: list[str]
    source: Artifact
    input: ImageContract | None = None
    features: list[Feature] | None = None
    label_names: dict[str, str] = field(default_factory=dict)
    onnx: dict[str, str] = field(default_factory=dict)
    threshold: float = 0.5
    positive_label: str | None = None
    activation: str = "sigmoid"
    description: str = ""
    compiled: Compiled | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    folder: Path = field(default=Path("."), compare=False)

    @property
    def source_path(self) -> Path:
        """Absolute path of the source (.h5) artifact."""
        return self.folder / self.source.file

    @property
    def compiled_path(self) -> Path | None:
        """Absolute path of the compiled (.onnx) artifact, if compiled."""
        return self.folder / self.compiled.file if self.compiled else None

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data (the on-disk format)."""
        return ManifestSchema().dump(self)


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

    @validates_schema
    def _categories_for_categoricals(self, data: dict[str, Any], **_: Any) -> None:
        if (data["type"] == "category") != bool(data.get("categories")):
            raise ValidationError("categories are required for, and only for, category features", "categories")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Feature:
        return Feature(**data)


class ArtifactSchema(Schema):
    file = fields.String(required=True)
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Artifact:
        return Artifact(**data)


class CompiledSchema(Schema):
    file = fields.String(required=True)
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    source_sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    tool = fields.String(load_default="")
    opset = fields.Integer(load_default=None, allow_none=True)
    max_abs_diff = fields.Float(load_default=None, allow_none=True)
    compiled_at = fields.String(load_default="")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Compiled:
        return Compiled(**data)


class ManifestSchema(Schema):
    class Meta:
        unknown = RAISE
        ordered = True

    schema_version = fields.Integer(load_default=SCHEMA_VERSION, validate=validate.Equal(SCHEMA_VERSION))
    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"))
    version = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"))
    task = fields.String(required=True, validate=validate.OneOf(TASKS))
    description = fields.String(load_default="")
    labels = fields.List(fields.String(), required=True, validate=validate.Length(min=2))
    positive_label = fields.String(load_default=None, allow_none=True)
    threshold = fields.Float(load_default=0.5, validate=validate.Range(min=0, max=1))
    activation = fields.String(load_default="sigmoid", validate=validate.OneOf(["sigmoid", "softmax"]))
    label_names = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    input = fields.Nested(ImageContractSchema, load_default=None, allow_none=True)
    features = fields.List(fields.Nested(FeatureSchema), load_default=None, allow_none=True)
    onnx = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    source = fields.Nested(ArtifactSchema, required=True)
    compiled = fields.Nested(CompiledSchema, load_default=None, allow_none=True)
    training = fields.Dict(load_default=dict)
    metrics = fields.Dict(load_default=dict)

    @validates_schema
    def _labels_fit_activation(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("activation", "sigmoid") == "sigmoid" and len(data["labels"]) != 2:
            raise ValidationError("a sigmoid output needs exactly two labels", "labels")
        positive = data.get("positive_label")
        if positive is not None and positive not in data["labels"]:
            raise ValidationError("positive_label must be one of labels", "positive_label")
        if data["task"] == "image_classification" and data.get("input") is None:
            raise ValidationError("an image model needs an input contract", "input")
        if data["task"] == "tabular_classification":
            features = data.get("features") or []
            if not features:
                raise ValidationError("a tabular model needs its features", "features")
            if len({f.name for f in features}) != len(features):
                raise ValidationError("feature names must be unique", "features")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Manifest:
        return Manifest(**data)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path_for(model_path: Path) -> Path:
    """Where the manifest of a model file (or model folder) lives."""
    folder = model_path if model_path.is_dir() else model_path.parent
    return folder / MANIFEST_NAME


def parse_manifest(data: dict[str, Any], folder: Path) -> Manifest:
    """Validate manifest data and bind it to the folder its files live in."""
    try:
        manifest = ManifestSchema().load(data)
    except ValidationError as exc:
        raise ModelConfigError(f"invalid manifest in {folder}: {exc.messages}") from None
    return _with_folder(manifest, folder)


def load_manifest(path: Path) -> Manifest:
    """Read and validate `manifest.json` for a model file or folder."""
    manifest_file = manifest_path_for(Path(path))
    if not manifest_file.is_file():
        raise ModelConfigError(
            f"no {MANIFEST_NAME} beside {path}: run `python -m slimserve compile {path}` "
            "(with --labels/--image-size/... for a model trained elsewhere)"
        )
    try:
        data = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelConfigError(f"cannot read {manifest_file}: {exc}") from None
    return parse_manifest(data, manifest_file.parent.resolve())


def save_manifest(manifest: Manifest) -> Path:
    """Write the manifest into its folder, pretty-printed and stable for diffs."""
    target = manifest.folder / MANIFEST_NAME
    target.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return target


def _with_folder(manifest: Manifest, folder: Path) -> Manifest:
    values = {k: getattr(manifest, k) for k in manifest.__dataclass_fields__}
    values["folder"] = folder
    return Manifest(**values)


def contract_as_dict(contract: ImageContract) -> dict[str, Any]:
    """The image contract as plain data (for /models responses)."""
    return asdict(contract)
