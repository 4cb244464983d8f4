"""Benchmark: `import_orders` against a plain psycopg COPY of the same rows.

Generates a deterministic CSV of orders (default 1,000,000 orders for 100,000 customers),
imports the customers, then times, on PostgreSQL:

1. `import_file(kind="orders")` end to end on an empty orders table
   (read + validate + resolve customers + COPY to a staging table + INSERT … ON CONFLICT);
2. the same import again: every row unchanged (the idempotent re-import path);
3. the reference: `COPY … FROM STDIN WITH (FORMAT csv, HEADER)` of the same file, streamed by
   psycopg into a regular table with the same column types and no index or constraint;
4. for scale, the floor of this schema: a COPY of the same rows (customer ids resolved) into
   a copy of the orders table with its five indexes, checks and deferred foreign key.

Goal (the issue): step 1 reaches at least one third of the COPY rate.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench \\
        .venv/bin/python bench/import_orders.py [--orders 1000000 --customers 100000]

The database is created when missing, migrated, and its customers and orders are truncated
first: point DATABASE_URL at a database made for benchmarks. Exit status 0 when the figures
were measured (whether or not the goal is met), 1 when an import's counts are wrong, 2 when the
database is not PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _machine import cpu_model  # noqa: E402
from _postgres import conninfo, database_settings, ensure_database  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")

GOAL_RATIO = 1 / 3
GENERATE_BLOCK = 100_000
SEED = 20240531
REFERENCE_TABLE = "bench_orders_copy_reference"
FLOOR_TABLE = "bench_orders_copy_floor"
ORDER_COLUMNS = (
    "external_id, customer_id, placed_at, amount, currency, status, item_count, "
    "discount_amount, category, created_at, updated_at"
)
REFERENCE_COLUMNS = """
    order_id varchar(64),
    customer_id varchar(64),
    placed_at timestamptz,
    amount numeric(12, 2),
    currency varchar(3),
    status varchar(16),
    item_count integer,
    discount_amount numeric(12, 2),
    category varchar(100)
"""


@dataclass
class Step:
    name: str
    rows: int
    seconds: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders to generate")
    parser.add_argument("--customers", type=int, default=100_000, help="customers to generate")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed of the data")
    parser.add_argument("--keep", type=Path, help="write the CSV files here and keep them")
    return parser.parse_args()


def generate(directory: Path, orders: int, customers: int, seed: int) -> tuple[Path, Path]:
    """Deterministic customers.csv and orders.csv (same seed → byte-identical files)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    width = max(len(str(customers)), 6)
    customer_ids = pd.Series(np.arange(1, customers + 1)).astype(str).str.zfill(width)
    customer_ids = "C" + customer_ids
    countries = np.array(["US", "GB", "DE", "FR", "NL", "ES", "IT", "CA"])
    zones = np.array(
        [
            "America/New_York",
            "Europe/London",
            "Europe/Berlin",
            "Europe/Paris",
            "Europe/Amsterdam",
            "Europe/Madrid",
            "Europe/Rome",
            "America/Toronto",
        ]
    )
    where = rng.integers(0, len(countries), customers)
    signup = np.datetime64("2019-01-01") + rng.integers(0, 4 * 365, customers).astype(
        "timedelta64[D]"
    )
    customers_frame = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "name": "Customer " + customer_ids.str[1:],
            "email": customer_ids.str.lower() + "@example.com",
            "country": countries[where],
            "time_zone": zones[where],
            "signup_date": np.datetime_as_string(signup, unit="D"),
        }
    )
    customers_path = directory / "customers.csv"
    customers_frame.to_csv(customers_path, index=False)

    # Orders in blocks, so generating a million rows does not set this process's peak memory.
    orders_path = directory / "orders.csv"
    start = np.datetime64("2022-01-01T00:00:00")
    statuses = np.array(["completed", "refunded", "cancelled"])
    currencies = np.array(["USD", "EUR", "GBP"])
    categories = np.array(["books", "music", "electronics", "garden", "toys", "fashion", "food"])
    keys = customer_ids.to_numpy()
    with orders_path.open("w", newline="") as handle:
        for first in range(0, orders, GENERATE_BLOCK):
            n = min(GENERATE_BLOCK, orders - first)
            seconds = rng.integers(0, 3 * 365 * 86_400, n).astype("timedelta64[s]")
            amount = np.round(rng.lognormal(3.5, 0.8, n), 2)
            discounted = rng.random(n) < 0.2
            discount = np.round(amount * rng.uniform(0.05, 0.3, n), 2)
            block = pd.DataFrame(
                {
                    "order_id": "O"
                    + pd.Series(np.arange(first + 1, first + n + 1)).astype(str).str.zfill(9),
                    "customer_id": keys[rng.integers(0, customers, n)],
                    "placed_at": np.strings.add(
                        np.datetime_as_string(start + seconds, unit="s"), "Z"
                    ),
                    "amount": amount,
                    "currency": rng.choice(currencies, n, p=[0.6, 0.3, 0.1]),
                    "status": rng.choice(statuses, n, p=[0.9, 0.06, 0.04]),
                    "item_count": rng.integers(1, 11, n),
                    "discount_amount": np.where(discounted, discount, 0.0),
                    "category": categories[rng.integers(0, len(categories), n)],
                }
            )
            block.to_csv(handle, index=False, header=first == 0, float_format="%.2f")
    return customers_path, orders_path


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def checkpoint() -> None:
    """Flush dirty pages first so one step does not pay for the previous step's writes."""
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError:  # not a superuser (or pg_checkpoint member): measure without it
        pass


