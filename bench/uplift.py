"""Benchmark: the uplift report of one campaign with 1,000,000 interventions and 5,000,000
orders inside the attribution window, on PostgreSQL.

Measures campaigns.measurement.snapshots.campaign_uplift (the per-intervention outcome join, the
cell and curve aggregates, the breakdowns per rule, tier, channel and cycle, the statistics) and
uplift_report_compute (the same plus storing the snapshot), against a reference measured in the
same run: one SQL aggregate over the same tables (interventions LEFT JOIN orders in the window,
GROUP BY arm). Goal: the report in under 10 s.

Data is generated with COPY (customers, interventions, coupons, orders, responses) into a
scratch database that is created and migrated here.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench_uplift python bench/uplift.py
    BENCH_INTERVENTIONS=100000 BENCH_ORDERS=500000 python bench/uplift.py   # a quick run
"""

from __future__ import annotations

import io
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _postgres import ensure_database_url  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/retention_bench_uplift"
INTERVENTIONS = int(os.environ.get("BENCH_INTERVENTIONS", "1000000"))
ORDERS = int(os.environ.get("BENCH_ORDERS", "5000000"))
GOAL_SECONDS = 10.0
# Rows per COPY chunk: ~40 MB of CSV text at a time, so generation never holds 5M rows of text.
COPY_CHUNK = 500_000
WINDOW_DAYS = 30
CYCLES = 4


