"""Tabular models over HTTP: every MLflow input format, and every validation rule with no value echoed."""

from __future__ import annotations

import io

import pytest

from slimserve import create_app
from tests.conftest import image_bytes, write_fake_model, write_fake_tabular_model
from tests.test_http_errors import assert_error

ROWS = [
    {"Age": 54, "Sex": "M", "Cholesterol": 239.0, "FastingBS": 0},
    {"Age": 61, "Sex": "F", "Cholesterol": 0, "FastingBS": True},
]
COLUMNS = ["Age", "Sex", "Cholesterol", "FastingBS"]
SECRET_NUMBER = 987654321
SECRET_TEXT = "ZEBRA-SECRET-VALUE"


@pytest.fixture
def app(tmp_path, fake_runtimes):
    write_fake_model(tmp_path / "pneumonia")
    write_fake_tabular_model(tmp_path / "heart")
    return create_app({"MODEL_PATH": str(tmp_path), "DEFAULT_MODEL": "pneumonia", "RUNTIMES": fake_runtimes,
                       "LOAD_ASYNC": False, "AUTO_COMPILE": False, "MAX_ROWS": 5})


def invoke(client, payload=None, *, data=None, content_type="application/json", query=""):
    """POST to the heart model's MLflow route."""
    if payload is not None:
        return client.post(f"/models/heart/invocations{query}", json=payload)
    return client.post(f"/models/heart/invocations{query}", data=data, content_type=content_type)


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in ROWS]}},
    {"dataframe_split": {"index": [0, 1], "columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in ROWS]}},
    {"dataframe_records": ROWS},
    {"instances": ROWS},
    {"inputs": ROWS},
    {"inputs": {c: [r[c] for r in ROWS] for c in COLUMNS}},
    {"instances": {c: [r[c] for r in ROWS] for c in COLUMNS}},
], ids=["split", "split-index", "records", "instances", "inputs-records", "inputs-columns", "instances-columns"])
def test_every_mlflow_json_format_predicts(client, payload):
    response = invoke(client, payload)
    assert response.status_code == 200, response.data
    assert response.get_json() == {"predictions": [1, 1]}


def test_csv_body_predicts(client):
    csv = "Age,Sex,Cholesterol,FastingBS\n54,M,239.0,0\n61,F,0,1\n"
    response = invoke(client, data=csv, content_type="text/csv")
    assert response.get_json() == {"predictions": [1, 1]}


def test_probabilities_switch_adds_class_probabilities(client):
    body = invoke(client, {"dataframe_records": ROWS[:1]}, query="?probabilities=true").get_json()
    assert body == {"predictions": [1], "probabilities": [{"0": 0.2, "1": 0.8}]}


@pytest.mark.parametrize("query", ["?probabilities=maybe", "?probabilities=", "?probabilities"])
def test_invalid_probabilities_switch_is_400(client, query):
    # The spec says boolean: an empty value is not one (absent means false), as schemathesis checks.
    assert_error(invoke(client, {"dataframe_records": ROWS}, query=query), 400, "invalid_parameter", "probabilities")


def test_absent_probabilities_switch_means_no_probabilities(client):
    assert "probabilities" not in invoke(client, {"dataframe_records": ROWS}).get_json()


def test_records_route_returns_labels_names_and_probabilities(client):
    body = client.post("/models/heart/predict", json={"records": ROWS}).get_json()
    assert body["model"] == "heart" and body["version"] == "1.0.0"
    assert body["predictions"][0] == {"label": "1", "label_name": "heart disease",
                                      "probabilities": {"0": 0.2, "1": 0.8}}


def test_columns_reach_the_runtime_typed_and_shaped(client, fake_runtimes):
    invoke(client, {"dataframe_records": ROWS})
    heart = next(r for r in fake_runtimes["onnx"].made if r.manifest.name == "heart")
    feed = heart.batches[-1]
    assert feed["Age"].dtype.name == "float32" and feed["Age"].shape == (2, 1)
    assert feed["Sex"].dtype == object and feed["Sex"][:, 0].tolist() == ["M", "F"]
    assert feed["FastingBS"][:, 0].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(("row", "code", "field"), [
    ({"Sex": "M", "Cholesterol": 200, "FastingBS": 0}, "missing_field", "Age"),
    ({"Age": SECRET_TEXT, "Sex": "M", "Cholesterol": 200, "FastingBS": 0}, "wrong_type", "Age"),
    ({"Age": 40.5, "Sex": "M", "Cholesterol": 200, "FastingBS": 0}, "wrong_type", "Age"),
    ({"Age": True, "Sex": "M", "Cholesterol": 200, "FastingBS": 0}, "wrong_type", "Age"),
    ({"Age": None, "Sex": "M", "Cholesterol": 200, "FastingBS": 0}, "null_value", "Age"),
    ({"Age": SECRET_NUMBER, "Sex": "M", "Cholesterol": 200, "FastingBS": 0}, "out_of_range", "Age"),
    ({"Age": 40, "Sex": SECRET_TEXT, "Cholesterol": 200, "FastingBS": 0}, "unknown_category", "Sex"),
    ({"Age": 40, "Sex": 1, "Cholesterol": 200, "FastingBS": 0}, "wrong_type", "Sex"),
    ({"Age": 40, "Sex": ["M"], "Cholesterol": 200, "FastingBS": 0}, "wrong_type", "Sex"),
    ({"Age": [40], "Sex": "M", "Cholesterol": 200, "FastingBS": 0}, "wrong_type", "Age"),
    ({"Age": 40, "Sex": "M", "Cholesterol": 200, "FastingBS": 7}, "wrong_type", "FastingBS"),
    ({"Age": 40, "Sex": "M", "Cholesterol": 200, "FastingBS": 0, SECRET_TEXT: 1}, "unexpected_field", SECRET_TEXT),
])
def test_each_validation_rule_is_a_422_naming_field_and_row(client, row, code, field):
    response = invoke(client, {"dataframe_records": [ROWS[0], row]})
    body = assert_error(response, 422, code, field)
    if code != "unexpected_field":
        assert body["error"]["row"] == 1
    text = response.get_data(as_text=True)
    assert str(SECRET_NUMBER) not in text
    if field != SECRET_TEXT:
        assert SECRET_TEXT not in text


