"""The benchmark tooling (scripts/bench): cgroup sandboxes, /proc parsing, statistics, goals, the envelope report."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts.bench.client import file_part, form
from scripts.bench.envelope import compare_blocks, main, parse_variant, summarize
from scripts.bench.report import judge, pick, ratio
from scripts.bench.sandbox import Sandbox, controller_path, parse_flat_keyed, parse_smaps_rollup, sampling, stats
from scripts.bench.server import access_log_lines

pytestmark = pytest.mark.bench

SMAPS_ROLLUP = """\
55d0c3a00000-7ffd5a3f4000 ---p 00000000 00:00 0                          [rollup]
Rss:              103248 kB
Pss:               74012 kB
Pss_Dirty:         50100 kB
Pss_Anon:          50388 kB
Pss_File:          23624 kB
Pss_Shmem:             0 kB
Shared_Clean:      30000 kB
Swap:                  0 kB
Locked:                0 kB
"""

# /proc/self/cgroup on a cgroup v1 host: one line per hierarchy, then the v2 entry.
PROC_CGROUP_V1 = """\
9:name=systemd:/
4:memory:/process_api/1c8f79577573e2f008fcb315d151fce1
2:cpuacct:/
1:cpu:/
0::/
"""
PROC_CGROUP_COMBINED = "5:cpu,cpuacct:/user.slice\n4:memory:/user.slice/session-1.scope\n"
PROC_CGROUP_V2_ONLY = "0::/user.slice/user-1000.slice/session-2.scope\n"


def test_smaps_rollup_fields_are_parsed_to_bytes():
    fields = parse_smaps_rollup(SMAPS_ROLLUP)
    assert fields["Rss"] == 103248 * 1024
    assert fields["Pss"] == 74012 * 1024
    assert fields["Pss_Anon"] + fields["Pss_File"] == (50388 + 23624) * 1024


def test_smaps_rollup_header_line_is_ignored():
    assert "55d0c3a00000-7ffd5a3f4000 ---p 00000000 00" not in parse_smaps_rollup(SMAPS_ROLLUP)


def test_memory_peak_is_sampled_before_a_fast_block_runs():
    with sampling(lambda: [os.getpid()], interval=60.0) as peak:
        seen = dict(peak)  # long before the thread's first tick
    assert seen["rss"] > 1 << 20 and seen["pss"] > 0


@pytest.mark.parametrize("values", [[7.0], [3.0, 1.0], [5.0, 1.0, 4.0, 2.0, 3.0], [0.1 * i * i for i in range(50)]])
def test_percentiles_match_numpy_linear_interpolation(values):
    got = stats(values, 12)
    assert [got["p50"], got["p95"], got["p99"]] == pytest.approx(list(np.percentile(values, [50, 95, 99])))


def test_latency_summary_reports_count_percentiles_max_mean():
    assert stats([float(v) for v in range(1, 101)]) == {"n": 100, "p50": 50.5, "p95": 95.0, "p99": 99.0, "max": 100.0,
                                                         "mean": 50.5}
    assert stats([0.1234, 0.2, 0.3], 3) == {"n": 3, "p50": 0.2, "p95": 0.29, "p99": 0.298, "max": 0.3, "mean": 0.208}
    assert stats([]) == {"n": 0}


def test_memory_cgroup_resolves_under_our_own_v1_path():
    path = controller_path(PROC_CGROUP_V1, "memory", Path("/sys/fs/cgroup"))
    assert path == Path("/sys/fs/cgroup/memory/process_api/1c8f79577573e2f008fcb315d151fce1")


def test_cpu_cgroup_resolves_to_the_hierarchy_root():
    assert controller_path(PROC_CGROUP_V1, "cpu", Path("/sys/fs/cgroup")) == Path("/sys/fs/cgroup/cpu")


def test_combined_controllers_resolve_through_their_joint_mount(tmp_path):
    (tmp_path / "cpu,cpuacct").mkdir()
    assert controller_path(PROC_CGROUP_COMBINED, "cpu", tmp_path) == tmp_path / "cpu,cpuacct" / "user.slice"


def test_cgroup_v2_only_has_no_v1_controller():
    assert controller_path(PROC_CGROUP_V2_ONLY, "memory") is None


def test_flat_keyed_files_parse_to_integers():
    oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    assert parse_flat_keyed(oom_control) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 2}


def _fake_cgroupfs(root: Path) -> None:
    """A directory tree shaped like a cgroup v1 memory, cpuacct and cpu hierarchy."""
    for folder in (root / "memory" / "process_api" / "abc", root / "cpuacct", root / "cpu"):
        folder.mkdir(parents=True)
        (folder / "cgroup.procs").write_text("")


def test_sandbox_writes_quota_and_memory_limit(tmp_path):
    _fake_cgroupfs(tmp_path)
    sandbox = Sandbox("bench", cpu_quota_us=10_000, memory_limit=256 << 20, root=tmp_path)
    sandbox.create(PROC_CGROUP_V1.replace("1c8f79577573e2f008fcb315d151fce1", "abc"))
    memory = tmp_path / "memory" / "process_api" / "abc" / "bench"
    assert (memory / "memory.limit_in_bytes").read_text() == f"{256 << 20}\n"
    assert sandbox.dirs == {"memory": memory, **{c: tmp_path / c / "bench" for c in ("cpuacct", "cpu")}}
    assert (tmp_path / "cpu" / "bench" / "cpu.cfs_quota_us").read_text() == "10000\n"
    assert (tmp_path / "cpu" / "bench" / "cpu.cfs_period_us").read_text() == "100000\n"


def test_sandbox_without_a_quota_makes_no_cpu_cgroup(tmp_path):
    _fake_cgroupfs(tmp_path)
    sandbox = Sandbox("bench", cpu_quota_us=None, memory_limit=None, root=tmp_path)
    sandbox.create(PROC_CGROUP_V1.replace("1c8f79577573e2f008fcb315d151fce1", "abc"))
    assert list(sandbox.dirs) == ["memory", "cpuacct"] and not (tmp_path / "cpu" / "bench").exists()
    assert sandbox.read("cpu", "cpu.stat") == ""


def test_the_benchmark_stops_without_cgroup_v1(tmp_path):
    sandbox = Sandbox("bench", cpu_quota_us=10_000, memory_limit=256 << 20, root=tmp_path)
    with pytest.raises(SystemExit, match="cgroup v1 memory"):
        sandbox.create(PROC_CGROUP_V2_ONLY)


def test_sandbox_without_a_cpu_controller_stops_and_keeps_no_half_made_cgroup(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "cgroup.procs").write_text("")
    sandbox = Sandbox("bench", cpu_quota_us=10_000, memory_limit=None, root=tmp_path)
    with pytest.raises(SystemExit, match="cpuacct"):
        sandbox.create("4:memory:/\n")
    assert not (tmp_path / "memory" / "bench").exists() and sandbox.dirs == {}


REAL_CGROUPS = os.geteuid() == 0 and controller_path(Path("/proc/self/cgroup").read_text(), "memory") is not None


@pytest.mark.skipif(not REAL_CGROUPS, reason="needs root and a cgroup v1 memory hierarchy")
def test_a_real_sandbox_limits_accounts_and_is_removed():
    sandbox = Sandbox(f"slimserve-test-{os.getpid()}", cpu_quota_us=10_000, memory_limit=64 << 20)
    sandbox.create()
    child = subprocess.Popen([sys.executable, "-c", "sum(range(3_000_000))"], preexec_fn=sandbox.join)
    try:
        assert child.wait(timeout=60) == 0
        assert int(sandbox.read("memory", "memory.limit_in_bytes")) == 64 << 20
        assert sandbox.read("cpu", "cpu.cfs_quota_us").strip() == "10000"
        assert sandbox.memory_stats()["max_usage_in_bytes"] > 0 and sandbox.oom_kills() == 0
        assert sandbox.cpu_seconds() > 0.01 and sandbox.pids() == []
    finally:
        dirs = list(sandbox.dirs.values())
        sandbox.remove()
    assert len(dirs) == 3 and not any(d.exists() for d in dirs)


def test_judge_passes_against_limits_and_only_when_measured_validly():
    got = judge({"a": 1.5, "b": 2.5, "c": 3.2, "d": None}, {"a": 2.0, "b": 2.0, "c": 3.0, "d": 1.0}, at_least={"c"})
    assert {k: v["pass"] for k, v in got.items()} == {"a": True, "b": False, "c": True, "d": None}
    assert got["b"] == {"value": 2.5, "limit": 2.0, "pass": False}


def test_pick_and_ratio_yield_none_when_something_is_missing():
    assert pick({"a": {"b": 3}}, "a", "b") == 3 and pick({"a": 1}, "a", "b") is None and pick(None, "a") is None
    assert ratio(570.0, 76.0) == 7.5 and ratio(None, 76.0) is None and ratio(1.0, 0) is None


def _run(cold: float, cpu: float | None = None) -> dict:
    """An envelope run with a cold start, and CPU ms per /predict if given."""
    return {"cold_start_s": {"first_predict_200": cold}, "cpu_ms_per_predict": cpu, "env": {},
            "memory": {"peak_pss_mb": 90.0, "peak_rss_mb": 130.0},
            "latency": {"client_ms": {"p50": 9.0}}}


def test_envelope_report_folds_cold_starts_compares_with_bare_and_judges_the_goals():
    paired = {"slimserve": 5.2, "bare": 4.9, "over_bare": 0.25, "variant_auth": 5.3,  # medians of per-block pairs
              "variants_over_default": {"auth": 0.1}, "servers": {"variant_auth": {"env": {"A": "1"}}}}
    report = {"paired_cpu": paired, "runs": {"slimserve_envelope": _run(4.0, 5.6), "bare_envelope": _run(3.0, 4.9),
                       "slimserve_envelope_cold_2": _run(3.0), "bare_envelope_cold_2": _run(2.8),
                       "slimserve_envelope_cold_3": _run(3.2), "bare_envelope_cold_3": _run(2.9),
                       "slimserve_unlimited": _run(1.0)}}
    summarize(report)
    assert list(report["runs"]) == ["slimserve_envelope", "bare_envelope", "slimserve_unlimited"]
    assert report["runs"]["slimserve_envelope"]["cold_start_s"]["repeats"] == [4.0, 3.0, 3.2]
    assert report["cold_start_median_s"] == {"slimserve": 3.2, "bare": 2.9}
    assert report["cold_start_ratio"] == pytest.approx(1.103)
    assert report["cpu_ms_per_predict"] == {  # the side-by-side blocks are judged; the single series kept
        "slimserve": 5.2, "bare": 4.9, "over_bare": 0.25, "ratio": pytest.approx(1.061),
        "single_series": {"slimserve": 5.6, "bare": 4.9, "over_bare": 0.7}}
    assert report["variants"] == {"auth": {"env": {"A": "1"}, "cpu_ms_per_predict": 5.3, "over_default_ms": 0.1}}
    assert {k: g["pass"] for k, g in report["goals"].items()} == {
        "peak_pss_mb": True, "peak_rss_mb": False, "cold_start_s": False, "p50_ms": True, "cold_start_ratio": True,
        "cpu_over_bare_ms": True}


def test_side_by_side_blocks_are_compared_pair_by_pair():
    # The machine slows down in the third block: both sides move, the pair's difference does not.
    blocks = {"slimserve": [5.5, 5.6, 11.0, 5.4], "bare": [5.0, 5.0, 10.4, 5.0]}
    found = compare_blocks(blocks)
    assert found["over_bare"] == pytest.approx(0.55)  # median of 0.5, 0.6, 0.6, 0.4
    assert found["over_bare_range"] == [pytest.approx(0.4), pytest.approx(0.6)]
    assert found["slimserve"] == pytest.approx(5.55) and found["bare"] == pytest.approx(5.0)
    assert found["variants_over_default"] == {}
    with_variant = compare_blocks({**blocks, "variant_noaudit": [5.3, 5.5, 10.8, 5.2]})
    assert with_variant["variants_over_default"] == {"noaudit": pytest.approx(-0.2)}  # against slimserve, per block
    assert with_variant["over_bare"] == pytest.approx(0.55)
    with pytest.raises(ValueError):
        compare_blocks({"slimserve": [1.0], "bare": []})  # unpaired blocks are a bug, not a figure


@pytest.mark.parametrize(("text", "name", "env"), [
    ("noaudit:SLIMSERVE_AUDIT_SINK=off", "noaudit", {"SLIMSERVE_AUDIT_SINK": "off"}),
    ("auth:SLIMSERVE_API_KEYS=auto,SLIMSERVE_MODEL_ACCESS=pneumonia=key,aids=mfa", "auth",
     {"SLIMSERVE_API_KEYS": "auto", "SLIMSERVE_MODEL_ACCESS": "pneumonia=key,aids=mfa"}),
    ("limits:SLIMSERVE_RATE_LIMIT_ENABLED=false,SLIMSERVE_METRICS=false", "limits",
     {"SLIMSERVE_RATE_LIMIT_ENABLED": "false", "SLIMSERVE_METRICS": "false"})])
def test_variants_parse_names_and_env_whose_values_may_hold_commas(text, name, env):
    assert parse_variant(text) == (name, env)


@pytest.mark.parametrize("text", ["noname", ":A=1", "x:lower=1", "x:A"])
def test_malformed_variants_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_variant(text)


def test_multipart_body_carries_the_file_field():
    upload = form([file_part(b"\xff\xd8\xffDATA", "x.jpeg", "image/jpeg")])
    boundary = upload.content_type.split("boundary=")[1]
    assert upload.body.startswith(f"--{boundary}\r\n".encode())
    assert b'name="file"; filename="x.jpeg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xffDATA\r\n' in upload.body
    assert upload.body.endswith(f"--{boundary}--\r\n".encode())


def test_access_log_lines_give_path_status_and_gunicorn_ms():
    lines = ["[INFO] Booting worker with pid: 9", '127.0.0.1 "GET /ready" 200 40 812us rid=a',
             '127.0.0.1 "POST /models/heart_failure/invocations" 422 300 1234us rid=b',
             '127.0.0.1 "POST /predict HTTP/1.1" 503 9 1ms rid=c']
    assert access_log_lines(lines) == [("/ready", 200, 0.812), ("/models/heart_failure/invocations", 422, 1.234),
                                       ("/predict", 503, None)]


def test_variants_without_side_by_side_blocks_are_refused_not_dropped():
    with pytest.raises(SystemExit, match="--variant needs --cpu-blocks"):
        main(["--cpu-blocks", "0", "--variant", "noaudit:SLIMSERVE_AUDIT_SINK=off"])
