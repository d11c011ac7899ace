"""Request rows for the tabular benchmark: real data rows, typed by each model's manifest features.

Rows are kept only if the server's own table schema accepts them, so every request the benchmark sends
is one the server answers with 200.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.bench.client import Upload
from slimserve.errors import UnprocessableEntity
from slimserve.manifest import Feature, load_manifest
from slimserve.tabular import build_table_schema

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
# Which data file feeds which model; the four antibiotic models share one file, filtered by WHONET code.
SOURCES = {
    "heart_failure": "heart_failure/heart.csv",
    "diabetes": "diabetes/diabetes_prediction_dataset.csv",
    "aids": "aids/AIDS_Classification.csv",
}
ANTIBIOTIC_SOURCE = "antibiotic/camda2025_training_mic_sir.csv"
_ANTIBIOTIC_MODEL = re.compile(r"^modelo_([A-Z]{3})_NM$")
JSON = "application/json"


@dataclass(frozen=True)
class ModelPayloads:
    """One model's request bodies: 1-row bodies to cycle through, and one 1,000-row body, in two formats."""

    name: str
    columns: list[str]
    single_split: list[Upload]
    single_records: list[Upload]
    bulk_split: Upload
    bulk_records: Upload
    rows_available: int
    rows_skipped: int


def whonet_code(model: str) -> str | None:
    """The antibiotic code in `modelo_<CODE>_NM`, or None for other models."""
    match = _ANTIBIOTIC_MODEL.match(model)
    return match.group(1) if match else None


def source_for(model: str, data: Path = SHARED_DATA) -> tuple[Path, str | None]:
    """The CSV with real rows for `model`, and the WHONET code to filter it by (None: every row)."""
    code = whonet_code(model)
    if code:
        return data / ANTIBIOTIC_SOURCE, code
    if model not in SOURCES:
        raise KeyError(f"no data source for model {model}")
    return data / SOURCES[model], None


def tabular_manifests(models_dir: Path) -> dict[str, list[Feature]]:
    """Name → features of every tabular model under `models_dir`, read as the server reads manifests."""
    found: dict[str, list[Feature]] = {}
    for path in sorted(models_dir.glob("*/*/manifest.json")):
        manifest = load_manifest(path.parent)
        if manifest.features:
            found[manifest.name] = manifest.features
    return found


def json_value(feature: Feature, raw: str) -> int | float | str:
    """A CSV cell as the JSON value the manifest asks for: category → str, integer/boolean → int, number."""
    if feature.type == "category":
        return raw
    number = float(raw)
    if feature.type in ("integer", "boolean"):
        if not number.is_integer():
            raise ValueError(f"{feature.name}: {raw!r} is not an integer")
        return int(number)
    # Integral numbers stay integers, as they appear in the data (MLflow's signature has them as long).
    return int(number) if number.is_integer() else number


def accepted(features: list[Feature], rows: list[list[Any]]) -> list[int]:
    """Indexes of the rows the server's schema accepts: all columns checked at once, refused rows dropped."""
    schema, keep = build_table_schema("bench", features), list(range(len(rows)))
    while keep:
        try:
            schema.load({f.name: [rows[i][j] for i in keep] for j, f in enumerate(features)})
            return keep
        except UnprocessableEntity as exc:  # names the first refused row of each column
            refused = {d["row"] for d in exc.extra["details"]}
            if None in refused:
                raise  # a whole column is wrong, not a row: nothing to drop
            keep = [i for at, i in enumerate(keep) if at not in refused]
    return keep


def fits(feature: Feature, value: Any) -> bool:
    """Whether the server's schema accepts the value for this feature (so the server answers 200)."""
    return accepted([feature], [[value]]) == [0]


def typed_rows(features: list[Feature], records: list[dict[str, str]]) -> tuple[list[list[Any]], int]:
    """Rows of JSON values in feature order, and how many records were skipped (unparseable or refused)."""
    parsed = []
    for record in records:
        try:
            parsed.append([json_value(f, record[f.name]) for f in features])
        except (KeyError, ValueError):
            continue
    rows = [parsed[i] for i in accepted(features, parsed)]
    return rows, len(records) - len(rows)


def cycle(rows: list[list[Any]], count: int) -> list[list[Any]]:
    """Exactly `count` rows, repeating from the start when there are fewer."""
    if not rows:
        raise ValueError("no usable rows")
    return [rows[i % len(rows)] for i in range(count)]


def read_records(path: Path, whonet: str | None) -> list[dict[str, str]]:
    """The CSV as string dicts (empty cells stay ''), filtered by `whonet_code` when given."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if whonet is None or r.get("whonet_code") == whonet]


def split_body(columns: list[str], rows: list[list[Any]]) -> bytes:
    """MLflow's dataframe_split JSON for /invocations."""
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()


def records_body(columns: list[str], rows: list[list[Any]]) -> bytes:
    """slimserve's {"records": [...]} JSON for /models/<name>/predict."""
    return json.dumps({"records": [dict(zip(columns, row, strict=True)) for row in rows]}).encode()


def build_payloads(name: str, features: list[Feature], bulk: int = 1000, singles: int = 20,
                   data: Path = SHARED_DATA) -> ModelPayloads:
    """Bodies for one model from its real data: `singles` different 1-row bodies and one `bulk`-row body."""
    path, code = source_for(name, data)
    rows, skipped = typed_rows(features, read_records(path, code))
    columns = [f.name for f in features]
    first = cycle(rows, min(singles, len(rows)))
    many = cycle(rows, bulk)
    return ModelPayloads(
        name=name, columns=columns,
        single_split=[Upload(f"{name}-1-{i}", split_body(columns, [r]), JSON) for i, r in enumerate(first)],
        single_records=[Upload(f"{name}-1-{i}", records_body(columns, [r]), JSON) for i, r in enumerate(first)],
        bulk_split=Upload(f"{name}-{bulk}", split_body(columns, many), JSON),
        bulk_records=Upload(f"{name}-{bulk}", records_body(columns, many), JSON),
        rows_available=len(rows), rows_skipped=skipped)
