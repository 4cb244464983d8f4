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
