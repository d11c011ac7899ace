"""The OpenAPI document and the server agree: what the spec calls valid is accepted, and the reverse.

One test per class of mismatch schemathesis found (scripts/conformance has the run's hooks and config).
"""

from __future__ import annotations

import io
import re

import pytest
from jsonschema import Draft4Validator

from slimserve import create_app
from slimserve.openapi import _integers, csv_pattern
from tests.conftest import HEART_FEATURES, image_bytes, write_fake_model, write_fake_tabular_model
from tests.test_http_errors import assert_error

MAX_ROWS = 5
ROW = {"Age": 54, "Sex": "M", "Cholesterol": 239.0, "FastingBS": 0}


def make_app(tmp_path, fake_runtimes, default: str):
    write_fake_model(tmp_path / "pneumonia")
    write_fake_tabular_model(tmp_path / "heart")
    return create_app({"MODEL_PATH": str(tmp_path), "DEFAULT_MODEL": default, "RUNTIMES": fake_runtimes,
                       "LOAD_ASYNC": False, "AUTO_COMPILE": False, "MAX_ROWS": MAX_ROWS})


@pytest.fixture
def app(tmp_path, fake_runtimes):
    return make_app(tmp_path, fake_runtimes, default="pneumonia")


@pytest.fixture
def spec(client):
    return client.get("/openapi.json").get_json()


def body_schema(spec, path: str, media: str = "application/json") -> dict:
    return spec["paths"][path]["post"]["requestBody"]["content"][media]["schema"]


def record_validator(spec) -> Draft4Validator:
    """Validates one heart record against the spec (OpenAPI 3.0 schemas are close to draft 4)."""
    return Draft4Validator(spec["components"]["schemas"]["heart.Record"])


@pytest.mark.parametrize("value", [True, False, 0, 1])
def test_boolean_features_take_true_false_and_0_1_in_spec_and_server(client, spec, value):
    assert record_validator(spec).is_valid({**ROW, "FastingBS": value})
    assert client.post("/models/heart/invocations", json={"dataframe_records": [{**ROW, "FastingBS": value}]}
                       ).status_code == 200


@pytest.mark.parametrize("value", [2, -1, "true"])
def test_other_boolean_values_are_refused_by_spec_and_server(client, spec, value):
    assert not record_validator(spec).is_valid({**ROW, "FastingBS": value})
    response = client.post("/models/heart/invocations", json={"dataframe_records": [{**ROW, "FastingBS": value}]})
    assert_error(response, 422, "wrong_type", "FastingBS")


@pytest.mark.parametrize(("low", "high"), [(0, 3), (12, 100), (-5, 10), (1, 4096), (0, 10_000), (-999_999, 999_999)])
def test_integer_pattern_matches_exactly_the_range(low, high):
    pattern = re.compile(f"^(?:{'|'.join(_integers(low, high))})$")
    for value in range(max(low - 30, -2000), min(high + 30, 2000)):
        assert bool(pattern.match(str(value))) == (low <= value <= high), value
    assert pattern.match(str(high)) and not pattern.match(str(high + 1)) and not pattern.match(f"0{high}")


def test_csv_pattern_is_in_the_spec_and_refuses_bodies_the_server_refuses(spec):
    pattern = re.compile(body_schema(spec, "/models/heart/invocations", "text/csv")["pattern"])
    header = "Age,Sex,Cholesterol,FastingBS"
    for refused in ["", header, header + "\n", "54,M,239,0", header + "\n54,M,239"]:
        assert not pattern.search(refused), refused
    assert not pattern.search(header + "\n54,M,239,0" * (MAX_ROWS + 1))


@pytest.mark.parametrize("rows", [
    ["0,F,0,0"], ["120,M,700,1", "1,F,1,true", "99,M,650,false"], ["54,M,239,0"] * MAX_ROWS,
])
@pytest.mark.parametrize("line_break", ["\n", "\r\n"])
def test_every_csv_the_spec_pattern_matches_is_accepted(client, spec, rows, line_break):
    pattern = re.compile(body_schema(spec, "/models/heart/invocations", "text/csv")["pattern"])
    body = line_break.join(["Age,Sex,Cholesterol,FastingBS", *rows]) + line_break
    assert pattern.search(body)
    response = client.post("/models/heart/invocations", data=body, content_type="text/csv")
    assert response.status_code == 200, response.data


def test_csv_pattern_quotes_names_and_categories_as_csv_does():
    from slimserve.manifest import FeatureSchema

    features = FeatureSchema(many=True).load([{"name": "a,b", "type": "category", "categories": ['x "y"', "z"]}])
    assert re.search(csv_pattern(features, 3), '"a,b"\n"x ""y"""\nz\n')


def test_record_arrays_are_bounded_by_the_row_limit_in_spec_and_server(client, spec):
    rows = body_schema(spec, "/models/heart/predict")["properties"]["records"]
    assert rows["maxItems"] == MAX_ROWS and rows["minItems"] == 1
    assert_error(client.post("/models/heart/predict", json={"records": [ROW] * (MAX_ROWS + 1)}), 413, "too_many_rows")


def test_each_model_has_its_own_paths_with_the_body_it_takes(spec):
    assert "/models/{name}/predict" not in spec["paths"] and "/models/{name}/invocations" not in spec["paths"]
    for path in ("/models/pneumonia/predict", "/models/pneumonia/invocations"):
        assert set(spec["paths"][path]["post"]["requestBody"]["content"]) == {
            "multipart/form-data", "image/jpeg", "image/png"}
    assert set(spec["paths"]["/models/heart/predict"]["post"]["requestBody"]["content"]) == {"application/json"}
    assert set(spec["paths"]["/models/heart/invocations"]["post"]["requestBody"]["content"]) == {
        "application/json", "text/csv"}


def test_default_route_takes_images_and_sends_tables_to_the_only_tabular_model(client, spec):
    content = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/csv", "image/png"} <= set(content)  # image default + the one table model
    assert client.post("/invocations", json={"dataframe_records": [ROW]}).status_code == 200
    assert client.post("/invocations", data=image_bytes(), content_type="image/jpeg").status_code == 200


def test_default_route_documents_the_default_tabular_model_body(tmp_path, fake_runtimes):
    client = make_app(tmp_path, fake_runtimes, default="heart").test_client()
    spec = client.get("/openapi.json").get_json()
    rows = body_schema(spec, "/invocations")["properties"]["dataframe_records"]
    assert rows["items"] == {"$ref": "#/components/schemas/heart.Record"}
    assert client.post("/invocations", json={"dataframe_records": [ROW]}).status_code == 200


def test_multipart_takes_only_the_file_part_in_spec_and_server(client, spec):
    form = body_schema(spec, "/predict", "multipart/form-data")
    assert form["additionalProperties"] is False and form["required"] == ["file"]
    assert form["properties"]["file"]["minLength"] == 1
    data = {"file": (io.BytesIO(image_bytes()), "a.jpg"), "extra": "1"}
    assert_error(client.post("/predict", data=data), 400, "unexpected_field", "extra")
    assert_error(client.post("/predict", data={"file": (io.BytesIO(b""), "a.jpg")}), 400, "empty_file", "file")


def test_spec_stays_a_valid_openapi_document(spec):
    from openapi_spec_validator import validate

    validate(spec)
    assert len(HEART_FEATURES) == len(spec["components"]["schemas"]["heart.Record"]["properties"])
