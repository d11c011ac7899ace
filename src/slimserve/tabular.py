"""Tabular input: one marshmallow schema per model, generated from its manifest features at load time.

Fields validate whole columns with numpy, so 1,000 rows cost about as much as one. Messages name the
field and the row, never the submitted value (MLflow's errors print the patient rows back).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from marshmallow import RAISE, Schema, ValidationError, fields

from slimserve.errors import UnprocessableEntity, safe_name
from slimserve.manifest import Feature

MISSING = object()  # a record without this column
_PLAIN_NUMBERS = frozenset((int, float))
_STRINGS = frozenset((str,))
MAX_DETAILS = 50


def problem(code: str, message: str, row: int | None = None) -> ValidationError:
    """A validation failure at a row with a stable code; marshmallow keeps the dict as the field's message."""
    return ValidationError({"code": code, "row": row, "message": message})


class ColumnField(fields.Field):
    """A whole column of one feature: list of raw values in, a (rows, 1) ONNX-ready array out."""

    def __init__(self, feature: Feature, **kwargs: Any) -> None:
        super().__init__(required=feature.required, **kwargs)
        self.feature = feature
        self.categories = frozenset(feature.categories or ())

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> np.ndarray:
        if not isinstance(value, list):
            raise problem("wrong_type", "must be a list of values, one per row")
        if self.feature.type == "category":
            return self._categories(value)
        return self._numbers(value)

    def _numbers(self, values: list[Any]) -> np.ndarray:
        try:
            if not _PLAIN_NUMBERS.issuperset(map(type, values)):  # bools, strings, None: the careful path
                raise TypeError
            column = np.asarray(values, dtype=np.float64)  # the common case, checked without a Python loop
        except (TypeError, OverflowError):
            column = np.array([self._number(value, row) for row, value in enumerate(values)], dtype=np.float64)
        present = ~np.isnan(column) if self.feature.nullable else np.ones(column.shape, dtype=bool)
        self._fail_at(present & ~np.isfinite(column), "wrong_type", f"must be {self._kind()}")
        if self.feature.type == "integer":
            self._fail_at(present & (column != np.round(column)), "wrong_type", "must be an integer")
        if self.feature.type == "boolean":
            self._fail_at(present & (column != 0) & (column != 1), "wrong_type", f"must be {self._kind()}")
        low, high = self.feature.minimum, self.feature.maximum
        message = f"must be between {_fmt(low)} and {_fmt(high)}"
        if low is not None:
            self._fail_at(present & (column < low), "out_of_range", message)
        if high is not None:
            self._fail_at(present & (column > high), "out_of_range", message)
        return column.astype(np.float32).reshape(-1, 1)

    def _number(self, value: Any, row: int) -> float:
        self._check_present(value, row)
        if value is None:
            return math.nan
        if isinstance(value, bool):
            if self.feature.type != "boolean":
                raise problem("wrong_type", f"must be {self._kind()}", row)
            return float(value)
        try:
            if isinstance(value, int | float):
                return float(value)
        except OverflowError:
            pass
        raise problem("wrong_type", f"must be {self._kind()}", row)

    def _kind(self) -> str:
        return {"boolean": "true/false or 0/1", "integer": "an integer"}.get(self.feature.type, "a number")

    @staticmethod
    def _fail_at(bad: np.ndarray, code: str, message: str) -> None:
        if bad.any():
            raise problem(code, message, int(np.argmax(bad)))

    def _categories(self, values: list[Any]) -> np.ndarray:
        try:
            if _STRINGS.issuperset(map(type, values)) and self.categories.issuperset(values):
                return np.asarray(values, dtype=object).reshape(-1, 1)  # all known: no per-row loop
        except TypeError:
            pass  # an unhashable value (list, object): the loop below names its row
        for row, value in enumerate(values):
            self._check_present(value, row)
            if not isinstance(value, str):
                raise problem("wrong_type", "must be a string (one of the known categories)", row)
            if value not in self.categories:
                known = ", ".join(sorted(self.categories)) if len(self.categories) <= 20 else "see /models"
                raise problem("unknown_category", f"is not a known category (known: {known})", row)
        return np.asarray(values, dtype=object).reshape(-1, 1)

    def _check_present(self, value: Any, row: int) -> None:
        if value is MISSING:
            raise problem("missing_field", "is missing", row)
        if value is None and not self.feature.nullable:
            raise problem("null_value", "may not be null", row)


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "any"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


class TableSchema(Schema):
    """Base of the generated per-model schemas: unknown columns are an error, never dropped."""

    class Meta:
        unknown = RAISE

    def handle_error(self, error: ValidationError, data: Any, **kwargs: Any) -> None:
        raise table_error(error, self.fields)


def build_table_schema(name: str, features: list[Feature]) -> TableSchema:
    """The marshmallow schema for one model's columns, built once when the model loads."""
    generated = TableSchema.from_dict({f.name: ColumnField(f) for f in features}, name=f"{name}Table")
    return generated()


def table_error(error: ValidationError, known: dict[str, Any]) -> UnprocessableEntity:
    """One 422 listing every column problem (field, row, code), the first one in the message."""
    details = []
    for field, message in error.normalized_messages().items():
        if isinstance(message, dict):
            details.append({"field": field, **message})
        elif field not in known:
            details.append({"field": safe_name(field), "row": None, "code": "unexpected_field",
                            "message": "is not an input of this model"})
        else:
            details.append({"field": field, "row": None, "code": "missing_field", "message": "is missing"})
    details.sort(key=lambda d: (d["row"] is not None, d["row"] or 0, d["field"]))
    first = details[0]
    where = f"row {first['row']}, " if first["row"] is not None else ""
    more = f" ({len(details) - 1} more problem(s) in `details`)" if len(details) > 1 else ""
    exc = UnprocessableEntity(f"{where}field `{first['field']}` {first['message']}{more}",
                              code=first["code"], field=first["field"])
    exc.extra = {"row": first["row"], "details": details[:MAX_DETAILS]}
    return exc
