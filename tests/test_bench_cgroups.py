"""The pure parts of the envelope benchmark (scripts/bench): parsing, statistics, cgroup paths, goals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scripts.bench.cgroups import Sandbox, controller_path, parse_flat_keyed
from scripts.bench.client import multipart
from scripts.bench.envelope import fold_cold_repeats
from scripts.bench.measure import parse_cpu_seconds, parse_ppid, parse_smaps_rollup, percentile, summarize_ms
from scripts.bench.report import cpu_model, goals, ratio
from scripts.bench.server import notable, worker_boots

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


def test_stat_parsing_survives_spaces_and_parentheses_in_the_command_name():
    text = "4242 (gunicorn: (worker) x) S 4200 4200 4200 0 -1 4194560 900 0 3 0 150 25 0 0 20 0 5 0 1289 0 0"
    assert parse_ppid(text) == 4200
    assert parse_cpu_seconds(text, ticks=100) == pytest.approx(1.75)


@pytest.mark.parametrize("q", [0, 5, 50, 95, 99, 100])
@pytest.mark.parametrize("values", [[7.0], [3.0, 1.0], [5.0, 1.0, 4.0, 2.0, 3.0], [0.1 * i * i for i in range(50)]])
def test_percentile_matches_numpy_linear_interpolation(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_nan():
    assert np.isnan(percentile([], 50))


def test_latency_summary_reports_count_p50_p95_max_mean():
    summary = summarize_ms([float(v) for v in range(1, 101)])
    assert summary == {"n": 100, "p50": 50.5, "p95": 95.0, "max": 100.0, "mean": 50.5}
    assert summarize_ms([]) == {"n": 0}


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
    """A directory tree shaped like a cgroup v1 memory and cpu hierarchy."""
    for folder in (root / "memory" / "process_api" / "abc", root / "cpu"):
        folder.mkdir(parents=True)
        (folder / "cgroup.procs").write_text("")
        (folder / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")


def test_sandbox_writes_quota_and_memory_limit_including_swap(tmp_path):
    _fake_cgroupfs(tmp_path)
    sandbox = Sandbox("bench", cpu_quota_us=10_000, memory_limit=256 << 20, root=tmp_path)
    assert sandbox.create(PROC_CGROUP_V1.replace("1c8f79577573e2f008fcb315d151fce1", "abc"))
    memory = tmp_path / "memory" / "process_api" / "abc" / "bench"
    assert (memory / "memory.limit_in_bytes").read_text() == f"{256 << 20}\n"
    assert sandbox.cpu_dir == tmp_path / "cpu" / "bench"
    assert (sandbox.cpu_dir / "cpu.cfs_quota_us").read_text() == "10000\n"
    assert (sandbox.cpu_dir / "cpu.cfs_period_us").read_text() == "100000\n"
    assert sandbox.active


def test_sandbox_falls_back_with_a_note_without_cgroup_v1(tmp_path):
    sandbox = Sandbox("bench", cpu_quota_us=10_000, memory_limit=256 << 20, root=tmp_path)
    assert not sandbox.create(PROC_CGROUP_V2_ONLY)
    assert not sandbox.active
    assert "no limits" in sandbox.notes[0]


def test_cpu_model_is_read_from_cpuinfo():
    assert cpu_model("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n") == "AMD EPYC"


def test_ratio_is_none_when_a_side_is_missing():
    assert ratio(570.0, 76.0) == 7.5
    assert ratio(None, 76.0) is None
    assert ratio(1.0, 0) is None


def _onnx_run(enforced: bool) -> dict:
    """An ONNX envelope run result with fixed figures."""
    return {"limits": {"enforced": enforced}, "memory": {"peak_pss_mb": 80.0, "peak_rss_mb": 130.0},
            "cold_start_s": {"first_predict_200_median": 3.5}, "latency": {"client_ms": {"p50": 9.0}}}


def test_goals_pass_or_fail_against_their_limits():
    table = goals(_onnx_run(enforced=True))
    assert {name: row["pass"] for name, row in table.items()} == {
        "peak_pss_mb": True, "peak_rss_mb": False, "cold_start_s": False, "p50_ms": True}


def test_goals_are_not_judged_without_enforced_limits():
    assert all(row["pass"] is None for row in goals(_onnx_run(enforced=False)).values())


def test_cold_start_repeats_fold_into_the_envelope_run_with_a_median():
    def run(seconds: float) -> dict:
        """A run whose cold start took `seconds`."""
        return {"outcome": "ok", "cold_start_s": {"first_predict_200": seconds}, "memory": {}}

    report = {"runs": {"onnx_envelope": run(4.0), "onnx_envelope_cold_2": run(3.0),
                       "onnx_envelope_cold_3": run(3.2), "onnx_unlimited": run(1.0)}}
    fold_cold_repeats(report)
    assert list(report["runs"]) == ["onnx_envelope", "onnx_unlimited"]
    cold = report["runs"]["onnx_envelope"]["cold_start_s"]
    assert [row["first_predict_200"] for row in cold["repeats"]] == [4.0, 3.0, 3.2]
    assert cold["first_predict_200_median"] == 3.2


def test_multipart_body_carries_the_file_field():
    upload = multipart("x.jpeg", b"\xff\xd8\xffDATA")
    boundary = upload.content_type.split("boundary=")[1]
    assert upload.body.startswith(f"--{boundary}\r\n".encode())
    assert b'name="file"; filename="x.jpeg"' in upload.body
    assert upload.body.endswith(f"\r\n--{boundary}--\r\n".encode())


def test_worker_restarts_and_deaths_are_picked_from_the_log():
    lines = ["[INFO] Booting worker with pid: 10", '127.0.0.1 "GET /health HTTP/1.1" 200 16 1ms',
             "[ERROR] Worker (pid:10) was sent SIGKILL! Perhaps out of memory?", "[INFO] Booting worker with pid: 11"]
    assert worker_boots(lines) == 2
    assert notable(lines) == [lines[0], lines[2], lines[3]]
