"""Tabular bodies are bounded before they are parsed: a body limit sized from the row limit, then byte counts."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import EnvironBuilder

from slimserve import create_app, payloads
from slimserve.manifest import FeatureSchema
from tests.conftest import HEART_FEATURES, EndlessBody, image_bytes, write_fake_model, write_fake_tabular_model
from tests.test_http_errors import assert_error

MAX_ROWS = 5
ROW = {"Age": 54, "Sex": "M", "Cholesterol": 239.0, "FastingBS": 0}
HEART_LIMIT = payloads.body_limit(FeatureSchema(many=True).load(HEART_FEATURES), MAX_ROWS)
ROUTES = ["/models/heart/invocations", "/invocations"]


def make_app(tmp_path, fake_runtimes, **config):
    """Heart (tabular, the default) and pneumonia (image), at most MAX_ROWS rows per request."""
    write_fake_tabular_model(tmp_path / "heart")
    write_fake_model(tmp_path / "pneumonia")
    return create_app({"MODEL_PATH": str(tmp_path), "DEFAULT_MODEL": "heart", "RUNTIMES": fake_runtimes,
                       "LOAD_ASYNC": False, "AUTO_COMPILE": False, "MAX_ROWS": MAX_ROWS, **config})


@pytest.fixture
def app(tmp_path, fake_runtimes):
    return make_app(tmp_path, fake_runtimes)


def post_stream(app, path: str, stream, content_type: str = "application/json", length: int | None = None):
    """POST a raw stream, chunked (no Content-Length) unless `length` is given."""
    environ = EnvironBuilder(path=path, method="POST", content_type=content_type).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True})
    if length is None:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(length)
    return app.response_class.from_app(app.wsgi_app, environ)


def refuse_parsing(monkeypatch):
    """Make any full parse of a body fail loudly: the refusal must come before it."""
    def boom(*_args, **_kwargs):
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(payloads.jsonio, "loads", boom)
    monkeypatch.setattr(payloads.csv, "reader", boom)


def test_model_metadata_reports_the_body_limit_of_each_model(client):
    models = {m["name"]: m for m in client.get("/models").get_json()["models"]}
    assert models["heart"]["max_body_bytes"] == HEART_LIMIT
    assert models["pneumonia"]["max_body_bytes"] == 10 * 1024 * 1024  # SLIMSERVE_MAX_UPLOAD_BYTES


def test_body_limit_is_a_fixed_envelope_plus_a_budget_per_row():
    features = FeatureSchema(many=True).load(HEART_FEATURES)
    per_row = payloads.body_limit(features, 1) - payloads.body_limit(features, 0)
    assert payloads.body_limit(features, 10_000) == payloads.body_limit(features, 0) + 10_000 * per_row


def test_setting_overrides_the_computed_body_limit(tmp_path, fake_runtimes):
    client = make_app(tmp_path, fake_runtimes, MAX_TABLE_BYTES=50).test_client()
    assert client.get("/models/heart").get_json()["max_body_bytes"] == 50
    assert_error(client.post("/models/heart/invocations", json={"dataframe_records": [ROW]}),
                 413, "payload_too_large")


def test_the_most_verbose_body_of_max_rows_fits_the_limit(client):
    rows = [{**ROW, "Cholesterol": 123.45678901234567} for _ in range(MAX_ROWS)]
    body = json.dumps({"dataframe_records": rows}, indent=8)
    assert len(body) < HEART_LIMIT
    assert client.post("/models/heart/invocations", data=body, content_type="application/json").status_code == 200


@pytest.mark.parametrize("path", [*ROUTES, "/models/heart/predict"])
def test_body_over_the_tabular_limit_is_413_from_content_length_unread(app, path):
    stream = EndlessBody(b" ")
    response = post_stream(app, path, stream, length=HEART_LIMIT + 1)
    assert_error(response, 413, "payload_too_large")
    assert stream.consumed == 0


@pytest.mark.parametrize("path", [*ROUTES, "/models/heart/predict"])
def test_chunked_body_is_refused_once_it_reaches_the_tabular_limit(app, path):
    stream = EndlessBody(b" ")
    assert_error(post_stream(app, path, stream), 413, "payload_too_large")
    assert stream.consumed < HEART_LIMIT + 65536  # not the 10 MB of the image routes


def test_image_routes_keep_the_upload_limit(client):
    noisy = image_bytes(size=(200, 200), fmt="PNG", mode="RGB", color=(10, 200, 30)) + b"\0" * HEART_LIMIT
    assert len(noisy) > HEART_LIMIT
    assert client.post("/models/pneumonia/predict", data=noisy, content_type="image/png").status_code == 200


@pytest.mark.parametrize("line_break", ["\n", "\r\n", "\r"])
def test_csv_with_too_many_lines_is_413_before_parsing(client, monkeypatch, line_break):
    refuse_parsing(monkeypatch)
    body = line_break.join(["Age,Sex,Cholesterol,FastingBS"] + ["54,M,239,0"] * (MAX_ROWS + 1))
    assert_error(client.post("/invocations", data=body, content_type="text/csv"), 413, "too_many_rows")


def test_csv_of_max_rows_with_trailing_blank_lines_is_accepted(client):
    body = "\n".join(["Age,Sex,Cholesterol,FastingBS"] + ["54,M,239,0"] * MAX_ROWS) + "\n\r\n\n"
    assert client.post("/invocations", data=body, content_type="text/csv").get_json() == {
        "predictions": [1] * MAX_ROWS}


@pytest.mark.parametrize("body", [
    b'{"dataframe_records": [' + b",".join([b"{}"] * 40) + b"]}",
    b'{"dataframe_split": {"columns": [], "data": [' + b",".join([b"[]"] * 40) + b"]}}",
    b'{"inputs": {"Age": [' + b",".join([b"1"] * 200) + b"]}}",
    b'{"dataframe_records": [{"Age": ' + b"[" * 60 + b"]" * 60 + b"}]}",
], ids=["empty-objects", "empty-lists", "columnar-numbers", "deep-nesting"])
@pytest.mark.parametrize("path", [*ROUTES, "/models/heart/predict"])
def test_json_that_cannot_be_within_the_row_limit_is_413_before_parsing(client, monkeypatch, body, path):
    refuse_parsing(monkeypatch)
    body = body.replace(b"dataframe_records", b"records") if path.endswith("predict") else body
    assert_error(client.post(path, data=body, content_type="application/json"), 413, "too_many_rows")


@pytest.mark.parametrize("payload", [
    {"dataframe_records": [ROW] * MAX_ROWS},
    {"instances": [ROW] * MAX_ROWS},
    {"dataframe_split": {"index": list(range(MAX_ROWS)), "columns": list(ROW),
                         "data": [list(ROW.values())] * MAX_ROWS}},
    {"inputs": {name: [value] * MAX_ROWS for name, value in ROW.items()}},
], ids=["records", "instances", "split-index", "columnar"])
def test_every_json_format_at_the_row_limit_passes_the_prescan(client, payload):
    assert client.post("/invocations", json=payload).get_json() == {"predictions": [1] * MAX_ROWS}


def test_records_naming_too_many_distinct_columns_are_refused_before_the_table_is_built(tmp_path, fake_runtimes):
    # Each record names its own columns: the table would be (distinct names x rows) cells.
    client = make_app(tmp_path, fake_runtimes, MAX_ROWS=20).test_client()
    records = [{f"c{row}_{i}": 1 for i in range(5)} for row in range(20)]
    assert_error(client.post("/invocations", json={"dataframe_records": records}), 400, "too_many_columns")
    assert_error(client.post("/models/heart/predict", json={"records": records}), 400, "too_many_columns")


def test_nesting_past_the_json_parser_depth_is_400(tmp_path, fake_runtimes):
    client = make_app(tmp_path, fake_runtimes, MAX_ROWS=10_000).test_client()
    body = b'{"dataframe_records": [{"Age": ' + b"[" * 5000 + b"]" * 5000 + b"}]}"
    assert_error(client.post("/invocations", data=body, content_type="application/json"), 400, "invalid_json")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400])
def test_non_finite_and_huge_json_numbers_are_400(client, literal):
    record = f'{{"Age": 54, "Sex": "M", "Cholesterol": {literal}, "FastingBS": 0}}'
    response = client.post("/invocations", data=f'{{"dataframe_records": [{record}]}}',
                           content_type="application/json")
    assert_error(response, 400, "invalid_json")
    response = client.post("/models/heart/predict", data=f'{{"records": [{record}]}}',
                           content_type="application/json")
    assert_error(response, 400, "invalid_payload", "records")


@pytest.mark.parametrize("literal", [str(2**63), str(2**64 + 1), "1e308"])
def test_large_finite_json_numbers_are_out_of_range(client, literal):
    response = client.post("/invocations", data=f'{{"inputs": {{"Age": [54], "Sex": ["M"], "Cholesterol": '
                                                 f'[{literal}], "FastingBS": [0]}}}}',
                           content_type="application/json")
    assert_error(response, 422, "out_of_range", "Cholesterol")


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-Infinity", "1e400", "1" + "0" * 400])
@pytest.mark.parametrize("column", ["Age", "Cholesterol", "FastingBS"])
def test_non_finite_and_huge_csv_cells_are_422(client, cell, column):
    row = {**{k: str(v) for k, v in ROW.items()}, column: cell}
    body = "Age,Sex,Cholesterol,FastingBS\n" + ",".join(row[c] for c in ("Age", "Sex", "Cholesterol", "FastingBS"))
    assert_error(client.post("/invocations", data=body, content_type="text/csv"), 422, "wrong_type", column)
