"""The tabular benchmark's tooling (scripts/bench/tabular.py): real rows typed by the manifest, goals."""

from __future__ import annotations

import json

import pytest

from scripts.bench.server import MODELS
from scripts.bench.tabular import accepted, build_payloads, goals, json_value, source_for, tabular_manifests
from slimserve.manifest import Feature
from tests.conftest import write_fake_model, write_fake_tabular_model

pytestmark = pytest.mark.bench

AGE = Feature("Age", "integer", minimum=18, maximum=100)
SEX = Feature("Sex", "category", categories=["F", "M"])
BP = Feature("RestingBP", "number", minimum=0, maximum=300)
FBS = Feature("FastingBS", "boolean")


def test_antibiotic_models_share_one_file_filtered_by_code(tmp_path):
    assert source_for("modelo_TCY_NM", tmp_path) == (tmp_path / "antibiotic/camda2025_training_mic_sir.csv", "TCY")
    assert source_for("aids", tmp_path) == (tmp_path / "aids/AIDS_Classification.csv", None)
    for unknown in ("unknown", "modelo_GEN"):
        with pytest.raises(KeyError):
            source_for(unknown, tmp_path)


@pytest.mark.parametrize(("feature", "raw", "value"), [
    (AGE, "40", 40), (AGE, "40.0", 40), (FBS, "1", 1), (SEX, "M", "M"), (SEX, "", ""),
    (BP, "140", 140), (BP, "0.25", 0.25)])
def test_json_value_types_cells_as_the_manifest_says(feature, raw, value):
    got = json_value(feature, raw)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(("feature", "raw"), [(AGE, "40.5"), (AGE, ""), (BP, "n/a")])
def test_json_value_rejects_cells_of_the_wrong_type(feature, raw):
    with pytest.raises(ValueError):
        json_value(feature, raw)


@pytest.mark.parametrize(("feature", "value", "ok"), [
    (AGE, 18, True), (AGE, 17, False), (AGE, 101, False), (SEX, "F", True), (SEX, "X", False), (SEX, 1, False),
    (FBS, 0, True), (FBS, True, True), (FBS, 2, False), (BP, float("nan"), False), (BP, True, False),
    (AGE, 40.5, False), (BP, 0.25, True)])
def test_rows_are_judged_by_the_servers_own_schema(feature, value, ok):
    assert (accepted([feature], [[value]]) == [0]) is ok


def test_refused_rows_are_dropped_and_the_rest_kept_in_order():
    assert accepted([AGE, SEX], [[40, "M"], [12, "M"], [50, "X"], [60, "F"], [101, "F"]]) == [0, 3]


def test_build_payloads_reads_real_rows_from_a_data_folder(tmp_path):
    (tmp_path / "antibiotic").mkdir()
    (tmp_path / "antibiotic/camda2025_training_mic_sir.csv").write_text(
        "species,whonet_code,mic_sign,mic_value\nE. coli,GEN,,2\nE. coli,CAZ,,4\nE. coli,GEN,<=,0.5\nOther,GEN,,1\n")
    features = [Feature("species", "category", categories=["E. coli"]),
                Feature("mic_value", "number", minimum=0.001, maximum=4096),
                Feature("mic_sign", "category", categories=["", "<="])]
    got = build_payloads("modelo_GEN_NM", features, bulk=3, singles=5, data=tmp_path)
    assert (got.rows_available, got.rows_skipped, len(got.singles["invocations"])) == (2, 1, 2)
    assert json.loads(got.bulk["invocations"].body)["dataframe_split"]["data"] == [
        ["E. coli", 2, ""], ["E. coli", 0.5, "<="], ["E. coli", 2, ""]]
    assert json.loads(got.singles["predict"][1].body) == {"records": [{"species": "E. coli", "mic_value": 0.5,
                                                                       "mic_sign": "<="}]}


def test_every_bundled_tabular_model_gets_rows_of_its_own_columns():
    manifests = tabular_manifests(MODELS)
    assert len(manifests) == 7
    heart = build_payloads("heart_failure", manifests["heart_failure"], bulk=50, singles=3)
    split = json.loads(heart.singles["invocations"][0].body)["dataframe_split"]
    assert split["columns"] == [f.name for f in manifests["heart_failure"]] and heart.rows_available > 900
    assert accepted(manifests["heart_failure"], split["data"]) == [0]


def test_tabular_manifests_lists_only_models_with_features(tmp_path):
    write_fake_tabular_model(tmp_path / "tab" / "1.0.0", name="tab")
    write_fake_model(tmp_path / "xray" / "1.0.0", name="xray")
    features = tabular_manifests(tmp_path)
    assert list(features) == ["tab"]
    assert [f.name for f in features["tab"]] == ["Age", "Sex", "Cholesterol", "FastingBS"]


def full_core(one: dict[str, float], bulk: dict[str, float]) -> dict:
    """Per-model server-side p50 of the 1-row and 1,000-row /invocations series."""
    return {m: {"invocations": {"1_row": {"gunicorn_ms": {"p50": one[m]}}, "1000_rows": {"gunicorn_ms": {
        "p50": bulk[m]}}}} for m in one}


def test_goals_judge_the_worst_model_and_the_mlflow_ratios():
    report = {"all_models": {"memory": {"peak_pss_mb": 94.0},
                             "full_core": full_core({"a": 0.8, "b": 1.1}, {"a": 6.1, "b": 3.0})},
              "mlflow": {"ratios": {"p50_1_row_ms": 8.8, "peak_pss_mb": 3.9}}}
    got = goals(report)
    assert got["whole_server_peak_pss_mb"]["pass"] is True and got["whole_server_peak_rss_mb"]["pass"] is None
    assert got["invocations_1_row_server_side_ms"] | {"per_model": None} == {
        "value": 1.1, "limit": 2.0, "pass": True, "worst_model": "b", "per_model": None}
    assert (got["invocations_1000_rows_server_side_ms"]["pass"],
            got["invocations_1000_rows_server_side_ms"]["worst_model"]) == (False, "a")
    assert got["predict_1_row_server_side_ms"]["pass"] is None  # not measured
    assert got["faster_than_mlflow_p50_1_row_ms"]["pass"] is True
    assert got["smaller_than_mlflow_peak_pss_mb"]["pass"] is False

