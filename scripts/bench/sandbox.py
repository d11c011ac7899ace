"""cgroup v1 sandboxes (a CPU quota and a memory limit that a server joins before exec, and their counters), the
memory of their processes (RSS/PSS from smaps_rollup) and latency statistics."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000  # a quota of one period is exactly one full core
TENTH_VCPU = 10_000
UNLIMITED = -1
ENVELOPE_MEMORY = 256 << 20
MB = 1024 * 1024
KEYS = ("rss", "pss", "pss_anon", "pss_file")


def controller_path(proc_cgroup: str, controller: str, root: Path = CGROUP_ROOT) -> Path | None:
    """The directory of `controller` for the process whose /proc/<pid>/cgroup text is given (v1 only)."""
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) == 3 and controller in parts[1].split(","):  # never the cgroup v2 entry "0::/path"
            mount = root / parts[1]
            if not mount.is_dir() and (root / controller).is_dir():
                mount = root / controller  # "cpu,cpuacct" is usually also reachable as "cpu"
            return mount / parts[2].lstrip("/")
    return None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse `key value` lines (memory.stat, memory.oom_control, cpu.stat) into integers."""
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


@dataclass
class Sandbox:
    """One run's cgroups: a CPU quota (µs per period, None = none), a memory limit (bytes, None = none), accounting."""

    name: str
    cpu_quota_us: int | None
    memory_limit: int | None
    root: Path = CGROUP_ROOT
    dirs: dict[str, Path] = field(default_factory=dict)  # controller -> this run's cgroup

    def create(self, proc_cgroup: str | None = None) -> None:
        """Create the cgroups (memory and cpuacct, cpu for a quota); without them the benchmark stops at once."""
        text = proc_cgroup if proc_cgroup is not None else Path("/proc/self/cgroup").read_text()
        try:
            for controller in ("memory", "cpuacct", *(["cpu"] if self.cpu_quota_us is not None else [])):
                parent = controller_path(text, controller, self.root)
                if parent is None or not (parent / "cgroup.procs").exists():
                    raise OSError(f"no cgroup v1 {controller} controller")
                (parent / self.name).mkdir()
                self.dirs[controller] = parent / self.name
            if self.memory_limit is not None:
                self.write("memory", "memory.limit_in_bytes", self.memory_limit)
                if (self.dirs["memory"] / "memory.memsw.limit_in_bytes").exists():  # swap too; never below memory
                    self.write("memory", "memory.memsw.limit_in_bytes", self.memory_limit)
            self.write("cpu", "cpu.cfs_period_us", CFS_PERIOD_US)
            self.write("cpu", "cpu.cfs_quota_us", self.cpu_quota_us)
        except OSError as exc:
            self.remove()
            raise SystemExit(f"bench: cgroups not usable ({exc}); the server must run in cgroup v1 (as root)") from exc

    def write(self, controller: str, name: str, value: int | None) -> None:
        """Write a control file of this run's cgroup of `controller`, if there is one."""
        if controller in self.dirs:
            (self.dirs[controller] / name).write_text(f"{value}\n")

    def read(self, controller: str, name: str) -> str:
        """A control file of this run's cgroup of `controller` ("" without one)."""
        return (self.dirs[controller] / name).read_text() if controller in self.dirs else ""

    def join(self) -> None:
        """Move the calling process into the sandbox (a Popen preexec_fn, i.e. before exec)."""
        for controller in self.dirs:
            self.write(controller, "cgroup.procs", os.getpid())

    def pids(self) -> list[int]:
        """Processes in the memory cgroup now."""
        return [int(pid) for pid in self.read("memory", "cgroup.procs").split()]

    def cpu_seconds(self) -> float:
        """CPU time charged to the sandbox so far (cpuacct.usage: exited processes included)."""
        return int(self.read("cpuacct", "cpuacct.usage")) / 1e9

    def memory_stats(self) -> dict[str, int | None]:
        """Peak usage and failcnt of the memory cgroup, its oom_kill count (memory.oom_control) and pgmajfault."""
        stat, oom = (parse_flat_keyed(self.read("memory", f"memory.{n}")) for n in ("stat", "oom_control"))
        return {n: int(self.read("memory", f"memory.{n}")) for n in ("max_usage_in_bytes", "failcnt")} | {
            "oom_control.oom_kill": oom.get("oom_kill", 0), "stat.pgmajfault": stat.get("pgmajfault")}

    def oom_kills(self) -> int:
        """The kernel's oom_kill counter of the memory cgroup (not failcnt, which also counts reclaim)."""
        return self.memory_stats().get("oom_control.oom_kill", 0)

    def remove(self, wait_seconds: float = 10.0) -> None:
        """Remove the cgroups once their processes are gone (bounded wait)."""
        deadline = time.monotonic() + wait_seconds
        for directory in self.dirs.values():
            while directory.exists() and time.monotonic() < deadline:
                try:
                    directory.rmdir()
                except OSError:
                    time.sleep(0.05)  # its last processes are still leaving
        if left := [str(d) for d in self.dirs.values() if d.exists()]:
            print(f"bench: could not remove {', '.join(left)}", file=sys.stderr)
        self.dirs.clear()


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """The `Name: N kB` fields of /proc/<pid>/smaps_rollup, in bytes."""
    pairs = ((name, rest.split()) for name, _, rest in (line.partition(":") for line in text.splitlines()))
    return {name.strip(): int(p[0]) * 1024 for name, p in pairs if len(p) == 2 and p[1] == "kB" and p[0].isdigit()}


def process_memory(pids: list[int]) -> dict[str, int]:
    """Summed Rss, Pss, Pss_Anon and Pss_File (bytes) of the processes, and how many were read."""
    total = dict.fromkeys((*KEYS, "processes"), 0)
    for pid in pids:
        try:
            fields = parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
        except OSError:
            continue  # exited while we looked
        total["processes"] += 1
        for key in KEYS:
            total[key] += fields.get(key.title(), 0)  # "pss_anon" -> "Pss_Anon"
    return total


def in_mb(values: dict[str, int]) -> dict[str, float | int]:
    """Byte figures as MB with one decimal (a process count stays a count)."""
    return {k: v if k == "processes" else round(v / MB, 1) for k, v in values.items()}


@contextlib.contextmanager
def sampling(pids: Callable[[], list[int]], interval: float = 0.25) -> Iterator[dict[str, int]]:
    """The peaks of the summed RSS/PSS of `pids()`, sampled every `interval` s (at most 20,000 times) in a thread,
    with one sample before the block runs: an action faster than the first tick still has a peak."""
    peak, done = dict.fromkeys(KEYS, 0), threading.Event()

    def sample() -> None:
        now = process_memory(pids())
        peak.update({key: max(value, now[key]) for key, value in peak.items()})

    def run() -> None:
        for _ in range(20_000):
            if done.wait(interval):
                return
            sample()

    sample()
    thread = threading.Thread(target=run, name="memory-sampler", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join(timeout=10)


def stats(values: list[float], digits: int = 1) -> dict[str, float | int]:
    """Count, p50, p95, p99 (interpolated as numpy's default percentile), max and mean, rounded to `digits`."""
    if not values:
        return {"n": 0}
    cuts = statistics.quantiles(values * 2 if len(values) == 1 else values, n=100, method="inclusive")  # needs 2
    return {"n": len(values), **{f"p{q}": round(cuts[q - 1], digits) for q in (50, 95, 99)},
            "max": round(max(values), digits), "mean": round(statistics.fmean(values), digits)}
