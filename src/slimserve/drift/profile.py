"""The drift reference profile: bins fixed at training time and the training data's frequency in each.

One definition serves both sides: `build_profile` runs where the training data is (a training script, or
`scripts/drift_reference.py` for models already trained), `BinIndex` turns served inputs into bin numbers.
Numeric features get bins between training deciles plus one `missing` bin (NaN, or 0 where 0 means not
measured); categories get one bin each plus `other`. Binary models also get bins of P(positive), other
models the predicted label. Nothing in a profile can be turned back into a patient's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from marshmallow import RAISE, Schema, ValidationError, fields, post_dump, validate, validates_schema

from slimserve.contracts import Feature, without_unset

QUANTILES = np.linspace(0.1, 0.9, 9)
PROBABILITY_EDGES = [round(x, 1) for x in np.linspace(0.1, 0.9, 9)]
PREDICTION = "prediction"  # the name of the predicted-probability (or label) "feature" in reports


@dataclass(frozen=True)
class BinSpec:
    """How one column is binned, and the training frequency of every bin."""

    name: str
    kind: str  # numeric | category
    frequencies: list[float]
    edges: list[float] | None = None
    categories: list[str] | None = None
    zero_means_missing: bool = False

    @property
    def bins(self) -> int:
        """Number of bins, the missing/other bin included."""
        return len(self.edges) + 2 if self.kind == "numeric" else len(self.categories) + 1

    def labels(self) -> list[str]:
        """A readable name per bin (for the model page)."""
        if self.kind == "category":
            return [*self.categories, "other"]
        edges = self.edges
        inner = [f"< {edges[0]:g}"] + [f"{a:g} – {b:g}" for a, b in pairwise(edges)]
        return [*inner, f"≥ {edges[-1]:g}", "missing"]

    def index(self, values: Any) -> np.ndarray:
        """The bin number of every value of one column."""
        column = np.asarray(values).reshape(-1)
        if self.kind == "category":
            lookup = {c: i for i, c in enumerate(self.categories)}
            other = len(self.categories)
            return np.fromiter((lookup.get(v, other) for v in column.tolist()), dtype=np.int64, count=len(column))
        # float32 on both sides: the server's table schema hands the model float32, training data is float64,
        # and a value sitting on an edge (diabetes' imputed BMI 27.32 in a quarter of the rows) must fall on
        # the same side of it in both.
        numbers = column.astype(np.float32)
        bins = np.searchsorted(np.asarray(self.edges, dtype=np.float32), numbers, side="right")
        missing = np.isnan(numbers)
        if self.zero_means_missing:
            missing |= numbers == 0
        return np.where(missing, len(self.edges) + 1, bins)


@dataclass(frozen=True)
class Profile:
    """The reference of one model: a BinSpec per feature (or image statistic) and one for the prediction."""

    rows: int
    features: list[BinSpec]
    prediction: BinSpec
    positive_index: int = -1  # the probability column the prediction bins count (binary models)

    @property
    def columns(self) -> list[BinSpec]:
        """Every binned column, the prediction last."""
        return [*self.features, self.prediction]


def numeric_spec(name: str, values: np.ndarray, zero_means_missing: bool = False,
                 edges: list[float] | None = None) -> BinSpec:
    """Bins between the training deciles (or the given edges), with their training frequencies."""
    numbers = np.asarray(values, dtype=np.float64).reshape(-1)
    present = numbers[~np.isnan(numbers)]
    if zero_means_missing:
        present = present[present != 0]
    if edges is None:
        edges = np.unique(np.quantile(present, QUANTILES)).tolist() if len(present) else [0.0]
    # Rounded before counting, so the frequencies belong to the edges exactly as the manifest stores them.
    edges = sorted({round(float(e), 6) for e in edges})
    spec = BinSpec(name, "numeric", [], edges=edges, zero_means_missing=zero_means_missing)
    return BinSpec(**{**spec.__dict__, "frequencies": _frequencies(spec, numbers)})


def category_spec(name: str, values: np.ndarray, categories: list[str]) -> BinSpec:
    """One bin per category plus `other`, with their training frequencies."""
    spec = BinSpec(name, "category", [], categories=list(categories))
    return BinSpec(**{**spec.__dict__, "frequencies": _frequencies(spec, values)})


def _frequencies(spec: BinSpec, values: Any) -> list[float]:
    counts = np.bincount(spec.index(values), minlength=spec.bins)
    return [round(float(c), 6) for c in counts / max(counts.sum(), 1)]


def build_profile(features: list[Feature], columns: dict[str, Any], probabilities: np.ndarray,
                  labels: list[str], positive_label: str | None) -> Profile:
    """The reference profile of a tabular model from its training columns and its predictions on them."""
    specs = [category_spec(f.name, columns[f.name], f.categories) if f.type == "category"
             else numeric_spec(f.name, columns[f.name], f.zero_means_missing) for f in features]
    positive = labels.index(positive_label) if positive_label is not None and len(labels) == 2 else -1
    return Profile(len(probabilities), specs, prediction_spec(probabilities, labels, positive_label), positive)


def prediction_spec(probabilities: np.ndarray, labels: list[str], positive_label: str | None) -> BinSpec:
    """Bins of P(positive) for a binary model, else of the predicted label."""
    if positive_label is not None and len(labels) == 2:
        return numeric_spec(PREDICTION, probabilities[:, labels.index(positive_label)], edges=PROBABILITY_EDGES)
    return category_spec(PREDICTION, np.asarray(labels, dtype=object)[np.argmax(probabilities, axis=1)], labels)


def build_image_profile(batch: np.ndarray, probabilities: np.ndarray, labels: list[str],
                        positive_label: str | None) -> Profile:
    """The reference profile of an image model from its model-ready training images and predictions."""
    stats = image_statistics(batch)
    specs = [numeric_spec(name, values) for name, values in stats.items()]
    positive = labels.index(positive_label or labels[-1]) if len(labels) == 2 else -1
    return Profile(len(probabilities), specs, prediction_spec(probabilities, labels, positive_label or labels[-1]
                                                              if len(labels) == 2 else None), positive)


def image_statistics(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Cheap per-image statistics of a model-ready batch: mean brightness and contrast (std)."""
    flat = np.asarray(batch, dtype=np.float32).reshape(len(batch), -1)
    return {"image_mean": flat.mean(axis=1), "image_std": flat.std(axis=1)}


class BinSpecSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["numeric", "category"]))
    frequencies = fields.List(fields.Float(validate=validate.Range(min=0, max=1)), required=True)
    edges = fields.List(fields.Float(), load_default=None)
    categories = fields.List(fields.String(), load_default=None)
    zero_means_missing = fields.Boolean(load_default=False)

    @validates_schema
    def _shape(self, data: dict[str, Any], **_: Any) -> None:
        numeric = data["kind"] == "numeric"
        if numeric and (not data.get("edges") or data["edges"] != sorted(data["edges"])):
            raise ValidationError("numeric bins need sorted edges", "edges")
        if not numeric and not data.get("categories"):
            raise ValidationError("category bins need categories", "categories")
        expected = len(data["edges"]) + 2 if numeric else len(data["categories"]) + 1
        if len(data["frequencies"]) != expected:
            raise ValidationError(f"expected {expected} frequencies", "frequencies")

    @post_dump
    def _canonical(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return without_unset({k: v for k, v in data.items() if not (k == "zero_means_missing" and not v)})


class ProfileSchema(Schema):
    """The `drift_reference` field of a manifest."""

    class Meta:
        unknown = RAISE

    rows = fields.Integer(required=True, validate=validate.Range(min=1))
    features = fields.List(fields.Nested(BinSpecSchema), required=True)
    prediction = fields.Nested(BinSpecSchema, required=True)
    positive_index = fields.Integer(load_default=-1)


def profile_from_dict(data: dict[str, Any]) -> Profile:
    """A Profile from its manifest form (validated)."""
    loaded = ProfileSchema().load(data)
    return Profile(loaded["rows"], [BinSpec(**f) for f in loaded["features"]], BinSpec(**loaded["prediction"]),
                   loaded["positive_index"])


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """The manifest form of a Profile (canonical: unset fields left out)."""
    return ProfileSchema().dump({"rows": profile.rows, "features": [s.__dict__ for s in profile.features],
                                 "prediction": profile.prediction.__dict__, "positive_index": profile.positive_index})
