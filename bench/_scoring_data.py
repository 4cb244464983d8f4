"""bench/scoring.py's data: deterministic customers and orders written to PostgreSQL, the
tables cleared between steps, and the model trained on a sample (none of it timed)."""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from _postgres import conninfo

SEED = 20240607
AS_OF = "2025-01-01T00:00:00+00:00"  # the scoring cutoff; orders end here
HISTORY_START = "2022-01-01"
HORIZON_DAYS = 90
GENERATE_BLOCK = 500_000
REFERENCE_TABLE = "bench_scores_reference"
META_TABLE = "bench_scoring_data"
# The order statistics last night's run left (scoring.models.OrderStatistics), put back before
# every timed step, so each one scores a night: last night's statistics, a day gone by.
LAST_NIGHT_STATISTICS = "bench_order_statistics_last_night"
PLANS = ("basic", "plus", "pro")
CHANNELS = ("web", "app", "store")
CATEGORIES = ("books", "music", "electronics", "garden", "toys", "fashion", "food")


def execute(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def maintenance(*tables: str) -> None:
    """VACUUM ANALYZE (what autovacuum would have done by the nightly run) and a CHECKPOINT,
    so a step neither reads dead rows nor pays for the previous step's dirty pages."""
    from django.db import DatabaseError, connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")
        with contextlib.suppress(DatabaseError):  # not a superuser: measure without it
            cursor.execute("CHECKPOINT")


def clear_scores() -> None:
    """Forget every model, run and score; customers lose their latest-score columns."""
    from customers.models import Customer
    from scoring.models import ChurnModel, CustomerScore, ScoringRun

    tables = ", ".join(m._meta.db_table for m in (CustomerScore, ScoringRun, ChurnModel))
    execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    execute(f"DROP TABLE IF EXISTS {REFERENCE_TABLE}")
    execute(
        f"UPDATE {Customer._meta.db_table} SET churn_probability = NULL, risk_tier = '', "
        "scored_at = NULL, score_model_version = '' WHERE scored_at IS NOT NULL"
    )


LAST_NIGHT = "bench-last-night"


def clear_run_scores() -> None:
    """Empty the scores and runs between timed runs (the model stays, and so does last night's
    run row: `last_night`); the order statistics are last night's again."""
    from scoring.models import CustomerScore, ScoringChunk, ScoringRun

    tables = ", ".join(m._meta.db_table for m in (CustomerScore, ScoringChunk))
    execute(f"TRUNCATE {tables} RESTART IDENTITY")
    execute(f"DELETE FROM {ScoringRun._meta.db_table} WHERE run_key <> %s", [LAST_NIGHT])
    last_night_statistics()


def last_night_statistics() -> bool:
    """Put back the order statistics last night's run left (`last_night`); none (the first
    night: every order read) if it has not run on this database. True when put back."""
    from scoring.models import OrderStatistics, OrderStatisticsMark

    statistics = OrderStatistics._meta.db_table
    execute(f"TRUNCATE {statistics}")
    kept = bool(execute("SELECT to_regclass(%s)", [LAST_NIGHT_STATISTICS])[0][0])
    if kept:
        execute(f"INSERT INTO {statistics} SELECT * FROM {LAST_NIGHT_STATISTICS}")
    # The marks too: every order loaded left one, the last night's run consumed them.
    maintenance(statistics, OrderStatisticsMark._meta.db_table)
    return kept


def statistics_recomputed(as_of: Any) -> int:
    """How many customers' order statistics a run as of `as_of` computed from their orders (the
    rest it read from last night's)."""
    from scoring.ml.features import as_utc
    from scoring.models import OrderStatistics

    table = OrderStatistics._meta.db_table
    rows = execute(f"SELECT count(*) FROM {table} WHERE basis_ns = %s", [as_utc(as_of).value])
    return int(rows[0][0])


def last_night() -> Any:
    """The scoring run of the night before (as of a day before AS_OF, not timed), as production
    always has one: tonight's chunks explain from just below its at-risk bound
    (`scoring.services.runs.reasons_threshold`). Only its run row is kept."""
    from scoring.models import OrderStatistics, ScoringRun
    from scoring.services.runs import parse_as_of, scoring_run_execute

    execute(f"DELETE FROM {ScoringRun._meta.db_table}")
    execute(f"DROP TABLE IF EXISTS {LAST_NIGHT_STATISTICS}")
    execute(f"TRUNCATE {OrderStatistics._meta.db_table}")  # the first night: every order read
    as_of = parse_as_of(AS_OF) - pd.Timedelta(days=1).to_pytimedelta()
    started = time.perf_counter()
    run = scoring_run_execute(as_of=as_of, run_key=LAST_NIGHT)
    execute(
        f"CREATE TABLE {LAST_NIGHT_STATISTICS} AS SELECT * FROM {OrderStatistics._meta.db_table}"
    )
    print(
        f"last night's run (as of {as_of:%Y-%m-%d}, not timed) in "
        f"{time.perf_counter() - started:.0f} s: at-risk bound p ≥ {run.at_risk_from:.4f}",
        flush=True,
    )
    clear_run_scores()
    return run


# ---- data -----------------------------------------------------------------------------------


def data_key(args: argparse.Namespace) -> str:
    return f"v1 customers={args.customers} orders={args.orders} seed={args.seed}"


def prepare_data(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from customers.models import Customer, Order

    execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key text)")
    stored = execute(f"SELECT key FROM {META_TABLE}")
    clear_scores()
    if args.reuse and stored and stored[0][0] == data_key(args):
        print(f"reusing the generated data ({data_key(args)})")
        # Earlier runs updated every customer: rewrite the table as if freshly loaded.
        execute(f"VACUUM FULL {Customer._meta.db_table}")
        maintenance(Customer._meta.db_table, Order._meta.db_table)
        return
    execute(f"DELETE FROM {META_TABLE}")
    tables = ", ".join(m._meta.db_table for m in (Order, Customer))
    # CASCADE also empties whatever references customers (scores, interventions…).
    execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    print(f"generating {args.customers:,} customers and {args.orders:,} orders …", flush=True)
    started = time.perf_counter()
    load(config, args.customers, args.orders, args.seed)
    print(f"  generated and loaded in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    maintenance(Customer._meta.db_table, Order._meta.db_table)
    execute(f"INSERT INTO {META_TABLE} VALUES (%s)", [data_key(args)])
    print(f"  vacuumed in {time.perf_counter() - started:.0f} s", flush=True)


def load(config: dict[str, Any], customers: int, orders: int, seed: int) -> None:
    """Deterministic customers and orders, written with psycopg COPY (not timed).

    Each customer is active from max(signup, history start) until an exponential lifetime
    ends (shorter on the basic plan, longer on the app, longer with a newsletter); orders
    fall uniformly inside that span at a customer-specific rate, so lapsed customers have
    long recencies and the churn label (no order within 90 days) has a real signal. 4% of
    customers never order; refund and cancel propensities vary by customer.
    """
    import psycopg

    from customers.models import Customer, Order

    # One generator drawn in a fixed order: the same seed gives the same rows.
    rng = np.random.default_rng(seed)
    people = _simulate_customers(rng, customers=customers, orders=orders)
    now = pd.Timestamp.now(tz="UTC").isoformat()
    customer_frame = _customer_frame(people, now=now)
    # Orders in time order (how they arrive), then written in blocks.
    owner = np.repeat(np.arange(customers, dtype=np.int32), people.counts)
    placed = people.start_s[owner] + (rng.random(len(owner)) * people.span_s[owner]).astype(
        np.int64
    )
    placed = np.minimum(placed, people.end_s - 1)
    order = np.argsort(placed, kind="stable")
    owner, placed = owner[order], placed[order]
    del order
    with psycopg.connect(**conninfo(config, config["NAME"])) as conn:
        copy_frame(
            conn,
            Customer._meta.db_table,
            customer_frame,
            not_null=("phone", "risk_tier", "score_model_version"),
        )
        del customer_frame
        for first in range(0, orders, GENERATE_BLOCK):
            block = _order_block(
                rng,
                people,
                owner=owner[first : first + GENERATE_BLOCK],
                placed=placed[first : first + GENERATE_BLOCK],
                first=first,
                now=now,
            )
            copy_frame(conn, Order._meta.db_table, block)
            print(f"  orders {first + len(block):,}/{orders:,}", end="\r", flush=True)
        print()
        for table in (Customer._meta.db_table, Order._meta.db_table):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        conn.commit()


@dataclass(frozen=True)
class _People:
    """Every generated customer's traits, one array entry per customer (index = id - 1)."""

    signup: np.ndarray
    plan: np.ndarray
    channel: np.ndarray
    age: np.ndarray
    newsletter: np.ndarray
    start_s: np.ndarray  # active from (epoch seconds)
    end_s: np.ndarray  # the data's end (a scalar)
    span_s: np.ndarray  # seconds active
    counts: np.ndarray  # orders placed
    refund_p: np.ndarray
    cancel_p: np.ndarray
    spend: np.ndarray  # log of the typical order amount


def _simulate_customers(rng: np.random.Generator, *, customers: int, orders: int) -> _People:
    day = np.timedelta64(1, "D")
    end = np.datetime64(AS_OF[:10])
    history = np.datetime64(HISTORY_START)
    signup = np.datetime64("2019-01-01") + rng.integers(
        0, int((end - 30 * day - np.datetime64("2019-01-01")) / day), customers
    ).astype("timedelta64[D]")
    plan = rng.choice(len(PLANS), customers, p=[0.5, 0.35, 0.15])
    channel = rng.choice(len(CHANNELS), customers, p=[0.5, 0.35, 0.15])
    age = np.clip(18 + rng.gamma(4.0, 5.0, customers), 18, 90).astype(np.int64)
    newsletter = rng.random(customers) < 0.4

    start_s = np.maximum(signup, history).astype("datetime64[s]").astype(np.int64)
    end_s = end.astype("datetime64[s]").astype(np.int64)
    mean_life = np.array([1200.0, 2400.0, 4000.0])[plan] * np.where(channel == 1, 1.3, 1.0)
    mean_life *= np.where(newsletter, 1.2, 1.0)
    lifetime_s = rng.exponential(mean_life) * 86_400
    stop_s = np.minimum(start_s + lifetime_s.astype(np.int64), end_s)
    span_s = np.maximum(stop_s - start_s, 0)
    rate = rng.lognormal(0.0, 0.7, customers) * np.where(rng.random(customers) < 0.04, 0, 1)
    weight = rate * span_s
    counts = rng.multinomial(orders, weight / weight.sum())
    refund_p = rng.beta(1.0, 18.0, customers)
    cancel_p = rng.beta(1.0, 24.0, customers)
    spend = rng.normal(3.4, 0.4, customers) + np.array([0.0, 0.2, 0.4])[plan]
    return _People(
        signup=signup,
        plan=plan,
        channel=channel,
        age=age,
        newsletter=newsletter,
        start_s=start_s,
        end_s=end_s,
        span_s=span_s,
        counts=counts,
        refund_p=refund_p,
        cancel_p=cancel_p,
        spend=spend,
    )


def _customer_frame(people: _People, *, now: str) -> pd.DataFrame:
    customers = len(people.plan)
    customer_ids = np.arange(1, customers + 1)
    attributes = (
        '{"age": '
        + pd.Series(people.age).astype(str)
        + ', "plan": "'
        + pd.Series(np.asarray(PLANS)[people.plan])
        + '", "channel": "'
        + pd.Series(np.asarray(CHANNELS)[people.channel])
        + '", "newsletter": '
        + pd.Series(np.where(people.newsletter, "true", "false"))
        + "}"
    )
    width = len(str(customers))
    return pd.DataFrame(
        {
            "id": customer_ids,
            "external_id": "C" + pd.Series(customer_ids).astype(str).str.zfill(width),
            "name": "Customer " + pd.Series(customer_ids).astype(str),
            "email": "c" + pd.Series(customer_ids).astype(str) + "@example.com",
            "phone": "",
            "time_zone": "UTC",
            "country": "US",
            "signup_date": np.datetime_as_string(people.signup, unit="D"),
            "attributes": attributes,
            "erased": "f",
            "risk_tier": "",
            "score_model_version": "",
            "created_at": now,
            "updated_at": now,
        }
    )


def _order_block(
    rng: np.random.Generator,
    people: _People,
    *,
    owner: np.ndarray,
    placed: np.ndarray,
    first: int,
    now: str,
) -> pd.DataFrame:
    """The orders first+1 … first+len(owner): `owner` holds each one's customer index."""
    n = len(owner)
    u = rng.random(n)
    status = np.where(
        u < people.refund_p[owner],
        "refunded",
        np.where(u < people.refund_p[owner] + people.cancel_p[owner], "cancelled", "completed"),
    )
    amount = np.round(np.exp(people.spend[owner] + rng.normal(0, 0.5, n)), 2)
    discount = np.where(rng.random(n) < 0.2, np.round(amount * rng.uniform(0.05, 0.3, n), 2), 0.0)
    ids = np.arange(first + 1, first + n + 1)
    return pd.DataFrame(
        {
            "id": ids,
            "external_id": "O" + pd.Series(ids).astype(str).str.zfill(10),
            "customer_id": owner + 1,
            "placed_at": np.strings.add(
                np.datetime_as_string(placed.astype("datetime64[s]"), unit="s"), "+00"
            ),
            "amount": amount,
            "currency": "USD",
            "status": status,
            "item_count": 1 + rng.poisson(1.5, n),
            "discount_amount": discount,
            "category": np.asarray(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)],
            "created_at": now,
            "updated_at": now,
        }
    )


def copy_frame(conn: Any, table: str, frame: Any, not_null: tuple[str, ...] = ()) -> None:
    """COPY a frame in CSV; columns in `not_null` read an empty field as '' (not NULL)."""
    import io

    buffer = io.StringIO()
    frame.to_csv(buffer, header=False, index=False, float_format="%.2f")
    columns = ", ".join(frame.columns)
    options = "FORMAT csv"
    if not_null:
        options += f", FORCE_NOT_NULL ({', '.join(not_null)})"
    statement = f"COPY {table} ({columns}) FROM STDIN WITH ({options})"
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(buffer.getvalue())


# ---- model (not timed) ----------------------------------------------------------------------


def train(args: argparse.Namespace) -> Any:
    """A behaviour-label model trained out of time on the lowest `--train-customers` ids:
    `training_data_from_database(as_of=…, horizon_days=90)` on that sample (all customers
    would mean every order in memory at once), registered via `churn_model_train`."""
    from scoring.services.datasets import training_data_from_database
    from scoring.services.training import churn_model_train

    last_id = min(args.train_customers, args.customers)
    cutoff = pd.Timestamp(AS_OF) - pd.Timedelta(days=HORIZON_DAYS)
    data = training_data_from_database(
        as_of=cutoff.to_pydatetime(), horizon_days=HORIZON_DAYS, first_id=1, last_id=last_id
    )
    if data.X_valid is None or data.y_valid is None:
        raise SystemExit(f"too few customers for an out-of-time split: {data.window}")
    data = replace(data, window={**data.window, "sample_customers": last_id})
    print(
        f"training {args.candidate} on {len(data.X):,} + {len(data.X_valid):,} rows "
        f"({data.y.mean():.1%} / {data.y_valid.mean():.1%} churn) …",
        flush=True,
    )
    started = time.perf_counter()
    outcome = churn_model_train(data=data, candidates=[args.candidate])
    metrics = outcome.model.metrics
    print(
        f"  model {outcome.model.version} ({outcome.model.status}) in "
        f"{time.perf_counter() - started:.0f} s: PR-AUC {metrics.get('pr_auc', 0):.3f}, "
        f"ROC-AUC {metrics.get('roc_auc', 0):.3f}, {len(outcome.model.feature_names)} features"
    )
    return outcome.model
