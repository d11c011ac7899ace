"""MLflow scoring-server payloads → named columns. A content-type → parser table, not an if/elif ladder."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from slimserve import jsonio
from slimserve.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, safe_name
from slimserve.manifest import Feature
from slimserve.tabular import MISSING

# The input formats MLflow's scoring server accepts, by their JSON key.
DATAFRAME_SPLIT = "dataframe_split"
DATAFRAME_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
JSON_FORMATS = (DATAFRAME_SPLIT, DATAFRAME_RECORDS, INSTANCES, INPUTS)

# Byte budget of one row in the most verbose accepted format, dataframe_records pretty-printed:
# `"name": value,` with a newline and indentation around every key.
NUMBER_CHARS = 32  # repr(-1.7976931348623157e+308) is 24 characters; a few more for other encoders
KEY_SLACK = 16  # quotes, colon, comma, newline and indentation around one key
ROW_SLACK = 16  # braces, comma and indentation around one row
ENVELOPE_BYTES = 4096  # the outer object, its key, and whitespace
# Containers ({ or [) and commas a valid body may hold besides one row's worth each per row.
STRUCTURE_SLACK = 16
# Distinct column names accepted across records beyond the model's features; past it the union of
# names times the rows would be the memory cost (unknown names are refused after parsing anyway).
MAX_EXTRA_COLUMNS = 64


@dataclass(frozen=True)
class Table:
    """Named columns of equal length, values still as the client sent them."""

    columns: dict[str, list[Any]]
    rows: int


def _bad(message: str, code: str = "invalid_payload") -> BadRequest:
    return BadRequest(message, code=code)


def body_limit(features: list[Feature], max_rows: int) -> int:
    """A generous upper bound of the bytes of `max_rows` rows in the most verbose accepted format."""
    per_row = ROW_SLACK + sum(_feature_bytes(f) for f in features)
    return ENVELOPE_BYTES + max_rows * per_row


def _feature_bytes(feature: Feature) -> int:
    # json.dumps escapes non-ASCII as \uXXXX: the longest spelling a client's encoder may choose.
    values = [NUMBER_CHARS, *(len(json.dumps(c)) for c in feature.categories or ())]
    return len(json.dumps(feature.name)) + max(values) + KEY_SLACK


def _too_many_rows(max_rows: int, why: str = "") -> PayloadTooLarge:
    return PayloadTooLarge(f"at most {max_rows} rows per request{why}", code="too_many_rows")


def precheck_json(body: bytes, features: list[Feature], max_rows: int) -> None:
    """Refuse, from byte counts alone, a JSON body that cannot hold `max_rows` rows or fewer.

    Every row is at most one container ({ or [) and one comma per value; a parse of millions of empty
    objects or numbers would cost hundreds of MB before the row count could refuse it.
    """
    width = len(features) + 2  # values of a row, its separator, and an `index` entry (dataframe_split)
    width += sum(max((c.count(",") for c in f.categories or ()), default=0) for f in features)
    if body.count(b"{") + body.count(b"[") > max_rows + len(features) + STRUCTURE_SLACK:
        raise _too_many_rows(max_rows, "; the body nests more objects and lists than that many rows hold")
    if body.count(b",") > max_rows * width + len(features) + STRUCTURE_SLACK:
        raise _too_many_rows(max_rows, "; the body has more values than that many rows hold")


def precheck_csv(body: bytes, max_rows: int) -> None:
    """Refuse, from its line breaks alone, a CSV body with more than a header and `max_rows` lines."""
    tail = body[-64:]  # trailing blank lines are no rows; only the tail is copied, not the whole body
    end = len(body) - (len(tail) - len(tail.rstrip(b"\r\n")))
    # The csv module ends a record at \n, \r or \r\n; quoted line breaks only make this an upper bound.
    breaks = body.count(b"\n", 0, end) + body.count(b"\r", 0, end) - body.count(b"\r\n", 0, end)
    if breaks > max_rows:  # header + max_rows records are separated by max_rows breaks
        raise _too_many_rows(max_rows, "; the CSV has more lines than that")


def table_from_records(records: Any, max_columns: int | None = None) -> Table:
    """A list of row objects as named columns; a column missing from a row holds MISSING there."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _bad("records must be a list of objects, one per row")
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
        if max_columns is not None and len(names) > max_columns:
            raise _bad(f"the records name more than {max_columns} distinct columns", code="too_many_columns")
    return Table({name: [r.get(name, MISSING) for r in records] for name in names}, len(records))


def _from_columns(columns: dict[str, Any]) -> Table:
    if not all(isinstance(v, list) for v in columns.values()):
        return table_from_records([columns])  # one record written as an object of scalars
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise _bad("every column must have the same number of values", code="ragged_columns")
    return Table(dict(columns), lengths.pop() if lengths else 0)


def _from_split(split: Any, _max_columns: int) -> Table:  # names are distinct and one per value
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list) or not isinstance(
            split.get("data"), list):
        raise _bad("dataframe_split needs `columns` (a list of names) and `data` (a list of rows)")
    unexpected = set(split) - {"columns", "data", "index"}
    if unexpected:
        raise _bad("dataframe_split takes only `columns`, `data` and `index`", code="unexpected_key")
    names = split["columns"]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise _bad("`columns` must be distinct strings")
    for row, values in enumerate(split["data"]):
        if not isinstance(values, list) or len(values) != len(names):
            raise BadRequest(f"row {row} of `data` does not have one value per column", code="ragged_rows")
    data = split["data"]
    columns = [list(column) for column in zip(*data, strict=True)] if data else [[] for _ in names]
    return Table(dict(zip(names, columns, strict=True)), len(data))


def _from_tensor_or_records(value: Any, max_columns: int) -> Table:
    if isinstance(value, dict):
        return _from_columns(value)
    if isinstance(value, list) and value and not isinstance(value[0], dict):
        raise _bad("this model takes named columns: send a list of objects or an object of columns")
    return table_from_records(value, max_columns)


JSON_PARSERS: dict[str, Callable[[Any, int], Table]] = {
    DATAFRAME_SPLIT: _from_split,
    DATAFRAME_RECORDS: table_from_records,
    INSTANCES: _from_tensor_or_records,
    INPUTS: _from_tensor_or_records,
}


def max_columns_for(features: list[Feature]) -> int:
    """How many distinct column names records may use before the union of names alone is refused."""
    return len(features) + MAX_EXTRA_COLUMNS


def parse_json(body: bytes, features: list[Feature], max_rows: int) -> Table:
    """An MLflow JSON payload: exactly one of dataframe_split, dataframe_records, instances, inputs."""
    precheck_json(body, features, max_rows)
    try:
        payload = jsonio.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _bad("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise _bad(f"send a JSON object with exactly one of: {', '.join(JSON_FORMATS)}", code="invalid_format")
    formats = [key for key in JSON_FORMATS if key in payload]
    if len(formats) != 1:
        raise _bad(f"send exactly one of: {', '.join(JSON_FORMATS)}", code="invalid_format")
    if set(payload) - {formats[0]}:
        raise _bad(f"send only `{formats[0]}`; other keys such as `params` are not supported", code="unexpected_key")
    return JSON_PARSERS[formats[0]](payload[formats[0]], max_columns_for(features))


def parse_csv(body: bytes, features: list[Feature], max_rows: int) -> Table:
    """CSV with a header row, as pandas' to_csv writes it; cells are typed by the model's features."""
    precheck_csv(body, max_rows)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _bad("the CSV is not UTF-8 text", code="invalid_csv") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        raise _bad("the CSV cannot be parsed", code="invalid_csv") from None
    if not rows:
        raise _bad("the CSV has no header row", code="invalid_csv")
    header, data = rows[0], [r for r in rows[1:] if r]
    for row, values in enumerate(data):
        if len(values) != len(header):
            raise BadRequest(f"CSV row {row} does not have one value per column", code="ragged_rows")
    types = {f.name: f.type for f in features}
    columns = {name: [_csv_cell(values[i], types.get(name)) for values in data] for i, name in enumerate(header)}
    if len(columns) != len(header):
        raise _bad("CSV column names must be distinct", code="invalid_csv")
    return Table(columns, len(data))


def _csv_cell(cell: str, kind: str | None) -> Any:
    if kind in (None, "category"):
        return cell
    if cell.strip() == "":
        return None
    if kind == "boolean" and cell.strip().lower() in ("true", "false"):
        return cell.strip().lower() == "true"
    try:
        return float(cell)
    except ValueError:
        return cell  # stays a string, and the schema reports a wrong type at this row


PARSERS: dict[str, Callable[[bytes, list[Feature], int], Table]] = {
    "application/json": parse_json,
    "text/csv": parse_csv,
}


def parse_table(mimetype: str, body: bytes, features: list[Feature], max_rows: int) -> Table:
    """Parse a request body by its content type and bound its row count."""
    parser = PARSERS.get(mimetype)
    if parser is None:
        raise UnsupportedMediaType("send application/json (MLflow formats) or text/csv",
                                   code="unsupported_media_type")
    return bounded(parser(body, features, max_rows), max_rows)


def parse_records(mimetype: str, body: bytes, features: list[Feature], max_rows: int) -> Table:
    """The records route's body, `{"records": [{column: value, ...}, ...]}`, as bounded named columns."""
    from slimserve.schemas import RecordsRequestSchema

    if mimetype != "application/json":
        raise UnsupportedMediaType("send application/json: {\"records\": [...]}", code="unsupported_media_type")
    precheck_json(body, features, max_rows)
    try:
        raw = jsonio.loads(body)
    except ValueError:  # not JSON (UnicodeDecodeError included): answered as a body without `records`
        raw = None
    try:
        payload = RecordsRequestSchema().load(raw or {})
    except ValidationError as exc:
        field = sorted(exc.normalized_messages(), key=str)[0]
        raise BadRequest("send {\"records\": [ {column: value, ...}, ... ]}", code="invalid_payload",
                         field=safe_name(field)) from None
    return bounded(table_from_records(payload["records"], max_columns_for(features)), max_rows)


def bounded(table: Table, max_rows: int) -> Table:
    """The table, if it has between one and `max_rows` rows."""
    if table.rows > max_rows:
        raise _too_many_rows(max_rows)
    if table.rows == 0:
        raise _bad("the request has no rows", code="no_rows")
    return table
