"""cgroup v1 sandboxes: a CPU quota and a memory limit that a server joins before exec, and their counters."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000  # a quota of one period is exactly one full core
TENTH_VCPU = 10_000
UNLIMITED = -1
ENVELOPE_MEMORY = 256 << 20


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