def copy_frame(cursor: Any, table: str, frame: pd.DataFrame) -> None:
    columns = ", ".join(frame.columns)
    for start in range(0, len(frame), COPY_CHUNK):
        buffer = io.StringIO()
        # \N marks NULL, so an empty field stays an empty string (the text columns' default).
        frame.iloc[start : start + COPY_CHUNK].to_csv(
            buffer, header=False, index=False, na_rep="\\N"
        )
        sql = f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
        with cursor.cursor.copy(sql) as copy:
            copy.write(buffer.getvalue())


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith("postgres"):
        sys.exit("bench/uplift.py needs PostgreSQL: DATABASE_URL=postgres://...")
    ensure_database_url(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    from campaigns.models import Campaign

    if os.environ.get("BENCH_REUSE") and _reusable(n=INTERVENTIONS, m=ORDERS):
        # Timing again on the data of an earlier run (generation takes minutes).
        measure(campaign=Campaign.objects.get(name="Bench"), generation=0.0)
        return
    start = datetime(2026, 1, 5, 12, tzinfo=UTC)
    n, m = INTERVENTIONS, ORDERS
    generation = time.perf_counter()
    print(f"Generating {n:,} customers and interventions, {m:,} orders (COPY) ...", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_upliftreport, campaigns_response, campaigns_callbacktask, "
            "campaigns_coupon, campaigns_intervention, campaigns_campaigncycle, campaigns_rule, "
            "campaigns_campaign, campaigns_offer, campaigns_messagetemplate, customers_consent, "
            "customers_order, customers_event, customers_customer RESTART IDENTITY CASCADE"
        )
    setup = _campaign_setup(start=start)
    # One generator drawn in a fixed order (interventions, coupons, orders, responses), so every
    # run generates the same data.
    rng = np.random.default_rng(5)
    stamp = start.isoformat()
    with connection.cursor() as cursor:
        _copy_customers(cursor, n=n, stamp=stamp)
        cycle_index, assigned = _copy_interventions(
            cursor, rng, setup=setup, n=n, start=start, stamp=stamp
        )
        _copy_coupons(cursor, rng, offer=setup["offer"], start=start, stamp=stamp)
        _copy_orders(cursor, rng, cycle_index=cycle_index, n=n, m=m, start=start, stamp=stamp)
        _copy_responses(cursor, rng, assigned=assigned, n=n, stamp=stamp)
        cursor.execute("ANALYZE")
    generation = time.perf_counter() - generation
    print(f"Generated in {generation:.1f} s", flush=True)
    measure(campaign=setup["campaign"], generation=generation)


def _campaign_setup(*, start: datetime) -> dict[str, Any]:
    """The campaign with three rules (critical email, high coupon, medium email) and cycles."""
    from campaigns.models import Campaign, CampaignCycle, MessageTemplate, Offer, Rule

    offer = Offer.objects.create(name="15% off", kind="percent_coupon", value=15, unit_cost=5)
    template = MessageTemplate.objects.create(name="email", channel="email", body="Hi")
    campaign = Campaign.objects.create(
        name="Bench", status="active", attribution_window_days=WINDOW_DAYS, salt="bench"
    )
    rules = [
        Rule.objects.create(
            campaign=campaign,
            position=1,
            name="critical email",
            tiers=["critical"],
            channel="email",
            offer=offer,
            template=template,
        ),
        Rule.objects.create(
            campaign=campaign,
            position=2,
            name="high coupon",
            tiers=["high"],
            channel="coupon",
            offer=offer,
        ),
        Rule.objects.create(
            campaign=campaign,
            position=3,
            name="medium email",
            tiers=["medium"],
            channel="email",
            template=template,
        ),
    ]
    cycles = [
        CampaignCycle.objects.create(
            campaign=campaign, cycle_key=f"c{k}", started_at=start + timedelta(days=k)
        )
        for k in range(CYCLES)
    ]
    return {"offer": offer, "campaign": campaign, "rules": rules, "cycles": cycles}


def _copy_customers(cursor: Any, *, n: int, stamp: str) -> None:
    copy_frame(
        cursor,
        "customers_customer",
        pd.DataFrame(
            {
                "external_id": pd.Series(np.arange(1, n + 1)).map("b{:07d}".format),
                "name": "",
                "email": "",
                "phone": "",
                "time_zone": "UTC",
                "country": "",
                "attributes": "{}",
                "erased": "f",
                "risk_tier": "",
                "score_model_version": "",
                "created_at": stamp,
                "updated_at": stamp,
            }
        ),
    )


def _copy_interventions(
    cursor: Any,
    rng: np.random.Generator,
    *,
    setup: dict[str, Any],
    n: int,
    start: datetime,
    stamp: str,
) -> tuple[np.ndarray, pd.Series]:
    """One intervention per customer: a rule, 10% control, a cycle; (cycle index, assigned)."""
    rule_index = rng.choice(3, n, p=[0.3, 0.3, 0.4])
    control = rng.random(n) < 0.10
    cycle_index = rng.integers(0, CYCLES, n)
    assigned = pd.Series(start + pd.to_timedelta(cycle_index, unit="D"))
    channel = np.array(["email", "coupon", "email"])[rule_index]
    status = np.where(control, "held_out", "sent")
    copy_frame(
        cursor,
        "campaigns_intervention",
        pd.DataFrame(
            {
                "campaign_id": setup["campaign"].pk,
                "cycle_id": np.array([c.pk for c in setup["cycles"]])[cycle_index],
                "rule_id": np.array([r.pk for r in setup["rules"]])[rule_index],
                "customer_id": np.arange(1, n + 1),
                "arm": np.where(control, "control", "treatment"),
                "channel": channel,
                "churn_probability": rng.random(n).round(4),
                "risk_tier": np.array(["critical", "high", "medium"])[rule_index],
                "model_version": "m1",
                "customer_value": 0,
                "offer_cost": 5,
                "status": status,
                "reason": "",
                "detail": "",
                "attempts": 1,
                "provider_message_id": "",
                "created_at": assigned.map(datetime.isoformat),
                "updated_at": stamp,
            }
        ),
    )
    return cycle_index, assigned


def _copy_coupons(
    cursor: Any, rng: np.random.Generator, *, offer: Any, start: datetime, stamp: str
) -> None:
    """Coupons for the treated customers of the coupon rule; a fifth of them redeemed."""
    cursor.execute(
        "SELECT id, customer_id FROM campaigns_intervention "
        "WHERE channel = 'coupon' AND arm = 'treatment' ORDER BY id"
    )
    holders = np.array(cursor.fetchall())
    redeemed = rng.random(len(holders)) < 0.2
    copy_frame(
        cursor,
        "campaigns_coupon",
        pd.DataFrame(
            {
                "code": pd.Series(np.arange(len(holders))).map("BENCH-{:08d}".format),
                "customer_id": holders[:, 1],
                "offer_id": offer.pk,
                "intervention_id": holders[:, 0],
                "kind": "percent_coupon",
                "value": 15,
                "expires_at": (start + timedelta(days=60)).isoformat(),
                "created_at": stamp,
                "redeemed_at": np.where(redeemed, (start + timedelta(days=3)).isoformat(), None),
                "redeemed_order_external_id": "",
                "redeemed_amount": np.where(redeemed, "40.00", None),
                "redeemed_discount": np.where(redeemed, "6.00", None),
            }
        ),
    )


def _copy_orders(
    cursor: Any,
    rng: np.random.Generator,
    *,
    cycle_index: np.ndarray,
    n: int,
    m: int,
    start: datetime,
    stamp: str,
) -> None:
    """`m` orders inside the window of their customer's assignment (a few refunded)."""
    owner = rng.integers(1, n + 1, m)
    offset = rng.uniform(0, WINDOW_DAYS - 0.01, m)
    placed = start + pd.to_timedelta(cycle_index[owner - 1] + offset, unit="D")
    copy_frame(
        cursor,
        "customers_order",
        pd.DataFrame(
            {
                "external_id": pd.Series(np.arange(m)).map("o{:09d}".format),
                "customer_id": owner,
                "placed_at": pd.Series(placed).dt.strftime("%Y-%m-%d %H:%M:%S+00"),
                "amount": rng.lognormal(np.log(35), 0.6, m).round(2),
                "currency": "USD",
                "status": np.where(rng.random(m) < 0.95, "completed", "refunded"),
                "item_count": 1,
                "discount_amount": 0,
                "category": "",
                "created_at": stamp,
                "updated_at": stamp,
            }
        ),
    )


def _copy_responses(
    cursor: Any, rng: np.random.Generator, *, assigned: pd.Series, n: int, stamp: str
) -> None:
    """100,000 converted responses (at most one per intervention), both arms."""
    some = rng.choice(n, min(100_000, n), replace=False)
    copy_frame(
        cursor,
        "campaigns_response",
        pd.DataFrame(
            {
                "intervention_id": some + 1,
                "kind": "converted",
                "occurred_at": (assigned.iloc[some] + pd.Timedelta(days=2))
                .map(datetime.isoformat)
                .to_numpy(),
                "order_external_id": "",
                "idempotency_key": pd.Series(some).map("r{}".format),
                "payload": "{}",
                "created_at": stamp,
            }
        ),
    )


def _reusable(*, n: int, m: int) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM campaigns_intervention")
        interventions = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM customers_order")
        orders = cursor.fetchone()[0]
    return bool(interventions == n and orders == m)


def measure(*, campaign: Any, generation: float) -> None:
    from django.db import connection

    from campaigns.measurement.snapshots import campaign_uplift, uplift_report_compute

    start = datetime(2026, 1, 5, 12, tzinfo=UTC)
    n = INTERVENTIONS
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM campaigns_coupon")
        coupons = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM campaigns_response")
        responses = cursor.fetchone()[0]

    reference_sql = f"""
        SELECT i.arm, COUNT(*), SUM(o.amount)
        FROM campaigns_intervention i
        LEFT JOIN customers_order o
               ON o.customer_id = i.customer_id AND o.status = 'completed'
              AND o.placed_at >= i.created_at
              AND o.placed_at < i.created_at + {WINDOW_DAYS} * INTERVAL '1 day'
        WHERE i.campaign_id = %s GROUP BY i.arm
    """

    def reference() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(reference_sql, [campaign.pk])
            return cursor.fetchall()

    now = start + timedelta(days=60)
    load_before = os.getloadavg()[0]
    reference_runs = [timed(reference)[0] for _ in range(2)]
    report_runs = []
    report: Any = None
    for _ in range(2):
        seconds, report = timed(lambda: campaign_uplift(campaign=campaign, now=now))
        report_runs.append(seconds)
    snapshot_seconds, _report = timed(lambda: uplift_report_compute(campaign=campaign, now=now))
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(",")[0]
        cursor.execute("SELECT COUNT(*) FROM customers_order")
        orders_total = cursor.fetchone()[0]
    load_after = os.getloadavg()[0]
    best, ref = min(report_runs), min(reference_runs)
    overall = report.overall
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; {version}"
    )
    print(
        f"data: {n:,} interventions ({CYCLES} cycles, 3 rules, 3 tiers, 2 channels), "
        f"{orders_total:,} orders in the window, {coupons:,} coupons, {responses:,} responses"
    )
    print(
        f"result: treatment {overall.treatment.n:,} rate "
        f"{overall.treatment.rate:.4f}, control {overall.control.n:,} rate "
        f"{overall.control.rate:.4f}; difference {overall.retention.difference:+.4f}"
    )
    print()
    print(
        f"load average (1 min) {load_before:.1f} before the timed steps, {load_after:.1f} after "
        "(other processes on this machine share its cores)"
    )
    print(f"{'step':<58}{'seconds':>10}")
    print(
        f"{'reference: one SQL aggregate (join in window, by arm)':<58}"
        f"{ref:>10.2f}   runs: {', '.join(f'{s:.2f}' for s in reference_runs)}"
    )
    print(
        f"{'campaign_uplift (report figures)':<58}{best:>10.2f}   runs: "
        f"{', '.join(f'{s:.2f}' for s in report_runs)}"
    )
    print(f"{'uplift_report_compute (figures + snapshot row)':<58}{snapshot_seconds:>10.2f}")
    print(f"{'ratio report / reference':<58}{best / ref:>10.2f}x")
    verdict = "PASS" if max(report_runs) < GOAL_SECONDS else "FAIL"
    print(f"goal: report < {GOAL_SECONDS:.0f} s → {verdict} (slowest run {max(report_runs):.2f} s)")
    summary_print(
        [
            figure(
                "uplift report (campaign_uplift), slowest of 2",
                round(max(report_runs), 2),
                "s",
                goal=f"< {GOAL_SECONDS:.0f} s at 1M interventions",
                reference=round(ref, 2),
                ratio=max(report_runs) / ref,
                passed=max(report_runs) < GOAL_SECONDS if n >= 1_000_000 else None,
            ),
            figure("uplift_report_compute (+ snapshot row)", round(snapshot_seconds, 2), "s"),
        ],
        size=f"{n:,} interventions, {orders_total:,} orders",
    )


if __name__ == "__main__":
    main()