def timed(name: str, rows: int, action: Callable[[], Any]) -> tuple[Step, Any]:
    checkpoint()
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    step = Step(name, rows, seconds, peak_rss_mb())
    print(f"  {name}: {rows:,} rows in {seconds:.2f} s ({step.rate:,.0f} rows/s)", flush=True)
    return step, result


def reference_copy(config: dict[str, Any], path: Path) -> tuple[int, float]:
    """Plain psycopg COPY of the CSV file into a regular table without index or constraint."""
    import psycopg

    with psycopg.connect(**conninfo(config, config["NAME"])) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {REFERENCE_TABLE}")
        conn.execute(f"CREATE TABLE {REFERENCE_TABLE} ({REFERENCE_COLUMNS})")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor:
            statement = f"COPY {REFERENCE_TABLE} FROM STDIN WITH (FORMAT csv, HEADER)"
            with cursor.copy(statement) as copy, path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    copy.write(block)
            rows = cursor.rowcount
        conn.commit()
        elapsed = time.perf_counter() - started
    return rows, elapsed


def floor_copy(config: dict[str, Any], directory: Path) -> tuple[int, float]:
    """COPY of the same rows, customers resolved, into a copy of the orders table with its
    indexes, checks and (deferred) foreign key: what any write into this schema costs at least.

    Reads the reference table, so it runs after `reference_copy`.
    """
    import psycopg

    from customers.models import Customer, Order

    orders, customers = Order._meta.db_table, Customer._meta.db_table
    rows_path = directory / "orders_resolved.copy"
    with psycopg.connect(**conninfo(config, config["NAME"])) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        conn.execute(f"CREATE TABLE {FLOOR_TABLE} (LIKE {orders} INCLUDING ALL)")
        conn.execute(
            f"ALTER TABLE {FLOOR_TABLE} ADD FOREIGN KEY (customer_id) "
            f"REFERENCES {customers} (id) DEFERRABLE INITIALLY DEFERRED"
        )
        export = (
            "COPY (SELECT r.order_id, c.id, r.placed_at, r.amount, r.currency, r.status, "
            "r.item_count, r.discount_amount, r.category, now(), now() "
            f"FROM {REFERENCE_TABLE} r JOIN {customers} c ON c.external_id = r.customer_id) "
            "TO STDOUT"
        )
        with (
            conn.cursor() as cursor,
            cursor.copy(export) as copy,
            rows_path.open("wb") as handle,
        ):
            for block in copy:
                handle.write(block)
        conn.commit()
        checkpoint()
        started = time.perf_counter()
        with conn.cursor() as cursor:
            statement = f"COPY {FLOOR_TABLE} ({ORDER_COLUMNS}) FROM STDIN"
            with cursor.copy(statement) as copy, rows_path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    copy.write(block)
            rows = cursor.rowcount
        conn.commit()  # the deferred foreign-key checks run here
        elapsed = time.perf_counter() - started
        conn.execute(f"DROP TABLE {FLOOR_TABLE}")
        conn.commit()
    rows_path.unlink()
    return rows, elapsed


