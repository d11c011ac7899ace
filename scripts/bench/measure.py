"""Memory (RSS/PSS from smaps_rollup) of a server's processes, and latency statistics."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from pathlib import Path

MB = 1024 * 1024
KEYS = ("rss", "pss", "pss_anon", "pss_file")


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


class MemorySampler(threading.Thread):
    """Samples the summed RSS/PSS of `pids()` every `interval` s (at most 20,000 times) and keeps the peaks."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.25) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.pids, self.interval, self.peak, self.done = pids, interval, dict.fromkeys(KEYS, 0), threading.Event()

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(timeout=10)

    def sample(self) -> dict[str, int]:
        """Take one sample now and update the peaks."""
        now = process_memory(self.pids())
        self.peak = {key: max(value, now[key]) for key, value in self.peak.items()}
        return now

    def run(self) -> None:
        """Sample until stopped."""
        for _ in range(20_000):
            self.sample()
            if self.done.wait(self.interval):
                return


def stats(values: list[float], digits: int = 1) -> dict[str, float | int]:
    """Count, p50, p95, p99 (interpolated as numpy's default percentile), max and mean, rounded to `digits`."""
    if not values:
        return {"n": 0}
    cuts = statistics.quantiles(values * 2 if len(values) == 1 else values, n=100, method="inclusive")  # needs 2
    return {"n": len(values), **{f"p{q}": round(cuts[q - 1], digits) for q in (50, 95, 99)},
            "max": round(max(values), digits), "mean": round(statistics.fmean(values), digits)}
