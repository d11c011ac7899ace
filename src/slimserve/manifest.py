"""The model manifest: what a model is, what input it expects and which artifacts belong to it.

A manifest is `manifest.json` in the model's folder, one model per folder (as MLServer's
model-settings.json). Training writes it, `slimserve compile` adds the `compiled` section, the server
reads it. The marshmallow schema below is the single definition of the format: every writer builds a
`Manifest` and calls `save_manifest`, which validates it as the server will and writes the canonical form
(optional fields left out when unset).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from marshmallow import RAISE, Schema, ValidationError, fields, post_dump, post_load, validate, validates_schema

from slimserve.contracts import (
    COLOR_CHANNELS,
    CROPS,
    FEATURE_TYPES,
    RESIZE_METHODS,
    Feature,
    FeatureSchema,
    ImageContract,
    ImageContractSchema,
    contract_as_dict,
    without_unset,
)
from slimserve.drift.profile import ProfileSchema
from slimserve.errors import ModelConfigError
from slimserve.model_extras import (
    ActivationMap,
    ActivationMapSchema,
    Calibration,
    CalibrationSchema,
    OutOfScope,
    OutOfScopeSchema,
)

# The input contracts are re-exported: `manifest.Feature` is the one feature model of the project.
__all__ = ["COLOR_CHANNELS", "CROPS", "FEATURE_TYPES", "MANIFEST_NAME", "RESIZE_METHODS", "Artifact", "Compiled",
           "Feature", "FeatureSchema", "ImageContract", "ImageContractSchema", "Manifest", "ManifestSchema",
           "compiled_record", "contract_as_dict", "load_manifest", "manifest_path_for", "parse_manifest",
           "save_manifest", "sha256_file"]
MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
TASKS = ("image_classification", "tabular_classification")


class Artifact(NamedTuple):
    """A file of the model and the sha256 it had when recorded."""

    file: str
    sha256: str


class Compiled(NamedTuple):
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
    calibration: Calibration | None = None
    ood: OutOfScope | None = None
    cam: ActivationMap | None = None
    # Bins and training frequencies for drift monitoring (slimserve.drift.profile); optional.
    drift_reference: dict[str, Any] | None = None
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

    @post_dump
    def _canonical(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return without_unset(data)

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
    label_names = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    positive_label = fields.String(load_default=None, allow_none=True)
    threshold = fields.Float(load_default=0.5, validate=validate.Range(min=0, max=1))
    activation = fields.String(load_default="sigmoid", validate=validate.OneOf(["sigmoid", "softmax"]))
    input = fields.Nested(ImageContractSchema, load_default=None, allow_none=True)
    features = fields.List(fields.Nested(FeatureSchema), load_default=None, allow_none=True)
    onnx = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    source = fields.Nested(ArtifactSchema, required=True)
    compiled = fields.Nested(CompiledSchema, load_default=None, allow_none=True)
    training = fields.Dict(load_default=dict)
    metrics = fields.Dict(load_default=dict)
    calibration = fields.Nested(CalibrationSchema, load_default=None, allow_none=True)
    ood = fields.Nested(OutOfScopeSchema, load_default=None, allow_none=True)
    cam = fields.Nested(ActivationMapSchema, load_default=None, allow_none=True)
    drift_reference = fields.Nested(ProfileSchema, load_default=None, allow_none=True)

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

    @post_dump
    def _canonical(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """The on-disk form: optional fields left out when unset, and no threshold where argmax decides."""
        binary = data["activation"] == "sigmoid" or (data.get("positive_label") and len(data["labels"]) == 2)
        return without_unset({k: v for k, v in data.items() if binary or k != "threshold"})

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
    """Validate the manifest as the server will, then write it into its folder in the canonical form."""
    data = manifest.to_dict()
    parse_manifest(data, manifest.folder)  # refuse here what the server would refuse at load
    target = manifest.folder / MANIFEST_NAME
    target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return target


def compiled_record(onnx_path: Path, *, tool: str, opset: int, max_abs_diff: float,
                    source_sha256: str | None = None) -> Compiled:
    """The `compiled` section for the ONNX file at `onnx_path`; without a source sha it is its own source."""
    digest = sha256_file(onnx_path)
    return Compiled(file=onnx_path.name, sha256=digest, source_sha256=source_sha256 or digest, tool=tool,
                    opset=opset, max_abs_diff=float(max_abs_diff),
                    compiled_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def _with_folder(manifest: Manifest, folder: Path) -> Manifest:
    return replace(manifest, folder=folder)

