"""Benchmark: a scoring run end to end against an in-memory pandas + COPY reference (issue 3).

Generates deterministic customers and orders (default 1,000,000 customers, 10,000,000
orders) on PostgreSQL, trains a churn model on a sample of them (not timed) and registers it
through `churn_model_train`, then times, each in a fresh process so its peak memory is its own:

1. `scoring_run_execute(as_of=…)` end to end: customer ids, every chunk (orders and
   customers read from the database, features, predict, tiers, reasons, scores inserted and
   the customers' latest-score columns updated) and the finish (tier counts, drift);
2. the same with reasons switched off (the bench patches `score_features(reasons_from=inf)`;
   there is no production flag), to show what the reasons cost;
3. the reference: orders, events and customers read into memory first (NOT timed), then timed:
   `build_features` + `align_features`, `predict_proba` of the same loaded estimator and tiers,
   done twice (over the whole in-memory frame at once, and in the run's chunks of customers
   sliced from the frames), the faster of the two counting, plus one psycopg COPY of
   (customer_id, probability, tier) into an unindexed table. The reference has no reasons;
4. the production path (needs REDIS_URL): `scoring_run_task` sends one chunk task per id
   range (a chord) over Redis to a real Celery worker with `--workers` pool processes
   (default: the machine's cores); timed from sending the task until the run is completed,
   with the peak memory of every worker process.

Goal (the issue): end to end within 2x of (3), and peak memory under 4 GB; printed for (1),
one process, and for (4), the way scoring runs in production (the reference is one process).
The probabilities and tiers of (1), (2) and (4) are checked against the reference's,
customer by customer.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench_scoring \\
    REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/scoring.py [--customers 1000000 --orders 10000000]

Orders are written in time order, as imports append them, so a chunk's orders are spread over
the whole table (no clustering by customer). The database is created when missing, migrated,
and its customers, orders, models and scores are truncated first: point DATABASE_URL at a
database made for benchmarks. `--reuse` keeps data of the same size and seed from an earlier
run; `--chunk N` sets SCORING_CHUNK_CUSTOMERS for the timed steps. Exit status 0 when the
figures were measured (whether or not the goal is met), 1 when the scores are wrong, 2 when
the database is not PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _postgres import conninfo, database_settings, ensure_database  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")

GOAL_RATIO = 2.0
GOAL_PEAK_MB = 4096
SEED = 20240607
AS_OF = "2025-01-01T00:00:00+00:00"  # the scoring cutoff; orders end here
HISTORY_START = "2022-01-01"
HORIZON_DAYS = 90
GENERATE_BLOCK = 500_000
REFERENCE_TABLE = "bench_scores_reference"
META_TABLE = "bench_scoring_data"
RESULT_PREFIX = "BENCH-RESULT "
PLANS = ("basic", "plus", "pro")
CHANNELS = ("web", "app", "store")
CATEGORIES = ("books", "music", "electronics", "garden", "toys", "fashion", "food")


STEPS = ["reference", "no_reasons", "end_to_end", "celery"]
# Timed services of a run: phase → (scoring.services attribute, label in the table).
PHASES = {
    "create": ("scoring_run_create", "create: run row, customer ids"),
    "orders": ("orders_frame", "read orders (COPY → pandas)"),
    "customers": ("customers_frame", "read customers"),
    "events": ("events_frame", "read events"),
    "features": ("build_features", "build_features"),
    "score": ("score_features", "align + predict + tiers + reasons"),
    "reasons": ("explain_customers", "  of which reasons (explain)"),
    "scores": ("bulk_insert", "write scores (bulk_insert)"),
    "latest": ("_customers_take_scores", "customers take the scores (UPDATE)"),
    "finish": ("scoring_run_finish", "finish: tier counts, drift"),
}


@dataclass
class Step:
    name: str
    seconds: float
    peak_rss_mb: float
    note: str = ""


# ---- setup ----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers to generate")
    parser.add_argument("--orders", type=int, default=10_000_000, help="orders to generate")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed of the data")
    parser.add_argument(
        "--train-customers",
        type=int,
        default=100_000,
        help="customers (the lowest ids) the model is trained on; training is not timed",
    )
    parser.add_argument(
        "--candidate", default="lr_balanced", help="model candidate to train (e.g. hgb)"
    )
    parser.add_argument(
        "--chunk", type=int, help="SCORING_CHUNK_CUSTOMERS for the run (default: the setting)"
    )
    parser.add_argument(
        "--steps",
        default="reference,no_reasons,end_to_end,celery",
        help="comma-separated steps to time: reference, no_reasons, end_to_end, celery "
        "(or none); celery needs REDIS_URL",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="Celery pool processes for the celery step (default: the machine's cores)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep generated data of the same size and seed"
    )
    parser.add_argument(
        "--profile", type=Path, help="write a cProfile of the end-to-end step to this file"
    )
    parser.add_argument(
        "--artifact-dir", type=Path, help="keep model artifacts here (default: a temporary dir)"
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step and exit
    return parser.parse_args()


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


def clear_run_scores() -> None:
    """Empty the scores and runs between timed runs (the model stays)."""
    from scoring.models import CustomerScore, ScoringChunk, ScoringRun

    tables = ", ".join(m._meta.db_table for m in (CustomerScore, ScoringChunk, ScoringRun))
    execute(f"TRUNCATE {tables} RESTART IDENTITY")


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
    import numpy as np
    import pandas as pd
    import psycopg

    from customers.models import Customer, Order

    rng = np.random.default_rng(seed)
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

    now = pd.Timestamp.now(tz="UTC").isoformat()
    customer_ids = np.arange(1, customers + 1)
    attributes = (
        '{"age": '
        + pd.Series(age).astype(str)
        + ', "plan": "'
        + pd.Series(np.asarray(PLANS)[plan])
        + '", "channel": "'
        + pd.Series(np.asarray(CHANNELS)[channel])
        + '", "newsletter": '
        + pd.Series(np.where(newsletter, "true", "false"))
        + "}"
    )
    width = len(str(customers))
    customer_frame = pd.DataFrame(
        {
            "id": customer_ids,
            "external_id": "C" + pd.Series(customer_ids).astype(str).str.zfill(width),
            "name": "Customer " + pd.Series(customer_ids).astype(str),
            "email": "c" + pd.Series(customer_ids).astype(str) + "@example.com",
            "phone": "",
            "time_zone": "UTC",
            "country": "US",
            "signup_date": np.datetime_as_string(signup, unit="D"),
            "attributes": attributes,
            "erased": "f",
            "risk_tier": "",
            "score_model_version": "",
            "created_at": now,
            "updated_at": now,
        }
    )
    # Orders in time order (how they arrive), then written in blocks.
    owner = np.repeat(np.arange(customers, dtype=np.int32), counts)
    placed = start_s[owner] + (rng.random(len(owner)) * span_s[owner]).astype(np.int64)
    placed = np.minimum(placed, end_s - 1)
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
            who = owner[first : first + GENERATE_BLOCK]
            n = len(who)
            u = rng.random(n)
            status = np.where(
                u < refund_p[who],
                "refunded",
                np.where(u < refund_p[who] + cancel_p[who], "cancelled", "completed"),
            )
            amount = np.round(np.exp(spend[who] + rng.normal(0, 0.5, n)), 2)
            discount = np.where(
                rng.random(n) < 0.2, np.round(amount * rng.uniform(0.05, 0.3, n), 2), 0.0
            )
            ids = np.arange(first + 1, first + n + 1)
            block = pd.DataFrame(
                {
                    "id": ids,
                    "external_id": "O" + pd.Series(ids).astype(str).str.zfill(10),
                    "customer_id": customer_ids[who],
                    "placed_at": np.strings.add(
                        np.datetime_as_string(
                            placed[first : first + n].astype("datetime64[s]"), unit="s"
                        ),
                        "+00",
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
            copy_frame(conn, Order._meta.db_table, block)
            print(f"  orders {first + n:,}/{orders:,}", end="\r", flush=True)
        print()
        for table in (Customer._meta.db_table, Order._meta.db_table):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        conn.commit()


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
    """A behaviour-label model trained out of time on the lowest `--train-customers` ids.

    The same construction as `training_data_from_database(as_of=…, horizon_days=90)`, but on
    a sample (that function reads every order at once), registered via `churn_model_train`.
    """
    import numpy as np
    import pandas as pd

    from scoring import services
    from scoring.ml.features import build_features
    from scoring.ml.labels import behaviour_labels

    last_id = min(args.train_customers, args.customers)
    orders = services.orders_frame(first_id=1, last_id=last_id)
    events = services.events_frame(first_id=1, last_id=last_id)
    customers = services.customers_frame(first_id=1, last_id=last_id)
    cutoff = pd.Timestamp(AS_OF) - pd.Timedelta(days=HORIZON_DAYS)
    train_cutoff = cutoff - pd.Timedelta(days=HORIZON_DAYS)

    def at(when: pd.Timestamp) -> tuple[pd.DataFrame, np.ndarray]:
        labels = behaviour_labels(orders=orders, cutoff=when, horizon_days=HORIZON_DAYS)
        series = labels.as_series()
        subset = customers[customers["customer_id"].isin(series.index)]
        X = build_features(orders=orders, events=events, customers=subset, as_of=when)
        return X, series.reindex(X.index).to_numpy()

    X_valid, y_valid = at(cutoff)
    X_train, y_train = at(train_cutoff)
    columns = X_train.columns[X_train.notna().any()]
    data = {
        "X": X_train[columns],
        "y": y_train,
        "X_valid": X_valid.reindex(columns=columns),
        "y_valid": y_valid,
        "X_champion": X_valid,
        "btyd_params": X_valid.attrs.get("btyd_params"),
        "cv": "out_of_time",
        "label": {"kind": "behaviour", "horizon_days": HORIZON_DAYS, "as_of": cutoff.isoformat()},
        "window": {
            "train_cutoff": train_cutoff.isoformat(),
            "valid_cutoff": cutoff.isoformat(),
            "sample_customers": last_id,
        },
    }
    print(
        f"training {args.candidate} on {len(X_train):,} + {len(X_valid):,} rows "
        f"({y_train.mean():.1%} / {y_valid.mean():.1%} churn) …",
        flush=True,
    )
    started = time.perf_counter()
    outcome = services.churn_model_train(data=data, candidates=[args.candidate])
    metrics = outcome.model.metrics
    print(
        f"  model {outcome.model.version} ({outcome.model.status}) in "
        f"{time.perf_counter() - started:.0f} s: PR-AUC {metrics.get('pr_auc', 0):.3f}, "
        f"ROC-AUC {metrics.get('roc_auc', 0):.3f}, {len(outcome.model.feature_names)} features"
    )
    return outcome.model


# ---- timed steps (each in its own process) --------------------------------------------------


class PeakSampler:
    """Peak resident memory of this process between start() and stop(), sampled every 10 ms
    (ru_maxrss is the whole process's peak, which for the reference includes its untimed
    loading)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.01)

    def start(self) -> PeakSampler:
        self.peak = self._rss()
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        return self.peak / 2**20


