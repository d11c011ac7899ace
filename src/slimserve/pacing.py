"""Leave part of every CPU period to the event loop: predictions pace themselves below the container's quota.

At 0.1 vCPU the kernel (CFS) gives the container 10 ms of CPU per 100 ms period; once that is spent every
thread stops until the next period, the event loop included, so a probe or a 503 that needs 0.1 ms waits up
to 90 ms. Predictions wait here, before they start, while the process has used more than `share` of its
quota (a token bucket over the process's CPU time), so a period rarely runs dry and the loop answers at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

PREDICTION_NICE = 10
EPSILON = 1e-6  # a microsecond of CPU: below it a deficit is float round-off, not a reason to wait


def lower_priority() -> None:
    """Run this thread at nice +PREDICTION_NICE: under a 0.1 vCPU quota the loop (accepting, shedding, probes:
    ~0.1-0.2 ms each) then runs first whenever it has work, and predictions get every cycle it does not use."""
    with contextlib.suppress(OSError):  # not permitted here: run at normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREDICTION_NICE)


class CpuPacer:
    """A token bucket of CPU-seconds: refilled at `cpus × share` per second, at most one period's worth."""

    def __init__(self, cpus: float, share: float, period: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, cpu: Callable[[], float] = time.process_time) -> None:
        self.rate = cpus * share
        self.capacity = self.rate * period
        self.clock, self.cpu = clock, cpu
        self.tokens, self.last_wall, self.last_cpu = self.capacity, clock(), cpu()
        self.cost = 0.0  # CPU of one prediction cycle (moving average): paid for before it starts

    def delay(self, new_cycle: bool = True) -> float:
        """Seconds to wait before the next prediction may start (0 when the budget allows it now).

        `new_cycle`: the CPU spent since the last call was one prediction cycle (not a re-check after a wait).
        """
        now, used = self.clock(), self.cpu()
        spent = used - self.last_cpu
        self.tokens = min(self.capacity, self.tokens + (now - self.last_wall) * self.rate) - spent
        self.last_wall, self.last_cpu = now, used
        if new_cycle and spent > 0:
            self.cost = spent if self.cost == 0 else 0.8 * self.cost + 0.2 * spent
        # Waiting for the next prediction's cost (not just for a positive balance) keeps a period from holding
        # a full budget plus one more prediction.
        need = min(self.cost, self.capacity)
        return 0.0 if self.tokens >= need - EPSILON else (need - self.tokens) / self.rate

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block until the process has the next prediction's CPU within its share of the quota."""
        pause = self.delay()
        while pause > 0:
            sleep(pause)
            pause = self.delay(new_cycle=False)


def cgroup_cpus(proc_cgroup: str | None = None, root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (0.1 for 10 ms per 100 ms), or None when unlimited."""
    try:
        text = Path("/proc/self/cgroup").read_text() if proc_cgroup is None else proc_cgroup
    except OSError:
        return None
    for line in text.splitlines():
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        relative = path.strip().lstrip("/")
        if controllers == "":  # cgroup v2: "max 100000" or "10000 100000"
            candidates = [(root / relative / "cpu.max", None)]
        elif "cpu" in controllers.split(","):  # cgroup v1
            base = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
            candidates = [(b / relative / "cpu.cfs_quota_us", b / relative / "cpu.cfs_period_us") for b in base]
        else:
            continue
        for quota_file, period_file in candidates:
            try:
                if period_file is None:
                    quota, period = quota_file.read_text().split()[:2]
                else:
                    quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
            except (OSError, ValueError):
                continue
            if quota in ("max", "-1") or int(quota) <= 0:
                return None
            return int(quota) / int(period)
    return None
