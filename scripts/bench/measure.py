"""Process-tree memory (RSS/PSS from smaps_rollup), page-cache dropping and latency statistics."""

from __future__ import annotations

import ctypes
import math
import os
import threading
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
MB = 1024 * 1024


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """The `Name: N kB` fields of /proc/<pid>/smaps_rollup, in bytes."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * 1024
    return fields


def parse_ppid(stat_text: str) -> int:
    """The parent pid from /proc/<pid>/stat text (the command name may hold spaces and parentheses)."""
    return int(stat_text[stat_text.rindex(")") + 2:].split()[1])


def parse_cpu_seconds(stat_text: str, ticks: int) -> float:
    """utime + stime (all threads of the process) from /proc/<pid>/stat text, in seconds."""
    fields = stat_text[stat_text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def tree_cpu_seconds(root: int) -> float:
    """CPU time used so far by the live processes of the tree (user + system)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in process_tree(root):
        try:
            total += parse_cpu_seconds((PROC / str(pid) / "stat").read_text(), ticks)
        except (OSError, ValueError):
            continue
    return round(total, 3)


def process_tree(root: int, proc: Path = PROC) -> list[int]:
    """`root` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            children.setdefault(parse_ppid((entry / "stat").read_text()), []).append(int(entry.name))
        except (OSError, ValueError):
            continue  # exited while we looked
    tree, todo = [], [root]
    while todo and len(tree) < 10_000:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_memory(root: int) -> dict[str, int]:
    """Summed Rss, Pss, Pss_Anon and Pss_File (bytes) over the process tree of `root`."""
    total = {"rss": 0, "pss": 0, "pss_anon": 0, "pss_file": 0, "processes": 0}
    for pid in process_tree(root):
        try:
            fields = parse_smaps_rollup((PROC / str(pid) / "smaps_rollup").read_text())
        except OSError:
            continue
        total["processes"] += 1
        for key, name in (("rss", "Rss"), ("pss", "Pss"), ("pss_anon", "Pss_Anon"), ("pss_file", "Pss_File")):
            total[key] += fields.get(name, 0)
    return total


class MemorySampler:
    """Samples the tree's summed RSS/PSS in a background thread and keeps the peaks."""

    def __init__(self, root: int, interval: float = 0.25, max_samples: int = 20_000) -> None:
        """Sample the tree of `root` every `interval` seconds, at most `max_samples` times."""
        self.root = root
        self.interval = interval
        self.max_samples = max_samples
        self.peak: dict[str, int] = {"rss": 0, "pss": 0, "pss_anon": 0, "pss_file": 0}
        self.samples = 0
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
        now = tree_memory(self.root)
        for key in self.peak:
            self.peak[key] = max(self.peak[key], now[key])
        self.samples += 1
        return now

    def _run(self) -> None:
        """The sampling loop."""
        while not self._stop.is_set() and self.samples < self.max_samples:
            self.sample()
            self._stop.wait(self.interval)


def iter_files(roots: Iterable[Path], min_size: int = 0) -> Iterable[Path]:
    """Regular files under the roots (symlinks not followed), at least `min_size` bytes."""
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                try:
                    if not path.is_symlink() and path.is_file() and path.stat().st_size >= min_size:
                        yield path
                except OSError:
                    continue


def drop_page_cache(roots: Iterable[Path]) -> int:
    """posix_fadvise(DONTNEED) every file under the roots; returns how many files were advised."""
    count = 0
    for path in iter_files(roots):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        finally:
            os.close(fd)
    return count


def resident_files(roots: Iterable[Path], min_size: int = 1 << 20) -> list[tuple[Path, int]] | None:
    """(file, bytes in the page cache) for the larger files under the roots (mincore), or None if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    found = []
    for path in iter_files(roots, min_size):
        size = path.stat().st_size
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, 0x1, 0x1, fd, 0)  # PROT_READ, MAP_SHARED
            if addr in (None, ctypes.c_void_p(-1).value):
                continue
            vec = ctypes.create_string_buffer((size + page - 1) // page)
            if libc.mincore(addr, size, vec) == 0:
                resident = sum(b & 1 for b in vec.raw) * page
                if resident:
                    found.append((path, resident))
            libc.munmap(addr, size)
        finally:
            os.close(fd)
    return found


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_ms(values: list[float]) -> dict[str, float | int]:
    """Count, p50, p95, max and mean of a list of milliseconds, rounded to 0.1 ms."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
            "max": round(max(values), 1), "mean": round(sum(values) / len(values), 1)}