def process_peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_end_to_end(*, reasons: bool, profile: str | None) -> dict[str, Any]:
    import functools
    import gc
    import math

    from django.conf import settings

    from scoring import services

    if not reasons:
        services.score_features = functools.partial(  # type: ignore[assignment]
            services.score_features, reasons_from=math.inf
        )
    # Where the time goes: the services the run calls, wrapped with a stopwatch (anything
    # called inside the finish counts as finish).
    spent: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    in_finish = [False]

    def stopwatch(name: str, function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if in_finish[0]:
                return function(*args, **kwargs)
            in_finish[0] = name == "finish"
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
                in_finish[0] = False

        return wrapper

    for name, (attribute, _) in PHASES.items():
        setattr(services, attribute, stopwatch(name, getattr(services, attribute)))
    chunk_done: list[float] = []
    as_of = services.parse_as_of(AS_OF)
    gc.collect()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    sampler = PeakSampler().start()
    started = time.perf_counter()
    run = services.scoring_run_execute(
        as_of=as_of, on_chunk=lambda first, n: chunk_done.append(time.perf_counter())
    )
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    assert run is not None
    return {
        "seconds": seconds,
        "chunks_seconds": (chunk_done[-1] - started) if chunk_done else 0.0,
        "finish_seconds": seconds - (chunk_done[-1] - started) if chunk_done else seconds,
        "first_chunk_seconds": (chunk_done[0] - started) if chunk_done else 0.0,
        "chunks": len(chunk_done),
        "chunk_size": settings.SCORING_CHUNK_CUSTOMERS,
        "run_id": run.pk,
        "scored": run.customers_scored,
        "tiers": run.tier_counts,
        "drift": run.drift.get("status"),
        "sampled_peak_mb": peak,
        "process_peak_mb": process_peak_mb(),
        "phases": spent,
    }


def worker_peaks_mb(queue: str) -> list[float]:
    """Peak resident memory (VmHWM) of the Celery worker serving `queue` and of its pool
    processes, read from /proc before the worker stops."""
    proc = Path("/proc")
    main_pids = [
        p.name
        for p in proc.iterdir()
        if p.name.isdigit()
        and f"--hostname={queue}@".encode() in _read_bytes(p / "cmdline").replace(b"\0", b" ")
    ]
    peaks: list[float] = []
    for p in proc.iterdir():
        if not p.name.isdigit():
            continue
        status = _read_bytes(p / "status").decode(errors="replace")
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if p.name in main_pids or fields.get("PPid", "").strip() in main_pids:
            peaks.append(int(fields.get("VmHWM", "0 kB").split()[0]) / 1024)
    return peaks


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def step_celery(args: argparse.Namespace) -> dict[str, Any]:
    """The production path: `scoring_run_task` fans the chunks out (a chord) over Redis to a
    real Celery worker with `--workers` pool processes; timed from sending the task until the
    run is completed (finish and drift included)."""
    from scoring.models import RunStatus, ScoringRun
    from scoring.tasks import scoring_run_task
    from tests.worker import celery_worker

    env = {"MODEL_ARTIFACT_DIR": os.environ["MODEL_ARTIFACT_DIR"]}
    if args.chunk:
        env["SCORING_CHUNK_CUSTOMERS"] = str(args.chunk)
    with celery_worker(os.environ["REDIS_URL"], extra_env=env, concurrency=args.workers) as queue:
        started = time.perf_counter()
        sent = scoring_run_task.apply_async(kwargs={"as_of": AS_OF}, queue=queue).get(timeout=600)
        run = ScoringRun.objects.get(run_key=sent["run"])
        while run.status == RunStatus.RUNNING and time.perf_counter() - started < 3600:
            time.sleep(0.05)
            run.refresh_from_db()
        seconds = time.perf_counter() - started
        peaks = worker_peaks_mb(queue)
    if run.status != RunStatus.COMPLETED:
        raise SystemExit(f"celery: the run ended {run.status}: {run.error}")
    return {
        "seconds": seconds,
        "run_id": run.pk,
        "workers": args.workers,
        "chunks": run.chunks_total,
        "scored": run.customers_scored,
        "tiers": run.tier_counts,
        "drift": run.drift.get("status"),
        "process_peak_mb": max(peaks, default=0.0),
        "total_peak_mb": sum(peaks),
        "processes": len(peaks),
    }


def step_reference(config: dict[str, Any]) -> dict[str, Any]:
    """Features + predict + COPY from frames already in memory, timed two ways: the whole
    frame at once, and in the run's chunks of customers (orders sorted by customer first, not
    timed); the faster of the two is the reference."""
    import gc
    import io

    import numpy as np
    import pandas as pd
    import psycopg
    from django.conf import settings

    from scoring import services
    from scoring.ml.features import FeatureSpec, align_features, build_features
    from scoring.ml.tiers import assign_tiers
    from scoring.selectors import churn_model_active

    model = churn_model_active()
    assert model is not None
    estimator = services.churn_model_load(model=model)
    spec = FeatureSpec.from_dict(model.feature_spec)
    edges, names = services._tier_bands()
    as_of = pd.Timestamp(services.parse_as_of(AS_OF))
    kinds = model.reference.get("event_kinds") or None
    # Not timed: every row in memory first, orders grouped by customer for the chunked pass.
    started = time.perf_counter()
    orders = services.orders_frame()
    events = services.events_frame()
    customers = services.customers_frame()
    orders = orders.sort_values("customer_id", kind="stable", ignore_index=True)
    events = events.sort_values("customer_id", kind="stable", ignore_index=True)
    read_seconds = time.perf_counter() - started
    loaded_mb = process_peak_mb()

    def score(orders: Any, events: Any, customers: Any) -> tuple[Any, Any, Any, float, float]:
        t0 = time.perf_counter()
        features = build_features(
            orders=orders,
            events=events,
            customers=customers,
            as_of=as_of,
            event_kinds=kinds,
            btyd_params=model.reference.get("btyd_params"),
        )
        X = align_features(features=features, spec=spec)
        t1 = time.perf_counter()
        probability = estimator.predict_proba(X)[:, 1]
        tiers = assign_tiers(probabilities=probability, edges=edges, names=names)
        return X.index, probability, tiers, t1 - t0, time.perf_counter() - t1

    gc.collect()
    sampler = PeakSampler().start()
    # (a) chunked: the same chunks of customers as the run, sliced from the sorted frames.
    size = settings.SCORING_CHUNK_CUSTOMERS
    order_ids = orders["customer_id"].to_numpy()
    event_ids = events["customer_id"].to_numpy()
    customer_ids = customers["customer_id"].to_numpy()
    parts: list[Any] = []
    chunked_features = chunked_predict = 0.0
    for start in range(0, len(customers), size):
        lo, hi = customer_ids[start], customer_ids[min(start + size, len(customers)) - 1]
        o = np.searchsorted(order_ids, [lo, hi], side="left")
        o[1] = np.searchsorted(order_ids, hi, side="right")
        e = np.searchsorted(event_ids, [lo, hi], side="left")
        e[1] = np.searchsorted(event_ids, hi, side="right")
        _, probability, _, f_s, p_s = score(
            orders.iloc[o[0] : o[1]], events.iloc[e[0] : e[1]], customers.iloc[start : start + size]
        )
        parts.append(probability)
        chunked_features += f_s
        chunked_predict += p_s
    chunked_probability = np.concatenate(parts)
    del parts
    gc.collect()
    # (b) the whole frame at once.
    index, probability, tiers, whole_features, whole_predict = score(orders, events, customers)
    if not np.array_equal(probability, chunked_probability):
        raise SystemExit("reference: chunked and whole-frame probabilities differ")
    with psycopg.connect(**conninfo(config, config["NAME"])) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {REFERENCE_TABLE}")
        conn.execute(
            f"CREATE TABLE {REFERENCE_TABLE} "
            "(customer_id bigint, probability double precision, tier varchar(32))"
        )
        conn.commit()
        t0 = time.perf_counter()
        out = pd.DataFrame({"customer_id": index, "probability": probability, "tier": tiers})
        buffer = io.StringIO()
        out.to_csv(buffer, header=False, index=False)
        statement = f"COPY {REFERENCE_TABLE} FROM STDIN WITH (FORMAT csv)"
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(buffer.getvalue())
        conn.commit()
        copy_seconds = time.perf_counter() - t0
    peak = sampler.stop()
    whole = whole_features + whole_predict
    chunked = chunked_features + chunked_predict
    use_chunked = chunked < whole
    return {
        "seconds": min(whole, chunked) + copy_seconds,
        "variant": "chunked" if use_chunked else "whole frame",
        "features_seconds": chunked_features if use_chunked else whole_features,
        "predict_seconds": chunked_predict if use_chunked else whole_predict,
        "whole_seconds": whole + copy_seconds,
        "whole_features_seconds": whole_features,
        "chunked_seconds": chunked + copy_seconds,
        "chunked_features_seconds": chunked_features,
        "copy_seconds": copy_seconds,
        "chunk_size": size,
        "read_seconds_untimed": read_seconds,
        "rows": len(out),
        "orders_in_memory": len(orders),
        "at_risk": int(np.sum(probability >= (edges[0] if edges else 0.0))),
        "sampled_peak_mb": peak,
        "loaded_mb": loaded_mb,
        "process_peak_mb": process_peak_mb(),
    }


def run_step(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one timed step in a fresh Python process (its own peak memory) and read its result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--step", name]
    if args.profile and name == "end_to_end":
        command += ["--profile", str(args.profile)]
    env = dict(os.environ)
    if args.chunk:
        env["SCORING_CHUNK_CUSTOMERS"] = str(args.chunk)
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    sys.stderr.write(completed.stderr)
    lines = [x for x in completed.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if completed.returncode or not lines:
        raise SystemExit(f"step {name} failed (exit {completed.returncode})")
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def child(args: argparse.Namespace, config: dict[str, Any]) -> int:
    import django

    django.setup()
    import scoring.services  # noqa: F401  (imports are not part of the timed step)

    if args.step == "reference":
        result = step_reference(config)
    elif args.step in ("end_to_end", "no_reasons"):
        profile = str(args.profile) if args.profile else None
        result = step_end_to_end(reasons=args.step == "end_to_end", profile=profile)
    else:
        raise SystemExit(f"unknown step {args.step}")
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# ---- checks and report ----------------------------------------------------------------------


def compare_with_reference(run_id: int) -> dict[str, Any]:
    """The run's scores against the reference's, customer by customer."""
    from scoring.models import CustomerScore

    rows = execute(
        "SELECT count(*), count(r.customer_id), max(abs(s.probability - r.probability)), "
        "count(*) FILTER (WHERE s.tier IS DISTINCT FROM r.tier), "
        "count(*) FILTER (WHERE jsonb_array_length(s.reasons) > 0) "
        f"FROM {CustomerScore._meta.db_table} s "
        f"LEFT JOIN {REFERENCE_TABLE} r ON r.customer_id = s.customer_id WHERE s.run_id = %s",
        [run_id],
    )
    scored, matched, diff, tier_diff, with_reasons = rows[0]
    return {
        "scored": scored,
        "matched": matched,
        "max_abs_diff": float(diff) if diff is not None else None,
        "tier_mismatches": tier_diff,
        "with_reasons": with_reasons,
    }


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    version = execute("SHOW server_version")[0][0]
    buffers = execute("SHOW shared_buffers")[0][0]
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.0f} GB"
                break
    except OSError:
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": memory,
        "postgresql": f"{version} (shared_buffers {buffers})",
        "python": platform.python_version(),
    }


def relation_mb(table: str) -> float:
    return execute("SELECT pg_total_relation_size(%s)", [table])[0][0] / 1e6


def main() -> int:
    args = parse_args()
    config = database_settings("scoring.py", "retention_bench_scoring")
    if args.step:
        return child(args, config)
    ensure_database(config)
    artifacts = tempfile.TemporaryDirectory(prefix="bench-scoring-models-")
    # Read by the settings, inherited by the steps' processes.
    os.environ["MODEL_ARTIFACT_DIR"] = str(args.artifact_dir or artifacts.name)

    import django

    django.setup()

    from django.conf import settings
    from django.core.management import call_command

    from customers.models import Customer, Order
    from scoring.models import CustomerScore

    print(f"database {config['NAME']} on {config.get('HOST') or 'localhost'}: migrating …")
    call_command("migrate", verbosity=0, interactive=False)
    prepare_data(args, config)
    model = train(args)
    steps = [s.strip() for s in args.steps.split(",") if s.strip() not in ("", "none")]
    chunk = args.chunk or settings.SCORING_CHUNK_CUSTOMERS
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[str, Any]] = {}
    print("timing (each step in a fresh process) …", flush=True)
    if "celery" in steps and not os.environ.get("REDIS_URL"):
        print("celery step skipped: set REDIS_URL=redis://… to time the production path")
        steps.remove("celery")
    for name in sorted(steps, key=STEPS.index):
        clear_run_scores()
        maintenance(Customer._meta.db_table, Order._meta.db_table)
        results[name] = step_celery(args) if name == "celery" else run_step(name, args)
        print(f"  {name}: {results[name]['seconds']:.1f} s", flush=True)
        if name != "reference" and "reference" in results:
            checks[name] = compare_with_reference(results[name]["run_id"])
    load_after = os.getloadavg()[0]
    scores_mb = relation_mb(CustomerScore._meta.db_table)
    orders_mb = relation_mb(Order._meta.db_table)
    customers_mb = relation_mb(Customer._meta.db_table)
    info = machine()

    reference = results.get("reference")
    rows: list[Step] = []
    if reference:
        rows += [
            Step(
                "reference: features + predict + COPY",
                reference["seconds"],
                reference["sampled_peak_mb"],
                f"{reference['variant']} (faster of the two below); process peak "
                f"{reference['process_peak_mb']:.0f} MB incl. untimed read",
            ),
            Step(
                "  whole frame at once",
                reference["whole_seconds"],
                0,
                f"features {reference['whole_features_seconds']:.1f} s",
            ),
            Step(
                f"  in chunks of {reference['chunk_size']:,}",
                reference["chunked_seconds"],
                0,
                f"features {reference['chunked_features_seconds']:.1f} s",
            ),
            Step("  build_features + align", reference["features_seconds"], 0),
            Step("  predict_proba + tiers", reference["predict_seconds"], 0),
            Step("  COPY (id, probability, tier)", reference["copy_seconds"], 0),
        ]
    for name, label in (
        ("no_reasons", "end to end, reasons off"),
        ("end_to_end", "end to end (scoring_run_execute)"),
    ):
        if name not in results:
            continue
        r = results[name]
        rows.append(
            Step(label, r["seconds"], r["process_peak_mb"], f"{r['chunks']} chunks of {chunk:,}")
        )
        phases = r["phases"]
        for phase, (_, phase_label) in PHASES.items():
            if phase == "reasons" and not phases[phase]:
                continue
            rows.append(Step(f"  {phase_label}", phases[phase], 0))
        accounted = sum(v for k, v in phases.items() if k != "reasons")
        rows.append(Step("  rest: model load, commits, frames", r["seconds"] - accounted, 0))
    if "celery" in results:
        r = results["celery"]
        rows.append(
            Step(
                f"end to end, Celery ({r['workers']} worker processes)",
                r["seconds"],
                r["process_peak_mb"],
                f"{r['chunks']} chunk tasks of {chunk:,} over Redis; all {r['processes']} "
                f"worker processes together peaked at {r['total_peak_mb']:.0f} MB",
            )
        )
    print()
    header = f"{'step':<40} {'seconds':>8} {'x ref':>6} {'peak RSS':>9}  note"
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row.seconds / reference['seconds']:.2f}" if reference else "-"
        peak = f"{row.peak_rss_mb:>6.0f} MB" if row.peak_rss_mb else ""
        print(f"{row.name:<40} {row.seconds:>8.2f} {ratio:>6} {peak:>9}  {row.note}")
    print()
    print(
        f"data: {args.customers:,} customers, {args.orders:,} orders (seed {args.seed}); "
        f"tables with indexes: orders {orders_mb:,.0f} MB, customers {customers_mb:,.0f} MB, "
        f"scores {scores_mb:,.0f} MB; as of {AS_OF[:10]}"
    )
    print(
        f"model: {model.version}, candidate {model.candidate} ({model.algorithm}), "
        f"{len(model.feature_names)} features, trained on the lowest "
        f"{min(args.train_customers, args.customers):,} customer ids (not timed)"
    )
    print(
        f"machine: {info['cores']} cores, {info['cpu']}, {info['memory']} RAM; "
        f"PostgreSQL {info['postgresql']}; Python {info['python']}"
    )
    print(f"load average (1 min) {load_before:.1f} before the timed steps, {load_after:.1f} after")
    if reference:
        print(
            f"reference: {reference['orders_in_memory']:,} orders read into memory in "
            f"{reference['read_seconds_untimed']:.1f} s (not timed); {reference['at_risk']:,} "
            "customers at risk (would get reasons on the real path); the reference has no reasons"
        )
    problems: list[str] = []
    for name, check in checks.items():
        print(
            f"check {name}: {check['scored']:,} scores, {check['matched']:,} matched to the "
            f"reference, max |Δp| {check['max_abs_diff']}, {check['tier_mismatches']} tier "
            f"mismatches, {check['with_reasons']:,} with reasons"
        )
        if (
            check["scored"] != args.customers
            or check["matched"] != args.customers
            or (check["max_abs_diff"] or 0) > 1e-9
            or check["tier_mismatches"]
        ):
            problems.append(f"{name}: scores differ from the reference: {check}")
    for name in ("no_reasons", "end_to_end", "celery"):
        if name in results:
            r = results[name]
            print(f"{name}: tiers {r['tiers']}, drift {r['drift']}")
    print("peak RSS: the timed process's own peak (a fresh process per step); PostgreSQL's")
    print("server processes are not included.")
    for name, label in (
        ("end_to_end", "in one process (embedded mode, scoring_run_execute)"),
        ("celery", "production path (Celery worker, chunk tasks over Redis)"),
    ):
        r = results.get(name)
        if not r:
            continue
        if reference:
            ratio = r["seconds"] / reference["seconds"]
            verdict = "PASS" if ratio <= GOAL_RATIO else "FAIL"
            print(
                f"goal: end to end ≤ {GOAL_RATIO:g}x the reference, {label}: {verdict} "
                f"({r['seconds']:.1f} s vs {reference['seconds']:.1f} s = {ratio:.2f}x)"
            )
        peak = r.get("total_peak_mb", r["process_peak_mb"])
        verdict = "PASS" if peak < GOAL_PEAK_MB else "FAIL"
        print(
            f"goal: peak memory < {GOAL_PEAK_MB / 1024:g} GB, {label}: {verdict} "
            f"({peak:.0f} MB{' over all worker processes' if name == 'celery' else ''})"
        )
    if reference and "no_reasons" in results:
        ratio_nr = results["no_reasons"]["seconds"] / reference["seconds"]
        print(f"(one process with reasons off: {ratio_nr:.2f}x, for the cost of the reasons)")
    for problem in problems:
        print(f"WRONG SCORES: {problem}", file=sys.stderr)
    artifacts.cleanup()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
