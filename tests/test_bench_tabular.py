"""The pure parts of the tabular benchmark (scripts/bench/tabular*.py, mlflow_baseline.py): rows, logs, goals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench.mlflow_baseline import group_members, parse_pgid_state, serve_argv, serve_env
from scripts.bench.tabular_data import (
    build_payloads,
    cycle,
    fits,
    json_value,
    records_body,
    source_for,
    split_body,
    tabular_manifests,
    typed_rows,
    whonet_code,
)
from scripts.bench.tabular_http import LogCursor, access_times_ms, summarize
from scripts.bench.tabular_memory import mapped_by, memory_mb
from scripts.bench.tabular_report import goals, judged, ratios, worst_latency
from slimserve.manifest import Feature
from tests.conftest import write_fake_model, write_fake_tabular_model

AGE = Feature("Age", "integer", minimum=18, maximum=100)
SEX = Feature("Sex", "category", categories=["F", "M"])
BP = Feature("RestingBP", "number", minimum=0, maximum=300)
FBS = Feature("FastingBS", "boolean")
ACCESS_LOG = """\
[2026-11-23 20:24:37 +0000] [9756] [INFO] Booting worker with pid: 9756
127.0.0.1 "GET /ready HTTP/1.1" 200 40 812us rid=a
127.0.0.1 "POST /models/heart_failure/invocations HTTP/1.1" 200 20 1234us rid=b
127.0.0.1 "POST /models/heart_failure/invocations?probabilities=true HTTP/1.1" 200 90 2500us rid=c
127.0.0.1 "POST /models/heart_failure/invocations HTTP/1.1" 422 300 900us rid=d
127.0.0.1 "POST /models/diabetes/invocations HTTP/1.1" 200 20 700us rid=e
"""


@pytest.mark.parametrize(("model", "code"), [("modelo_GEN_NM", "GEN"), ("modelo_CAZ_NM", "CAZ"),
                                             ("heart_failure", None), ("modelo_GEN", None)])
def test_whonet_code_is_read_from_antibiotic_model_names(model, code):
    assert whonet_code(model) == code


def test_antibiotic_models_share_one_file_filtered_by_code(tmp_path):
    assert source_for("modelo_TCY_NM", tmp_path) == (tmp_path / "antibiotic/camda2025_training_mic_sir.csv", "TCY")
    assert source_for("aids", tmp_path) == (tmp_path / "aids/AIDS_Classification.csv", None)
    with pytest.raises(KeyError):
        source_for("unknown", tmp_path)


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
def test_fits_is_the_servers_own_verdict(feature, value, ok):
    assert fits(feature, value) is ok


def test_typed_rows_skip_records_the_server_would_refuse():
    records = [{"Age": "40", "Sex": "M"}, {"Age": "12", "Sex": "M"}, {"Age": "x", "Sex": "F"}, {"Age": "50"},
               {"Age": "60", "Sex": "F"}]
    assert typed_rows([AGE, SEX], records) == ([[40, "M"], [60, "F"]], 3)


def test_cycle_repeats_rows_to_the_exact_count():
    assert cycle([[1], [2]], 5) == [[1], [2], [1], [2], [1]]
    assert cycle([[1], [2], [3]], 2) == [[1], [2]]
    with pytest.raises(ValueError):
        cycle([], 3)


def test_bodies_are_mlflow_dataframe_split_and_slimserve_records():
    split = json.loads(split_body(["Age", "Sex"], [[40, "M"]]))
    assert split == {"dataframe_split": {"columns": ["Age", "Sex"], "data": [[40, "M"]]}}
    assert json.loads(records_body(["Age", "Sex"], [[40, "M"]])) == {"records": [{"Age": 40, "Sex": "M"}]}


def test_build_payloads_reads_real_rows_from_a_data_folder(tmp_path):
    (tmp_path / "antibiotic").mkdir()
    (tmp_path / "antibiotic/camda2025_training_mic_sir.csv").write_text(
        "species,whonet_code,mic_sign,mic_value\nE. coli,GEN,,2\nE. coli,CAZ,,4\nE. coli,GEN,<=,0.5\nOther,GEN,,1\n")
    features = [Feature("species", "category", categories=["E. coli"]),
                Feature("mic_value", "number", minimum=0.001, maximum=4096),
                Feature("mic_sign", "category", categories=["", "<="])]
    got = build_payloads("modelo_GEN_NM", features, bulk=3, singles=5, data=tmp_path)
    assert (got.rows_available, got.rows_skipped, len(got.single_split)) == (2, 1, 2)
    assert json.loads(got.bulk_split.body)["dataframe_split"]["data"] == [["E. coli", 2, ""], ["E. coli", 0.5, "<="],
                                                                          ["E. coli", 2, ""]]
    assert json.loads(got.single_records[1].body) == {"records": [{"species": "E. coli", "mic_value": 0.5,
                                                                   "mic_sign": "<="}]}


def test_tabular_manifests_lists_only_models_with_features(tmp_path):
    write_fake_tabular_model(tmp_path / "tab" / "1.0.0", name="tab")
    write_fake_model(tmp_path / "xray" / "1.0.0", name="xray")
    features = tabular_manifests(tmp_path)
    assert list(features) == ["tab"]
    assert [f.name for f in features["tab"]] == ["Age", "Sex", "Cholesterol", "FastingBS"]


def test_summarize_keeps_sub_millisecond_precision():
    assert summarize([0.1234, 0.2, 0.3]) == {"n": 3, "p50": 0.2, "p95": 0.29, "max": 0.3, "mean": 0.208}
    assert summarize([]) == {"n": 0}


def test_access_times_are_read_for_one_path_and_status_in_order():
    lines = ACCESS_LOG.splitlines()
    assert access_times_ms(lines, "/models/heart_failure/invocations") == [1.234, 2.5]
    assert access_times_ms(lines, "/models/heart_failure/invocations", status=422) == [0.9]
    assert access_times_ms(lines, "/ready") == [0.812]


def test_log_cursor_returns_only_lines_written_after_it(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("old line\n")
    cursor = LogCursor(log)
    with log.open("a") as handle:
        handle.write("new 1\nnew 2\n")
    assert cursor.lines() == ["new 1", "new 2"]
    assert LogCursor(None).lines() == []


def test_parse_pgid_state_handles_spaces_and_parentheses_in_the_name():
    assert parse_pgid_state("4242 (uvicorn (worker) x) S 4200 4200 4200 0 -1") == (4200, "S")


def fake_proc(root: Path, processes: dict[int, tuple[str, int, str]]) -> Path:
    """A /proc look-alike: pid → (state, pgid, maps text)."""
    for pid, (state, pgid, maps) in processes.items():
        folder = root / str(pid)
        folder.mkdir(parents=True)
        (folder / "stat").write_text(f"{pid} (python3) {state} 1 {pgid} {pgid} 0 -1")
        (folder / "maps").write_text(maps)
        (folder / "cmdline").write_bytes(b"python3\0-m\0x\0")
    (root / "self").mkdir()
    return root


def test_group_members_are_live_processes_of_the_group(tmp_path):
    proc = fake_proc(tmp_path, {10: ("S", 10, ""), 11: ("R", 10, ""), 12: ("Z", 10, ""), 13: ("S", 99, "")})
    assert sorted(group_members(10, proc)) == [10, 11]


def test_mapped_by_names_the_processes_that_map_a_file(tmp_path):
    proc = fake_proc(tmp_path, {20: ("S", 20, "7f00 r-xp /venv/ort.so\n"), 21: ("S", 21, "7f00 r-xp /lib/c.so\n")})
    assert mapped_by(Path("/venv/ort.so"), proc) == ["20 python3 -m x "]


def test_mlflow_serve_stays_on_loopback_with_one_worker_offline(tmp_path):
    argv = serve_argv(tmp_path / "model", 5001)
    assert argv[1:3] == ["models", "serve"]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options == {"-m": str(tmp_path / "model"), "--env-manager": "local", "--host": "127.0.0.1",
                       "--port": "5001", "--workers": "1"}
    assert serve_env()["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_memory_mb_keeps_the_process_count():
    assert memory_mb({"rss": 3 * 1024 * 1024, "processes": 2}) == {"rss": 3.0, "processes": 2}


def run(pss: float, rss: float, cold: float, one: float, bulk: float) -> dict:
    """A comparison run with the figures the ratios read."""
    return {"memory": {"peak_pss_mb": pss, "peak_rss_mb": rss}, "cold_start_s": {"first_invocation_200": cold},
            "latency": {"1_row": {"client_round_trip_ms": {"p50": one}},
                        "1000_rows": {"client_round_trip_ms": {"p50": bulk}}}}


def test_ratios_are_mlflow_over_each_slimserve_run():
    got = ratios({"mlflow": run(450, 510, 7.0, 14.0, 23.0), "slimserve_all_models": run(90, 105, 0.5, 1.4, 4.6)})
    assert set(got) == {"slimserve_all_models"}
    assert got["slimserve_all_models"]["peak_pss_mb"] == 5.0
    assert got["slimserve_all_models"]["cold_start_s"] == 14.0
    assert got["slimserve_all_models"]["p50_1000_rows_ms"] == 5.0
    assert got["slimserve_all_models"]["cgroup_peak_mb"] is None


@pytest.mark.parametrize(("value", "limit", "at_least", "valid", "ok"), [
    (1.5, 2.0, False, True, True), (2.5, 2.0, False, True, False), (3.2, 3.0, True, True, True),
    (2.9, 3.0, True, True, False), (None, 2.0, False, True, None), (1.0, 2.0, False, False, None)])
def test_judged_passes_against_a_limit_only_when_measured_validly(value, limit, at_least, valid, ok):
    assert judged(value, limit, at_least, valid)["pass"] is ok


def test_goals_judge_the_worst_model_and_need_enforced_limits():
    full_core = {"a": {"invocations_1_row": {"gunicorn_request_ms": {"p50": 0.8}},
                       "invocations_1000_rows": {"gunicorn_request_ms": {"p50": 6.1}}},
                 "b": {"invocations_1_row": {"gunicorn_request_ms": {"p50": 1.1}},
                       "invocations_1000_rows": {"gunicorn_request_ms": {"p50": 3.0}}}}
    assert worst_latency(full_core, "invocations_1_row") == ("b", 1.1)
    report = {"envelope": {"limits": {"enforced": True, "memory_mb": 256}, "memory": {"peak_pss_mb": 94.0},
                           "full_core": full_core},
              "comparison": {"ratios": {"slimserve_all_models": {"p50_1_row_ms": 8.8, "peak_pss_mb": 3.9}}}}
    got = goals(report)
    assert got["whole_server_peak_pss_mb"]["pass"] is True
    assert got["whole_server_peak_rss_mb"]["pass"] is None
    assert got["invocations_1_row_server_side_ms"]["pass"] is True
    assert (got["invocations_1000_rows_server_side_ms"]["pass"],
            got["invocations_1000_rows_server_side_ms"]["worst_model"]) == (False, "a")
    assert got["faster_than_mlflow_p50_1_row_ms"]["pass"] is True
    assert got["smaller_than_mlflow_peak_pss_mb"]["pass"] is False
    report["envelope"]["limits"]["enforced"] = False
    assert goals(report)["whole_server_peak_pss_mb"]["pass"] is None
