"""cgroup v1 sandboxes for the benchmark: a CPU quota and a memory limit that a child joins before exec."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000
UNLIMITED = -1


def controller_path(proc_cgroup: str, controller: str, root: Path = CGROUP_ROOT) -> Path | None:
    """The directory of `controller` for the process whose /proc/<pid>/cgroup text is given (v1 only)."""
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3 or not parts[1]:
            continue  # blank lines and the cgroup v2 entry "0::/path"
        controllers = parts[1].split(",")
        if controller not in controllers:
            continue
        mount = root / parts[1]
        if not mount.is_dir() and (root / controller).is_dir():
            mount = root / controller  # "cpu,cpuacct" is usually also reachable as "cpu"
        return mount / parts[2].lstrip("/")
    return None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse `key value` lines (memory.stat, memory.oom_control, cpu.stat) into integers."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def _read(path: Path) -> str:
    """Text of a cgroup or proc file."""
    return path.read_text()


def _write(path: Path, value: str | int) -> None:
    """Write one value to a cgroup control file."""
    path.write_text(f"{value}\n")


@dataclass
class Sandbox:
    """One benchmark run's cgroups: a CPU quota (µs per 100 ms, -1 = none) and a memory limit (bytes or None)."""

    name: str
    cpu_quota_us: int | None
    memory_limit: int | None
    cpu_dir: Path | None = None
    memory_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    root: Path = CGROUP_ROOT

    @property
    def active(self) -> bool:
        """True when every requested limit is in force."""
        cpu_ok = self.cpu_quota_us is None or self.cpu_dir is not None
        return cpu_ok and self.memory_dir is not None

    def create(self, proc_cgroup: str | None = None) -> bool:
        """Create the cgroups (memory always, for accounting; cpu when a quota is asked); False if not writable."""
        text = proc_cgroup if proc_cgroup is not None else _read(Path("/proc/self/cgroup"))
        memory_parent = controller_path(text, "memory", self.root)
        cpu_parent = controller_path(text, "cpu", self.root)
        try:
            if memory_parent is None or not (memory_parent / "cgroup.procs").exists():
                raise OSError("no cgroup v1 memory controller")
            self.memory_dir = self._mkdir(memory_parent)
            if self.memory_limit is not None:
                _write(self.memory_dir / "memory.limit_in_bytes", self.memory_limit)
                memsw = self.memory_dir / "memory.memsw.limit_in_bytes"
                if memsw.exists():  # the swap limit must not be below the memory limit: set it second
                    _write(memsw, self.memory_limit)
            if self.cpu_quota_us is not None:
                if cpu_parent is None or not (cpu_parent / "cgroup.procs").exists():
                    raise OSError("no cgroup v1 cpu controller")
                self.cpu_dir = self._mkdir(cpu_parent)
                _write(self.cpu_dir / "cpu.cfs_period_us", CFS_PERIOD_US)
                _write(self.cpu_dir / "cpu.cfs_quota_us", self.cpu_quota_us)
        except OSError as exc:
            self.notes.append(f"cgroups not usable ({exc}): this run has no limits and no cgroup accounting")
            self.remove()
            return False
        return True

    def _mkdir(self, parent: Path) -> Path:
        """Create this run's cgroup under `parent` (an existing one is an error)."""
        path = parent / self.name
        path.mkdir(exist_ok=False)
        return path

    def join(self) -> None:
        """Move the calling process into the sandbox (used as a Popen preexec_fn, i.e. before exec)."""
        pid = str(os.getpid())
        for directory in (self.memory_dir, self.cpu_dir):
            if directory is not None:
                _write(directory / "cgroup.procs", pid)

    def set_cpu_quota(self, quota_us: int) -> None:
        """Change the CPU quota of a running sandbox (-1 lifts it)."""
        if self.cpu_dir is not None:
            _write(self.cpu_dir / "cpu.cfs_quota_us", quota_us)

    def reset_peak(self) -> bool:
        """Reset memory.max_usage_in_bytes (so the next reading is the peak since now); False if not possible."""
        if self.memory_dir is None:
            return False
        try:
            _write(self.memory_dir / "memory.max_usage_in_bytes", 0)
        except OSError:
            return False
        return True

    def pids(self) -> list[int]:
        """Processes currently in the memory cgroup."""
        if self.memory_dir is None:
            return []
        return [int(p) for p in _read(self.memory_dir / "cgroup.procs").split()]

    def memory_stats(self) -> dict[str, int]:
        """Peak/current usage, failcnt, OOM counters and memory.stat of the memory cgroup."""
        if self.memory_dir is None:
            return {}
        d = self.memory_dir
        stats = {
            "max_usage_bytes": int(_read(d / "memory.max_usage_in_bytes")),
            "usage_bytes": int(_read(d / "memory.usage_in_bytes")),
            "failcnt": int(_read(d / "memory.failcnt")),
        }
        if (d / "memory.memsw.failcnt").exists():  # with memsw limited too, its counter may be the one that trips
            stats["memsw_failcnt"] = int(_read(d / "memory.memsw.failcnt"))
            stats["memsw_max_usage_bytes"] = int(_read(d / "memory.memsw.max_usage_in_bytes"))
        stats.update({f"oom_control.{k}": v for k, v in parse_flat_keyed(_read(d / "memory.oom_control")).items()})
        stat = parse_flat_keyed(_read(d / "memory.stat"))
        wanted = ("rss", "cache", "mapped_file", "pgmajfault", "total_rss", "total_cache")
        stats.update({f"stat.{k}": stat[k] for k in wanted if k in stat})
        return stats

    def cpu_stats(self) -> dict[str, int]:
        """cpu.stat of the cpu cgroup (periods, throttled periods, throttled time in ns)."""
        if self.cpu_dir is None:
            return {}
        return parse_flat_keyed(_read(self.cpu_dir / "cpu.stat"))

    def remove(self, wait_seconds: float = 10.0) -> None:
        """Remove the cgroups once their processes are gone (bounded wait)."""
        deadline = time.monotonic() + wait_seconds
        for directory in (self.cpu_dir, self.memory_dir):
            if directory is None or not directory.exists():
                continue
            for _ in range(200):
                try:
                    directory.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.notes.append(f"could not remove {directory}")
                        break
                    time.sleep(0.05)
        self.cpu_dir = self.memory_dir = None
