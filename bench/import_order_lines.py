"""Benchmark: a line-level `import_orders` of the UCI Online Retail file, against a plain
psycopg COPY of the same lines.

Times, on PostgreSQL, with the customers, orders and products tables emptied first:

1. `import_order_lines` end to end (read the .csv.gz, validate, drop guests and duplicates,
   create customers, upsert products, COPY + upsert lines and orders, match cancellations);
2. the same import again: every line unchanged (the idempotent re-import path);
3. the reference: `COPY … FROM STDIN (FORMAT csv, HEADER)` of the same (decompressed) lines,
   streamed by psycopg into a table of eight text columns with no index or constraint.

It prints lines/s of each step, CPU seconds of this process, the ratio of step 1 to the
reference, the data size and the machine (cores, CPU model, load average: a shared machine's
PostgreSQL is slower for everyone).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench \\
        .venv/bin/python bench/import_order_lines.py [--path FILE.csv.gz]

Exit status 0 when the figures were measured, 1 when the counts are wrong, 2 when the
database is not PostgreSQL.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _machine import cpu_model  # noqa: E402
from _postgres import conninfo, database_settings, ensure_database  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")

DEFAULT_PATH = ROOT.parent / "shared" / "data" / "online_retail_uci352.csv.gz"
REFERENCE_TABLE = "bench_order_lines_copy_reference"
EXPECTED_SALE_LINES = 392_732  # the UCI file: see docs/importing.md


def reference_copy(config: dict[str, Any], path: Path) -> tuple[int, float]:
    """Seconds to COPY the file's lines into a bare table of text columns."""
    import psycopg

    with gzip.open(path, "rb") as handle:
        data = handle.read()
    columns = data.split(b"\n", 1)[0].decode().split(",")
    with psycopg.connect(**conninfo(config, config["NAME"])) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {REFERENCE_TABLE}")
        conn.execute(
            f"CREATE UNLOGGED TABLE {REFERENCE_TABLE} ("
            + ", ".join(f'"{c}" text' for c in columns)
            + ")"
        )
        started = time.perf_counter()
        with conn.cursor().copy(
            f"COPY {REFERENCE_TABLE} FROM STDIN WITH (FORMAT csv, HEADER)"
        ) as copy:
            copy.write(data)
        seconds = time.perf_counter() - started
        rows = conn.execute(f"SELECT count(*) FROM {REFERENCE_TABLE}").fetchone()[0]
        conn.execute(f"DROP TABLE {REFERENCE_TABLE}")
    return int(rows), seconds


def timed_import(path: Path) -> tuple[Any, float, float]:
    from customers.line_import import import_order_lines

    cpu, wall = time.process_time(), time.perf_counter()
    summary = import_order_lines(
        path=path, create_customers=True, currency="GBP", rejects_path=Path(os.devnull)
    )
    return summary, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args()
    config = database_settings("import_order_lines.py", "retention_bench")
    ensure_database(config)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE customers_customer, customers_product CASCADE")
    first, first_s, first_cpu = timed_import(args.path)
    again, again_s, again_cpu = timed_import(args.path)
    rows, reference_s = reference_copy(config, args.path)
    print(f"data: {args.path.name}, {first.rows:,} lines ({args.path.stat().st_size:,} bytes gz)")
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    for name, seconds, cpu in (
        ("import (empty tables)", first_s, first_cpu),
        ("import again (unchanged)", again_s, again_cpu),
        ("reference COPY", reference_s, None),
    ):
        cpu_text = f", {cpu:.1f} s CPU in this process" if cpu is not None else ""
        print(f"{name:26} {seconds:7.1f} s  {rows / seconds:10,.0f} lines/s{cpu_text}")
    print(f"ratio import / reference COPY: {reference_s / first_s:.3f} of the COPY rate")
    summary_print(
        [
            figure(
                "order lines import, empty tables",
                round(rows / first_s),
                "lines/s",
                reference=round(rows / reference_s),
                ratio=reference_s / first_s,
            ),
            figure(
                "order lines re-import, unchanged",
                round(rows / again_s),
                "lines/s",
                reference=round(rows / reference_s),
                ratio=reference_s / again_s,
            ),
        ],
        size=f"{args.path.name}, {first.rows:,} lines",
    )
    ok = first.created == EXPECTED_SALE_LINES and again.unchanged == EXPECTED_SALE_LINES
    if args.path == DEFAULT_PATH and not ok:
        print(f"wrong counts: created {first.created:,}, unchanged again {again.unchanged:,}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