def machine() -> dict[str, str]:
    from django.db import connection

    model = cpu_model()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "postgresql": version,
        "python": platform.python_version(),
    }


def relation_mb(table: str) -> float:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [table])
        return cursor.fetchone()[0] / 1e6


@dataclass
class Figures:
    steps: list[Step]
    problems: list[str]
    csv_mb: float
    orders_mb: float
    reference_mb: float
    load_before: float
    load_after: float


def import_steps(args: argparse.Namespace, customers_path: Path, orders_path: Path) -> Figures:
    """Time the three imports of the service, each checked for the counts it must report."""
    from customers.importers import import_file

    def run(kind: str, path: Path) -> Any:
        return import_file(kind=kind, path=path, progress=False)

    figures = Figures([], [], orders_path.stat().st_size / 1e6, 0.0, 0.0, os.getloadavg()[0], 0.0)
    checks = [
        ("customers import", args.customers, "customers", customers_path, "created"),
        ("(1) orders import, empty table", args.orders, "orders", orders_path, "created"),
        ("(2) orders re-import, unchanged", args.orders, "orders", orders_path, "unchanged"),
    ]
    for name, rows, kind, path, expected in checks:
        step, summary = timed(name, rows, lambda kind=kind, path=path: run(kind, path))
        figures.steps.append(step)
        if getattr(summary, expected) != rows or summary.rejected:
            figures.problems.append(f"{name}: {summary.to_dict()}")
    return figures


def reference_steps(config: dict[str, Any], directory: Path, orders_path: Path) -> list[Step]:
    """(3) a plain psycopg COPY of the file and (4) a COPY into a copy of the orders table."""
    checkpoint()
    copied, seconds = reference_copy(config, orders_path)
    reference = Step("(3) reference: psycopg COPY", copied, seconds, peak_rss_mb())
    print(f"  {reference.name}: {copied:,} rows in {seconds:.2f} s ({reference.rate:,.0f} rows/s)")
    copied_floor, seconds = floor_copy(config, directory)
    floor = Step("(4) floor: COPY into orders schema", copied_floor, seconds, peak_rss_mb())
    print(f"  {floor.name}: {copied_floor:,} rows in {seconds:.2f} s ({floor.rate:,.0f} rows/s)")
    return [reference, floor]


