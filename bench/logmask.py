"""Benchmark: what the personal-data mask (common/logmask.py) adds to each log line.

Formats LINES records through a StreamHandler writing to memory, with and without
PersonalDataMaskFilter, in the same run: the reference is the unfiltered handler. Three kinds of
line: a plain one (no address, no number), one with an email and a phone number in its
arguments, and one carrying a database error's traceback (the exception text is masked too).

    python bench/logmask.py
    BENCH_LINES=20000 python bench/logmask.py   # a quick run
"""

from __future__ import annotations

import io
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _machine import cpu_model  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

from common.logmask import PersonalDataMaskFilter  # noqa: E402

LINES = int(os.environ.get("BENCH_LINES", "100000"))


def _records() -> dict[str, logging.LogRecord]:
    def record(msg: str, args: tuple[object, ...], exc: bool = False) -> logging.LogRecord:
        exc_info = None
        if exc:
            try:
                raise ValueError(
                    'duplicate key value violates unique constraint "contact_email_key"\n'
                    "DETAIL:  Key (email)=(jane.doe@example.com) already exists."
                )
            except ValueError:
                exc_info = sys.exc_info()
        return logging.LogRecord("bench", logging.WARNING, __file__, 1, msg, args, exc_info)

    return {
        "plain line": record("Relay: %d sent, %d deferred in %.1f s", (412, 3, 1.25)),
        "email + phone in args": record(
            "Delivery to %s failed; SMS %s queued", ("jane.doe@example.com", "+33 6 12 34 56 78")
        ),
        "database error traceback": record("Import failed at line %d", (7,), exc=True),
    }


def _seconds(record: logging.LogRecord, masked: bool) -> float:
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if masked:
        handler.addFilter(PersonalDataMaskFilter())
    start = time.perf_counter()
    for _ in range(LINES):
        # A fresh copy each time: the filter rewrites the record it is given.
        copy = logging.makeLogRecord(record.__dict__)
        handler.handle(copy)
    return time.perf_counter() - start


def main() -> None:
    print(f"logmask benchmark: {LINES:,} lines per case")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'line':<28}{'plain µs':>10}{'masked µs':>11}{'ratio':>8}")
    rows = []
    for name, record in _records().items():
        plain = _seconds(record, masked=False)
        masked = _seconds(record, masked=True)
        per_line = 1e6 / LINES
        print(
            f"{name:<28}{plain * per_line:>10.1f}{masked * per_line:>11.1f}{masked / plain:>8.2f}"
        )
        rows.append(
            figure(
                f"masked log line: {name}",
                round(masked * per_line, 1),
                "µs",
                reference=round(plain * per_line, 1),
                ratio=masked / plain,
            )
        )
    summary_print(rows, size=f"{LINES:,} lines per case")


if __name__ == "__main__":
    main()
