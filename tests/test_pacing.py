"""CPU pacing: predictions wait while the process is over its share of the quota; the quota from cgroups."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimserve.pacing import CpuPacer, cgroup_cpus


class Clocks:
    """A wall clock and a process CPU clock the test moves by hand."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def sleep(self, seconds: float) -> None:
        self.wall += seconds


def test_a_prediction_starts_at_once_while_the_budget_lasts():
    clocks = Clocks()
    pacer = CpuPacer(0.1, 0.8, clock=lambda: clocks.wall, cpu=lambda: clocks.cpu)
    assert pacer.delay() == 0.0  # nothing spent yet
    clocks.cpu += 0.003  # a 3 ms prediction: 5 ms of the 8 ms budget left, enough for another like it
    assert pacer.delay() == 0.0


def test_over_the_share_the_next_prediction_waits_until_its_cost_is_back_in_the_budget():
    clocks = Clocks()
    pacer = CpuPacer(0.1, 0.8, clock=lambda: clocks.wall, cpu=lambda: clocks.cpu)
    clocks.cpu += 0.006  # one 6 ms prediction: 2 ms left of the 8 ms budget, refilled at 80 ms CPU per second
    assert pacer.delay() == pytest.approx(0.05)  # the next one (about 6 ms) waits for 4 ms more: 50 ms
    pacer.wait(sleep=clocks.sleep)
    assert clocks.wall == pytest.approx(0.05) and pacer.delay() == 0.0


def test_over_time_the_process_stays_under_its_share():
    clocks = Clocks()
    pacer = CpuPacer(0.1, 0.8, clock=lambda: clocks.wall, cpu=lambda: clocks.cpu)
    for _ in range(100):  # predictions of 7 ms CPU back to back
        pacer.wait(sleep=clocks.sleep)
        clocks.cpu += 0.007
        clocks.wall += 0.007 / 0.1  # at 0.1 vCPU, 7 ms of CPU take 70 ms of wall time
    assert clocks.cpu / clocks.wall <= 0.1 * 0.8 + 1e-3


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_quota_from_cgroup_v1(tmp_path):
    write(tmp_path / "cpu,cpuacct" / "bench" / "cpu.cfs_quota_us", "10000\n")
    write(tmp_path / "cpu,cpuacct" / "bench" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpus("5:cpu,cpuacct:/bench\n4:memory:/x\n", root=tmp_path) == pytest.approx(0.1)


def test_quota_from_cgroup_v2_and_unlimited(tmp_path):
    write(tmp_path / "app" / "cpu.max", "25000 100000\n")
    assert cgroup_cpus("0::/app\n", root=tmp_path) == pytest.approx(0.25)
    write(tmp_path / "app" / "cpu.max", "max 100000\n")
    assert cgroup_cpus("0::/app\n", root=tmp_path) is None
    assert cgroup_cpus("0::/nowhere\n", root=tmp_path) is None
