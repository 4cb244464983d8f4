"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import platform
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def python_speed(additions: int = 3_000_000) -> float:
    """Seconds this machine's Python takes for `additions` integer additions in a loop, the
    best of three runs: printed beside a benchmark's figures so that seconds measured on two
    machines can be compared (two 2-core machines of this project differed by 2x). Ratios to a
    reference measured in the same run need no such help."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(additions):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def cpu_counters() -> tuple[int, int] | None:
    """The machine's CPU time so far, (all of it, stolen), in clock ticks from /proc/stat; None
    where there is no such file. Stolen time is what a virtual machine's CPUs were ready to run
    and the hypervisor gave to other guests."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    # user nice system idle iowait irq softirq steal (guest time is counted in user already).
    ticks = [int(value) for value in fields[1:9]]
    return sum(ticks), ticks[7]


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time stolen between two `cpu_counters` readings: a step
    timed while neighbours took a tenth of the CPUs ran up to a tenth slower for it, which is
    why a benchmark prints it beside a spread of figures."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


def unstolen_seconds(seconds: float, steal: float | None) -> float | None:
    """The seconds a step would have taken with none of the machine's CPU stolen, if it used
    every CPU throughout (a scoring run's worker processes and database do): its seconds times
    the share not stolen. An estimate, printed beside the measured figure, never instead."""
    return None if steal is None else seconds * (1.0 - steal)
