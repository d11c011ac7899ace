"""Memory side of the tabular benchmark: a cold page cache before each start, and MB figures of a run."""

from __future__ import annotations

import sys
import sysconfig
import time
from pathlib import Path

from scripts.bench.cgroups import Sandbox
from scripts.bench.measure import MB, PROC, MemorySampler, drop_page_cache, resident_files

REPO = Path(__file__).resolve().parents[2]


def cache_roots(*extra: Path) -> list[Path]:
    """Folders whose page cache is dropped before a server starts: venv, stdlib, source, models, extras."""
    roots = [Path(sys.prefix) / "lib", Path(sysconfig.get_paths()["stdlib"]), REPO / "src", REPO / "scripts",
             REPO / "artifacts" / "models", *extra]
    return [root for root in dict.fromkeys(roots) if root.is_dir()]


def drop_cache(roots: list[Path], attempts: int = 4) -> dict:
    """Drop the page cache of the roots, again while >1 MB stays (a server that just exited may still map it)."""
    began = time.monotonic()
    advised, still, tries = 0, [], 0
    while tries < attempts:
        tries += 1
        advised = drop_page_cache(roots)
        still = sorted(resident_files(roots) or [], key=lambda item: item[1], reverse=True)
        if sum(size for _, size in still) < MB:
            break
        time.sleep(1.0)
    out = {"files_advised": advised, "attempts": tries, "seconds": round(time.monotonic() - began, 1),
           "resident_mb_after_drop": round(sum(size for _, size in still) / MB, 1),
           "largest_still_cached": {str(path): round(size / MB, 1) for path, size in still[:4]}}
    if still and still[0][1] >= MB:
        out["largest_mapped_by"] = mapped_by(still[0][0])
    return out


def mapped_by(path: Path, proc: Path = PROC) -> list[str]:
    """`pid command` of the processes that map `path` (why its pages could not be dropped)."""
    found = []
    for entry in proc.iterdir():
        try:
            if entry.name.isdigit() and str(path) in (entry / "maps").read_text():
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name} {command[:120]}")
        except OSError:
            continue
    return found[:10]


def memory_mb(values: dict[str, int]) -> dict[str, float | int]:
    """tree_memory()/sampler bytes as MB with one decimal (the process count stays a count)."""
    return {k: v if k == "processes" else round(v / MB, 1) for k, v in values.items()}


def sandbox_memory(sandbox: Sandbox, sampler: MemorySampler, after: dict) -> dict:
    """Peaks of the sampled tree PSS/RSS, the figures after exercise, and the cgroup counters (MB)."""
    stats = sandbox.memory_stats()
    peak = memory_mb(sampler.peak)
    return {"peak_pss_mb": peak["pss"], "peak_rss_mb": peak["rss"], "peak_pss_anon_mb": peak["pss_anon"],
            "after_exercise": after, "samples": sampler.samples,
            "cgroup_peak_mb": round(stats["max_usage_bytes"] / MB, 1) if stats else None,
            "cgroup_failcnt": stats.get("failcnt"), "oom_kill": stats.get("oom_control.oom_kill"),
            "cgroup_rss_mb_now": round(stats.get("stat.rss", 0) / MB, 1) if stats else None,
            "cgroup_cache_mb_now": round(stats.get("stat.cache", 0) / MB, 1) if stats else None}
