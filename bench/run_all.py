"""Run every benchmark in bench/ and print ONE summary table: figure, value, goal, reference
measured in the same run, ratio, PASS/FAIL.

    make bench                 # every benchmark at a size that fits in a few minutes
    make bench SIZE=full       # the full sizes (1M customers / 10M orders: hours on 2 cores)
    .venv/bin/python bench/run_all.py --only cycle,logmask

A benchmark reports its figures to this table by printing lines
`BENCH_SUMMARY [{"figure", "value", "unit", "goal", "reference", "ratio", "pass"}, …]`
(bench/cycle.py does). "pass" is null for a figure whose goal is set at another size (shown
"n/a (size)"). A benchmark that prints none yet gets one row with its exit status and seconds,
and its own output stays above the table. Each runs in its own process with the
caller's DATABASE_URL and REDIS_URL (most need PostgreSQL; cycle.py needs Redis too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PREFIX = "BENCH_SUMMARY "


@dataclass(frozen=True)
class Bench:
    name: str
    quick: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)
    quick_env: dict[str, str] = field(default_factory=dict)


# Quick sizes: about a tenth of the full ones (or the benchmark's own quick mode).
BENCHES = [
    Bench("logmask", quick_env={"BENCH_LINES": "20000"}),
    Bench("import_orders", quick=["--orders", "100000", "--customers", "10000"]),
    Bench("import_order_lines"),
    Bench("dispatch", quick_env={"BENCH_CUSTOMERS": "20000"}),
    Bench("uplift", quick_env={"BENCH_INTERVENTIONS": "100000", "BENCH_ORDERS": "500000"}),
    Bench("scoring", quick=["--customers", "100000", "--orders", "1000000"]),
    Bench("recommendations", quick=["--size", "small"]),
    Bench("model_quality", quick=["--quick"]),
    Bench("cycle", quick=["--customers", "20000", "--orders", "200000"]),
    Bench("api_load", quick=["--seconds", "10"]),
]


def run(bench: Bench, *, full: bool) -> tuple[list[dict[str, Any]], int, float]:
    args = bench.full if full else bench.quick
    env = {**os.environ, **({} if full else bench.quick_env)}
    command = [sys.executable, str(BENCH / f"{bench.name}.py"), *args]
    print(f"\n===== {bench.name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=BENCH.parent, env=env, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    rows: list[dict[str, Any]] = []
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(PREFIX):
            rows += json.loads(line.removeprefix(PREFIX))
        else:
            print(line, end="", flush=True)
    code = process.wait()
    return rows, code, time.perf_counter() - started


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["quick", "full"], default="quick")
    parser.add_argument("--only", help="comma list of benchmark names")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    table: list[list[str]] = []
    failed = False
    for bench in BENCHES:
        if wanted and bench.name not in wanted:
            continue
        rows, code, seconds = run(bench, full=args.size == "full")
        for row in rows:
            verdict = {True: "PASS", False: "FAIL", None: "n/a (size)"}[row.get("pass")]
            failed |= row.get("pass") is False
            value = f"{cell(row.get('value'))} {row.get('unit', '')}".strip()
            table.append(
                [
                    bench.name,
                    row["figure"],
                    value,
                    cell(row.get("goal")),
                    cell(row.get("reference")),
                    cell(row.get("ratio")),
                    verdict,
                ]
            )
        if not rows:
            verdict = "ran" if code == 0 else f"FAIL (exit {code})"
            failed |= code != 0
            figure = "no summary line yet: its figures are printed above"
            table.append([bench.name, figure, f"{seconds:,.0f} s", "—", "—", "—", verdict])
        elif code != 0:
            failed = True
            table.append([bench.name, "exit status", str(code), "0", "—", "—", "FAIL"])
    headers = ["bench", "figure", "value", "goal", "reference", "ratio", "result"]
    widths = [max(len(r[i]) for r in [headers, *table]) for i in range(len(headers))]
    print(f"\n===== summary ({args.size} sizes; a shared machine makes timings noisy)")
    for row in [headers, ["-" * w for w in widths], *table]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