def test_unexpected_column_in_split_is_refused_not_dropped(client):
    payload = {"dataframe_split": {"columns": [*COLUMNS, "Extra"], "data": [[54, "M", 239, 0, 1]]}}
    assert_error(invoke(client, payload), 422, "unexpected_field", "Extra")


def test_every_problem_is_listed_in_details(client):
    bad = {"Age": -1, "Sex": "X", "Cholesterol": 200, "FastingBS": 0}
    body = invoke(client, {"dataframe_records": [bad]}).get_json()
    assert {(d["field"], d["code"]) for d in body["error"]["details"]} == {
        ("Age", "out_of_range"), ("Sex", "unknown_category")}


def test_nan_literal_is_not_json(client):
    response = invoke(client, data='{"dataframe_records": [{"Age": NaN, "Sex": "M", "Cholesterol": 1, '
                                   '"FastingBS": 0}]}')
    assert_error(response, 400, "invalid_json")


def test_number_overflowing_to_infinity_is_not_json(client):
    response = invoke(client, data='{"dataframe_records": [{"Age": 1e999, "Sex": "M", "Cholesterol": 1, '
                                   '"FastingBS": 0}]}')
    assert_error(response, 400, "invalid_json")


def test_csv_with_a_text_cell_in_a_number_column_is_refused(client):
    response = invoke(client, data=f"Age,Sex,Cholesterol,FastingBS\n{SECRET_TEXT},M,1,0\n", content_type="text/csv")
    assert_error(response, 422, "wrong_type", "Age")


def test_unsupported_content_type_is_415(client):
    assert_error(invoke(client, data="Age=1", content_type="application/x-www-form-urlencoded"),
                 415, "unsupported_media_type")


def test_more_rows_than_allowed_is_413(client):
    assert_error(invoke(client, {"dataframe_records": ROWS * 3}), 413, "too_many_rows")


@pytest.mark.parametrize(("payload", "code"), [
    ({"dataframe_records": ROWS, "instances": ROWS}, "invalid_format"),
    ({"records": ROWS}, "invalid_format"),
    ([1, 2], "invalid_format"),
    ({"dataframe_records": ROWS, "params": {"a": 1}}, "unexpected_key"),
    ({"dataframe_split": {"columns": COLUMNS, "data": [[1, 2]]}}, "ragged_rows"),
    ({"inputs": {"Age": [1, 2], "Sex": ["M"]}}, "ragged_columns"),
    ({"instances": [[1, 2, 3, 4]]}, "invalid_payload"),
    ({"dataframe_records": []}, "no_rows"),
])
def test_malformed_payloads_are_400(client, payload, code):
    assert_error(invoke(client, payload), 400, code)


def test_invalid_json_is_400(client):
    assert_error(invoke(client, data="{not json"), 400, "invalid_json")


def test_image_to_a_tabular_model_is_refused(client):
    response = client.post("/models/heart/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("records", [[], {"Age": 1}, [1, 2], "rows"])
def test_records_route_refuses_anything_but_a_list_of_objects(client, records):
    assert_error(client.post("/models/heart/predict", json={"records": records}), 400, "invalid_payload", "records")


def test_records_route_refuses_other_keys(client):
    assert_error(client.post("/models/heart/predict", json={"records": ROWS, "extra": 1}), 400, "invalid_payload")


def test_invocations_on_the_default_image_model_takes_an_image(client):
    response = client.post("/invocations?probabilities=true", data=image_bytes(), content_type="image/jpeg")
    assert response.get_json() == {"predictions": ["PNEUMONIA"],
                                   "probabilities": [{"NORMAL": 0.2, "PNEUMONIA": 0.8}]}


def test_ping_answers_like_mlflow(client):
    response = client.get("/ping")
    assert response.status_code == 200 and response.data == b"\n"


def test_models_lists_both_kinds(client):
    names = [m["name"] for m in client.get("/models").get_json()["models"]]
    assert sorted(names) == ["heart", "pneumonia"]


def test_model_metadata_describes_every_feature(client):
    body = client.get("/models/heart").get_json()
    assert body["input"] is None and body["accepts"] == ["application/json", "text/csv"]
    age = body["features"][0]
    expected = ("Age", "integer", "years", 0, 120)
    assert (age["name"], age["type"], age["unit"], age["minimum"], age["maximum"]) == expected
    assert body["features"][2]["zero_means_missing"] is True
    assert body["label_names"] == {"0": "healthy", "1": "heart disease"}


def test_openapi_has_the_exact_columns_of_each_tabular_model(client):
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").get_json()
    validate(spec)
    record = spec["components"]["schemas"]["heart.Record"]
    assert record["additionalProperties"] is False and record["required"] == ["Age", "Sex", "Cholesterol", "FastingBS"]
    age = {"type": "integer", "minimum": 0, "maximum": 120, "description": "Age (years)"}
    assert record["properties"]["Age"] == age
    assert record["properties"]["Sex"]["enum"] == ["F", "M"]
    assert "/models/heart/invocations" in spec["paths"] and "/models/heart/predict" in spec["paths"]