def report(args: argparse.Namespace, figures: Figures) -> None:
    first, reference, floor = figures.steps[1], figures.steps[3], figures.steps[4]
    info = machine()
    print()
    header = (
        f"{'step':<36} {'rows':>11} {'seconds':>8} {'rows/s':>11} {'vs COPY':>8} {'peak RSS':>9}"
    )
    print(header)
    print("-" * len(header))
    for step in figures.steps:
        ratio = step.rate / reference.rate if reference.rate else 0.0
        print(
            f"{step.name:<36} {step.rows:>11,} {step.seconds:>8.2f} {step.rate:>11,.0f} "
            f"{ratio:>8.2f} {step.peak_rss_mb:>6.0f} MB"
        )
    print()
    print(
        f"data: {args.orders:,} orders, {args.customers:,} customers; orders CSV "
        f"{figures.csv_mb:.1f} MB; orders table {figures.orders_mb:.1f} MB with indexes, "
        f"reference table {figures.reference_mb:.1f} MB"
    )
    print(
        f"machine: {info['cores']} cores, {info['cpu']}; PostgreSQL {info['postgresql']}; "
        f"Python {info['python']}"
    )
    print(
        f"load average (1 min) {figures.load_before:.1f} before the timed steps, "
        f"{figures.load_after:.1f} after ({os.cpu_count()} cores: other work on the machine "
        "skews the figures)"
    )
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    print(
        "(4) is a COPY of the same rows into a copy of the orders table (same indexes, checks "
        "and foreign key): the least any import into this schema can cost. "
        f"(1) runs at {first.rate / floor.rate if floor.rate else 0:.2f} of it."
    )
    ratio = first.rate / reference.rate if reference.rate else 0.0
    verdict = "PASS" if ratio >= GOAL_RATIO else "FAIL"
    print(
        f"goal: import ≥ 1/3 of the COPY rate: {verdict} "
        f"({first.rate:,.0f} vs {reference.rate:,.0f} rows/s = {ratio:.2f})"
    )
    again = figures.steps[2]
    summary_print(
        [
            figure(
                "orders import, empty table",
                round(first.rate),
                "rows/s",
                goal="≥ 1/3 of the COPY rate at 1M orders",
                reference=round(reference.rate),
                ratio=ratio,
                passed=ratio >= GOAL_RATIO if args.orders >= 1_000_000 else None,
            ),
            figure(
                "orders re-import, unchanged",
                round(again.rate),
                "rows/s",
                reference=round(reference.rate),
                ratio=again.rate / reference.rate if reference.rate else None,
            ),
            figure(
                "peak memory (this process)",
                round(peak_rss_mb()),
                "MB",
                goal="< 4096 MB",
                passed=peak_rss_mb() < 4096,
            ),
        ],
        size=f"{args.orders:,} orders, {args.customers:,} customers",
    )


def main() -> int:
    args = parse_args()
    if args.keep:
        args.keep = args.keep.resolve()
    # Celery's Django fix-up puts the working directory first on sys.path: run from the repo
    # this script belongs to, so its code is what gets measured.
    os.chdir(ROOT)
    config = database_settings("import_orders.py", "retention_bench")
    ensure_database(config)

    import django

    django.setup()

    from django.core.management import call_command
    from django.db import connection

    from customers.models import Customer, Order

    print(f"database {config['NAME']} on {config.get('HOST') or 'localhost'}: migrating …")
    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in (Order, Customer))
        # CASCADE also empties whatever references customers (scores, interventions…).
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")

    with tempfile.TemporaryDirectory(prefix="bench-orders-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        print(f"generating {args.orders:,} orders for {args.customers:,} customers …", flush=True)
        started = time.perf_counter()
        customers_path, orders_path = generate(directory, args.orders, args.customers, args.seed)
        print(f"  generated in {time.perf_counter() - started:.1f} s: {orders_path}")
        print("timing …", flush=True)
        figures = import_steps(args, customers_path, orders_path)
        references = reference_steps(config, directory, orders_path)
        figures.steps += references
        if references[0].rows != args.orders:
            figures.problems.append(
                f"reference COPY copied {references[0].rows:,} rows, expected {args.orders:,}"
            )
        figures.load_after = os.getloadavg()[0]
        figures.orders_mb = relation_mb(Order._meta.db_table)
        figures.reference_mb = relation_mb(REFERENCE_TABLE)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {REFERENCE_TABLE}")
    report(args, figures)
    for problem in figures.problems:
        print(f"WRONG COUNTS: {problem}", file=sys.stderr)
    return 1 if figures.problems else 0


if __name__ == "__main__":
    sys.exit(main())
