"""Memory (RSS/PSS from smaps_rollup) and CPU seconds of a server's processes, and latency statistics."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
MB = 1024 * 1024


def stat_fields(text: str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    return text[text.rindex(")") + 2:].split()


def group_members(pgid: int, proc: Path = PROC) -> list[int]:
    """Live (non-zombie) processes of the process group `pgid`."""
    found = []
    for entry in proc.iterdir():
        try:
            fields = stat_fields((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # not a process, or exited while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int], proc: Path = PROC) -> float:
    """utime + stime of the live processes (all their threads), in seconds (clock-tick resolution)."""
    ticks = 0
    for pid in pids:
        try:
            fields = stat_fields((proc / str(pid) / "stat").read_text())
        except (OSError, ValueError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """The `Name: N kB` fields of /proc/<pid>/smaps_rollup, in bytes."""
    pairs = ((name, rest.split()) for name, _, rest in (line.partition(":") for line in text.splitlines()))
    return {name.strip(): int(p[0]) * 1024 for name, p in pairs if len(p) == 2 and p[1] == "kB" and p[0].isdigit()}


def process_memory(pids: list[int], proc: Path = PROC) -> dict[str, int]:
    """Summed Rss, Pss, Pss_Anon and Pss_File (bytes) of the processes, and how many were read."""
    total = {"rss": 0, "pss": 0, "pss_anon": 0, "pss_file": 0, "processes": 0}
    for pid in pids:
        try:
            fields = parse_smaps_rollup((proc / str(pid) / "smaps_rollup").read_text())
        except OSError:
            continue
        total["processes"] += 1
        for key in ("rss", "pss", "pss_anon", "pss_file"):
            total[key] += fields.get(key.title(), 0)  # "pss_anon" -> "Pss_Anon"
    return total


def in_mb(values: dict[str, int]) -> dict[str, float | int]:
    """Byte figures as MB with one decimal (a process count stays a count)."""
    return {k: v if k == "processes" else round(v / MB, 1) for k, v in values.items()}


class MemorySampler:
    """Samples the summed RSS/PSS of `pids()` in a background thread and keeps the peaks."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.25) -> None:
        """Sample every `interval` seconds (at most 20,000 times)."""
        self.pids, self.interval, self.samples = pids, interval, 0
        self.peak = {"rss": 0, "pss": 0, "pss_anon": 0, "pss_file": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        """Start sampling."""
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop sampling (bounded wait for the thread)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def sample(self) -> dict[str, int]:
        """Take one sample now and update the peaks."""
        now = process_memory(self.pids())
        self.peak = {key: max(value, now[key]) for key, value in self.peak.items()}
        self.samples += 1
        return now

    def _run(self) -> None:
        while not self._stop.is_set() and self.samples < 20_000:
            self.sample()
            self._stop.wait(self.interval)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly between order statistics (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def stats(values: list[float], digits: int = 1) -> dict[str, float | int]:
    """Count, p50, p95, p99, max and mean, rounded to `digits`."""
    if not values:
        return {"n": 0}
    return {"n": len(values), **{f"p{q}": round(percentile(values, q), digits) for q in (50, 95, 99)},
            "max": round(max(values), digits), "mean": round(sum(values) / len(values), digits)}
