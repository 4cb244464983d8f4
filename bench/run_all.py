"""Run every benchmark in bench/ and print ONE summary table: figure, value, goal, reference
measured in the same run, ratio, PASS/FAIL.

    make bench                 # every benchmark at a size that fits in a few minutes
    make bench SIZE=full       # the full sizes (1M customers / 10M orders: hours on 2 cores)
    .venv/bin/python bench/run_all.py --only cycle,logmask

A benchmark reports its headline figures to this table with one line
`BENCH_SUMMARY [{"figure", "value", "unit", "goal", "reference", "ratio", "pass", "size"}, …]`
printed by bench/_summary.py. "pass" is null for a figure whose goal is set at another size
(shown "n/a (size)"). A benchmark that prints none (it crashed) gets one row with its exit
status and seconds; its own output stays above the table.

Each benchmark runs in its own process with the caller's REDIS_URL (scoring.py and cycle.py
need Redis) and its OWN PostgreSQL database: the server of DATABASE_URL (default
postgres://postgres@127.0.0.1:5432), database `<BENCH_DB_PREFIX>_<bench>` (default prefix
`retention_bench`), created when missing. The benchmarks empty their tables: never point the
prefix at a database that matters.
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
sys.path.insert(0, str(BENCH))

from _machine import cpu_model  # noqa: E402
from _summary import PREFIX  # noqa: E402

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Bench:
    name: str
    quick: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)
    quick_env: dict[str, str] = field(default_factory=dict)
    full_env: dict[str, str] = field(default_factory=dict)


# Quick sizes: what fits in a few minutes in all on 2 cores (goals set at the full size are
# then reported "n/a (size)"); full sizes are each benchmark's defaults (the issues' sizes).
BENCHES = [
    Bench("logmask", quick_env={"BENCH_LINES": "20000"}),
    Bench("reasons", quick=["--rows", "500"]),
    # Learning curves of transfer (docs/transfer.md): two sizes, three seeds when quick.
    Bench("transfer", quick=["--seeds", "3", "--sizes", "100,500"]),
    Bench("import_orders", quick=["--orders", "100000", "--customers", "10000"]),
    Bench("import_order_lines"),
    Bench("dispatch", quick_env={"BENCH_CUSTOMERS": "10000"}),
    Bench("push", quick_env={"BENCH_MESSAGES": "500"}),
    Bench("uplift", quick_env={"BENCH_INTERVENTIONS": "50000", "BENCH_ORDERS": "250000"}),
    Bench("uplift_policy", quick_env={"BENCH_CUSTOMERS": "100000"}),
    Bench("uplift_targeting", quick_env={"BENCH_CUSTOMERS": "5000"}),
    Bench("uplift_models", quick=["--train", "20000", "--score", "100000"]),
    Bench(
        "scoring",
        # Three runs: the issue asks for the spread of the ratio to the reference.
        quick=[
            *["--customers", "10000", "--orders", "100000"],
            *["--train-customers", "5000", "--repeat", "3"],
        ],
        full=["--repeat", "3"],
    ),
    Bench("recommendations", quick=["--size", "small"]),
    # One cheap candidate, one seed: the targets are judged only at the full protocol.
    Bench("model_quality", quick=["--quick", "--candidates", "lr_balanced"]),
    Bench("cycle", quick=["--customers", "5000", "--orders", "50000"]),
    Bench("api_load", quick=["--seconds", "10"], full=["--seconds", "60"]),
    Bench(
        "realtime",
        quick=[*["--customers", "5000", "--orders", "50000", "--train-customers", "3000"]],
        full=["--customers", "1000000", "--orders", "10000000"],
    ),
]


def run(bench: Bench, *, full: bool) -> tuple[list[dict[str, Any]], int, float]:
    args = bench.full if full else bench.quick
    env = {**os.environ, **(bench.full_env if full else bench.quick_env)}
    env["DATABASE_URL"] = database_url(bench.name)
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


def database_url(name: str) -> str:
    """The server of DATABASE_URL (PostgreSQL; the local one by default), this bench's own
    database `<BENCH_DB_PREFIX>_<name>`."""
    from urllib.parse import urlsplit, urlunsplit

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = DEFAULT_SERVER
    prefix = os.environ.get("BENCH_DB_PREFIX", "retention_bench")
    return urlunsplit(urlsplit(url)._replace(path=f"/{prefix}_{name}"))


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["quick", "full"], default="quick")
    parser.add_argument("--only", help="comma list of benchmark names")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    unknown = (wanted or set()) - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"no benchmark named {', '.join(sorted(unknown))}")
    table: list[list[str]] = []
    failed = False
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    for bench in BENCHES:
        if wanted and bench.name not in wanted:
            continue
        rows, code, seconds = run(bench, full=args.size == "full")
        for row in rows:
            verdict = {True: "PASS", False: "FAIL", None: "n/a (size)"}[row.get("pass")]
            if row.get("goal") is None:
                verdict = "—"
            failed |= row.get("pass") is False
            value = f"{cell(row.get('value'))} {row.get('unit', '')}".strip()
            table.append(
                [
                    bench.name,
                    row["figure"],
                    cell(row.get("size")),
                    value,
                    cell(row.get("goal")),
                    cell(row.get("reference")),
                    cell(row.get("ratio")),
                    verdict,
                ]
            )
        if not rows:
            failed = True
            figure = "no summary line: see its output above"
            table.append(
                [bench.name, figure, "—", f"{seconds:,.0f} s", "—", "—", "—", f"FAIL (exit {code})"]
            )
        elif code != 0:
            failed = True
            table.append([bench.name, "exit status", "—", str(code), "0", "—", "—", "FAIL"])
        table.append([bench.name, "wall time of the benchmark", "", f"{seconds:,.0f} s"] + [""] * 4)
    total = time.perf_counter() - started
    headers = ["bench", "figure", "data size", "value", "goal", "reference", "ratio", "result"]
    widths = [max(len(r[i]) for r in [headers, *table]) for i in range(len(headers))]
    print(
        f"\n===== summary ({args.size} sizes) — {cpu_model()}, {os.cpu_count()} cores; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"{total / 60:,.1f} min in all. A shared machine makes timings noisy."
    )
    for line in [headers, ["-" * w for w in widths], *table]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
