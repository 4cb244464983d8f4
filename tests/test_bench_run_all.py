"""`make bench`'s runner: one summary table from the benchmarks' BENCH_SUMMARY lines.

Runs the real bench/run_all.py on the one benchmark that needs no database (logmask.py), so
the whole path is exercised: a benchmark process, its summary line, the table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_all(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_summary_table_holds_the_benchmarks_figures() -> None:
    result = run_all("--only", "logmask")
    assert result.returncode == 0, result.stderr
    report, table = result.stdout.split("===== summary (quick sizes)")
    # The benchmark's own report stays above the table; its summary line is consumed.
    assert "logmask benchmark: 20,000 lines per case" in report
    assert "BENCH_SUMMARY" not in result.stdout
    lines = table.strip().splitlines()
    assert "cores; load average" in lines[0]
    assert lines[1].split() == [
        "bench", "figure", "data", "size", "value", "goal", "reference", "ratio", "result",
    ]  # fmt: skip
    rows = [line for line in lines[3:] if "masked log line" in line]
    assert len(rows) == 3, table
    for row in rows:
        assert "20,000 lines per case" in row
        assert " µs " in row
        # No goal for this benchmark: the result column says so, neither PASS nor FAIL.
        assert row.rstrip().endswith("—")
        ratio = float(row.split()[-2])
        assert ratio > 0
    assert any("wall time of the benchmark" in line for line in lines)


def test_an_unknown_benchmark_is_named() -> None:
    result = run_all("--only", "logmask,nosuch")
    assert result.returncode == 2
    assert "no benchmark named nosuch" in result.stderr
