"""What keeping earlier versions costs an import (customers.versions; docs/scoring.md).

Times, in one process and alternating so machine load hits both alike, the same chunk of
order rows written by `services.orders_upsert` (with versioning: a read of the chunk's current
state before, one after, a COPY of the changed rows) and by `bulk_upsert` alone (the
reference: the write without versioning), for a fresh chunk, an unchanged re-import and a
re-import that refunds a tenth of the orders. Customers likewise (attribute changes).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench \\
        .venv/bin/python bench/asof_versions.py [--rows 20000] [--repeats 3]

The database's customers and orders are deleted first: point DATABASE_URL at a database made
for benchmarks.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")

import django
import numpy as np
import pandas as pd
from _machine import cpu_model

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from common.db.bulk import bulk_upsert  # noqa: E402
from customers import services  # noqa: E402
from customers.models import (  # noqa: E402
    Customer,
    CustomerAttributeVersion,
    Order,
    OrderVersion,
)


def _timed(write, frame: pd.DataFrame) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with transaction.atomic():
        write(frame)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    n = args.rows
    rng = np.random.default_rng(0)
    print("# bench/asof_versions.py")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}")
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} (shared machine: figures are noisy)")
    results: dict[str, dict[str, list[float]]] = {}
    for repeat in range(args.repeats):
        for versioned in (True, False) if repeat % 2 == 0 else (False, True):
            OrderVersion.objects.all().delete()
            CustomerAttributeVersion.objects.all().delete()
            Order.objects.all().delete()
            Customer.objects.all().delete()
            customers = pd.DataFrame(
                {
                    "external_id": [f"c{i}" for i in range(n)],
                    "attributes": [
                        {"plan": "basic", "age": int(a)} for a in rng.integers(18, 80, n)
                    ],
                }
            )
            write_c = (
                (lambda f: services.customers_upsert(records=f))
                if versioned
                else (lambda f: bulk_upsert(Customer, f, json_merge=("attributes",)))
            )
            ids = None
            steps: dict[str, float] = {}
            steps["customers, new"] = _timed(write_c, customers)
            changed = customers.assign(
                attributes=[{"plan": "pro" if i % 10 == 0 else "basic"} for i in range(n)]
            )
            steps["customers, a tenth changed"] = _timed(write_c, changed)
            ids = dict(Customer.objects.values_list("external_id", "pk"))
            orders = pd.DataFrame(
                {
                    "external_id": [f"o{i}" for i in range(n)],
                    "customer_id": [ids[f"c{i}"] for i in range(n)],
                    "placed_at": pd.Timestamp("2024-01-01", tz="UTC")
                    + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s"),
                    "amount": rng.uniform(5, 200, n).round(2),
                    "status": "completed",
                }
            )
            write_o = (
                (lambda f: services.orders_upsert(records=f))
                if versioned
                else (lambda f: bulk_upsert(Order, f))
            )
            steps["orders, new"] = _timed(write_o, orders)
            steps["orders, unchanged"] = _timed(write_o, orders)
            refunded = orders.assign(
                status=np.where(np.arange(n) % 10 == 0, "refunded", "completed")
            )
            steps["orders, a tenth refunded"] = _timed(write_o, refunded)
            key = "versioned" if versioned else "reference"
            for step, seconds in steps.items():
                results.setdefault(step, {}).setdefault(key, []).append(seconds)
    print(f"rows per step: {n:,}; median of {args.repeats} alternating repeats")
    print(f"{'step':<28} {'versioned s':>12} {'reference s':>12} {'ratio':>7}")
    for step, pair in results.items():
        v, r = statistics.median(pair["versioned"]), statistics.median(pair["reference"])
        print(f"{step:<28} {v:>12.3f} {r:>12.3f} {v / r:>7.2f}")


if __name__ == "__main__":
    main()
