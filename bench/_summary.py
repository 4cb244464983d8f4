"""The one line every benchmark prints for `make bench` (bench/run_all.py): its headline figures.

    from _summary import figure, summary_print
    summary_print([figure("import rate", 41_000, "rows/s", goal="≥ 1/3 of COPY",
                          reference=120_000, ratio=0.34, passed=0.34 >= 1 / 3)],
                  size="1,000,000 orders")

prints `BENCH_SUMMARY [{"figure", "value", "unit", "goal", "reference", "ratio", "pass",
"size", "machine"}, …]`. "pass" is None when the goal is set at another size than the one run
(shown "n/a (size)"): fixed costs do not shrink with the data, so a scaled goal would be
unfair both ways.
"""

from __future__ import annotations

import json
import os
from typing import Any

from _machine import cpu_model

PREFIX = "BENCH_SUMMARY "


def figure(
    name: str,
    value: float | int | None,
    unit: str,
    *,
    goal: str | None = None,
    reference: float | int | None = None,
    ratio: float | None = None,
    passed: bool | None = None,
) -> dict[str, Any]:
    """One row of the summary table. `reference` is measured in the same run, in `unit`."""
    return {
        "figure": name,
        "value": value,
        "unit": unit,
        "goal": goal,
        "reference": reference,
        "ratio": None if ratio is None else round(float(ratio), 2),
        "pass": None if passed is None else bool(passed),
    }


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{cpu_model()}, {os.cpu_count()} cores, load {load:.1f}"


def summary_print(rows: list[dict[str, Any]], *, size: str) -> None:
    """Print the summary line (last, after the benchmark's own report)."""
    stamped = [{**row, "size": size, "machine": machine()} for row in rows]
    print(PREFIX + json.dumps(stamped), flush=True)
