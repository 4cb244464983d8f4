"""Benchmark: one campaign cycle for 100,000 eligible scored customers on PostgreSQL.

Measures campaign_dispatch (rules incl. customer value and an attribute condition, holdout,
suppression with consent and contact history, budget, quiet hours, coupons, intervention rows;
channel delivery excluded) against a reference measured in the same run: a psycopg COPY of the
same intervention rows into the interventions table (with its indexes, checks and foreign keys,
rolled back). Goal: < 30 s and ≤ 5x the reference. A COPY into a bare table without indexes
or keys is printed too.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench_dispatch \
        python bench/dispatch.py
"""

from __future__ import annotations

import io
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _postgres import ensure_database_url  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/retention_bench_dispatch"
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "100000"))
GOAL_SECONDS = 30.0
GOAL_RATIO = 5.0


@dataclass(frozen=True)
class Timings:
    dispatch: float  # campaign_dispatch, one cycle
    reference: float  # COPY of the same rows into the interventions table (rolled back)
    bare: float  # COPY of the same rows into a bare table without indexes or keys


def setup_django() -> None:
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith("postgres"):
        sys.exit("bench/dispatch.py needs PostgreSQL: DATABASE_URL=postgres://...")
    ensure_database_url(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def prepare_customers(now: datetime) -> None:
    """CUSTOMERS scored customers (COPY), one completed order each, 5% email consent revoked."""
    from django.db import connection

    print(f"Preparing {CUSTOMERS:,} scored customers ...", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_response, campaigns_callbacktask, campaigns_coupon, "
            "campaigns_intervention, campaigns_campaigncycle, campaigns_rule, campaigns_campaign, "
            "campaigns_offer, campaigns_messagetemplate, customers_consent, customers_order, "
            "customers_event, customers_customer RESTART IDENTITY CASCADE"
        )
        tiers = ["low", "medium", "high", "critical"]
        zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
        buffer = io.StringIO()
        stamp = now.isoformat()
        for i in range(CUSTOMERS):
            p = ((i * 7919) % 1000) / 1000
            tier = tiers[min(int(p / 0.25), 3)]
            contract = "Month-to-month" if i % 3 else "One year"
            buffer.write(
                f"b{i:07d}\tCustomer {i}\tc{i}@example.com\t+1555{i:07d}\t{zones[i % 5]}\t"
                f'{{"Contract": "{contract}"}}\t{"t" if i % 97 == 0 else "f"}\t{p}\t{tier}\t'
                f"{stamp}\tbench\t{stamp}\t{stamp}\t\t\n"
            )
        with cursor.cursor.copy(
            "COPY customers_customer (external_id, name, email, phone, time_zone, attributes, "
            "erased, churn_probability, risk_tier, scored_at, score_model_version, created_at, "
            "updated_at, country, signup_date) FROM STDIN"
        ) as copy:
            copy.write(buffer.getvalue().replace("\t\t\n", "\t\t\\N\n"))
        cursor.execute(
            "INSERT INTO customers_order (external_id, customer_id, placed_at, amount, currency, "
            "status, item_count, discount_amount, category, created_at, updated_at) "
            "SELECT 'o' || id, id, %s::timestamptz - (id %% 300) * interval '1 day', "
            "(id %% 50) * 10, 'USD', 'completed', 1, 0, '', now(), now() "
            "FROM customers_customer",
            [now],
        )
        cursor.execute(
            "INSERT INTO customers_consent (customer_id, channel, status, recorded_at, source, "
            "updated_at) SELECT id, 'email', 'revoked', now(), 'bench', now() "
            "FROM customers_customer WHERE id % 20 = 0"
        )
        cursor.execute("ANALYZE")


def bench_campaign() -> Any:
    """A campaign whose three rules (value, attribute, catch-all) take every customer."""
    from campaigns.models import Campaign, MessageTemplate, Offer, Rule

    offer = Offer.objects.create(
        name="15% off", kind="percent_coupon", value=15, validity_days=30, unit_cost=5
    )
    template = MessageTemplate.objects.create(
        name="email", channel="email", subject="{{ offer.description }}", body="{{ coupon_code }}"
    )
    campaign = Campaign.objects.create(
        name="Bench", status="active", control_percentage=10, salt="bench"
    )
    # Every customer matches one rule: 100,000 eligible.
    Rule.objects.create(
        campaign=campaign,
        position=1,
        name="valuable critical",
        tiers=["critical"],
        min_value=200,
        channel="callback",
        offer=offer,
    )
    Rule.objects.create(
        campaign=campaign,
        position=2,
        name="monthly at risk",
        tiers=["high", "critical"],
        attribute_conditions=[{"field": "Contract", "operator": "eq", "value": "Month-to-month"}],
        channel="email",
        offer=offer,
        template=template,
    )
    Rule.objects.create(
        campaign=campaign, position=3, name="everyone else", channel="coupon", offer=offer
    )
    return campaign


def copy_timings(campaign: Any, dispatch_seconds: float) -> tuple[Timings, tuple[str, ...]]:
    """The references: COPY the cycle's intervention rows into a bare table of the same shape
    and into the interventions table itself (rolled back); plus the tables' sizes."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_intervention_copy")
        cursor.execute(
            "CREATE TABLE bench_intervention_copy (LIKE campaigns_intervention INCLUDING DEFAULTS)"
        )
        out = io.BytesIO()
        with cursor.cursor.copy("COPY campaigns_intervention TO STDOUT") as copy:
            for data in copy:
                out.write(data)
        payload = out.getvalue()
        started = time.perf_counter()
        with cursor.cursor.copy("COPY bench_intervention_copy FROM STDIN") as copy:
            copy.write(payload)
        bare_seconds = time.perf_counter() - started
        # The same COPY into the interventions table itself: its indexes, checks and foreign
        # keys (checked at once, not at commit) are a cost any cycle must pay. Rolled back.
        with transaction.atomic():
            cursor.execute(
                "DELETE FROM campaigns_intervention WHERE campaign_id = %s", [campaign.pk]
            )
            started = time.perf_counter()
            with cursor.cursor.copy("COPY campaigns_intervention FROM STDIN") as copy:
                copy.write(payload)
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            reference_seconds = time.perf_counter() - started
            transaction.set_rollback(True)
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('campaigns_intervention')), "
            "pg_size_pretty(pg_total_relation_size('customers_customer')), "
            "pg_size_pretty(pg_total_relation_size('customers_order')), version()"
        )
        sizes = tuple(cursor.fetchone())
        cursor.execute("DROP TABLE bench_intervention_copy")
    return Timings(dispatch_seconds, reference_seconds, bare_seconds), sizes


def report(summary: Any, rows: int, timings: Timings, sizes: tuple[str, ...]) -> None:
    size_interventions, size_customers, size_orders, version = sizes
    ratio = timings.dispatch / timings.reference
    passed = timings.dispatch < GOAL_SECONDS and ratio <= GOAL_RATIO
    print()
    print(
        f"machine     {platform.machine()} · {os.cpu_count()} cores · Python "
        f"{platform.python_version()} · {version.split(',')[0]}"
    )
    print(
        f"data        {CUSTOMERS:,} customers ({size_customers}), {CUSTOMERS:,} orders "
        f"({size_orders}); interventions table {size_interventions}"
    )
    print(
        f"cycle       {summary.eligible:,} eligible · {summary.treatment:,} treatment · "
        f"{summary.control:,} control · {summary.coupons:,} coupons · suppressed "
        f"{summary.suppressed}"
    )
    print(f"{'measure':<44}{'seconds':>10}{'rows/s':>12}")
    print(
        f"{'campaign_dispatch (one cycle)':<44}{timings.dispatch:>10.2f}"
        f"{rows / timings.dispatch:>12,.0f}"
    )
    print(
        f"{'reference: COPY into the interventions table':<44}{timings.reference:>10.2f}"
        f"{rows / timings.reference:>12,.0f}"
    )
    print(
        f"{'(COPY into a bare table, no indexes or keys)':<44}{timings.bare:>10.2f}"
        f"{rows / timings.bare:>12,.0f}   ratio {timings.dispatch / timings.bare:.1f}x"
    )
    print(
        f"ratio {ratio:.1f}x (goal ≤ {GOAL_RATIO:g}x) · time goal < {GOAL_SECONDS:g} s → "
        f"{'PASS' if passed else 'FAIL'}"
    )
    summary_print(
        [
            figure(
                "campaign_dispatch, one cycle",
                round(timings.dispatch, 2),
                "s",
                goal=f"< {GOAL_SECONDS:g} s at 100,000 eligible",
                passed=timings.dispatch < GOAL_SECONDS if CUSTOMERS >= 100_000 else None,
            ),
            figure(
                "  vs COPY into the interventions table",
                round(timings.dispatch, 2),
                "s",
                goal=f"≤ {GOAL_RATIO:g}× the reference at 100,000",
                reference=round(timings.reference, 2),
                ratio=ratio,
                passed=ratio <= GOAL_RATIO if CUSTOMERS >= 100_000 else None,
            ),
        ],
        size=f"{CUSTOMERS:,} customers, {rows:,} interventions",
    )


def main() -> None:
    setup_django()
    from campaigns.models import Intervention
    from campaigns.services.dispatch import campaign_dispatch

    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    prepare_customers(now)
    campaign = bench_campaign()
    started = time.perf_counter()
    summary = campaign_dispatch(campaign=campaign, now=now)
    dispatch_seconds = time.perf_counter() - started
    rows = Intervention.objects.filter(campaign=campaign).count()
    timings, sizes = copy_timings(campaign, dispatch_seconds)
    report(summary, rows, timings, sizes)


if __name__ == "__main__":
    main()
