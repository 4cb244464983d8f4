"""bench/scoring.py's timed steps, each run in a fresh process: the run end to end (with a
stopwatch around each service it calls), the Celery production path, and the in-memory
reference; plus the peak-memory samplers they report."""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

from _postgres import conninfo
from _scoring_data import AS_OF, REFERENCE_TABLE

# Timed services of a run: phase → (module, attribute, label in the table). Each is patched
# in the module that calls it, so the run's own calls go through the stopwatch.
RUNS, TRAINING = "scoring.services.runs", "scoring.services.training"
PHASES = {
    "create": (RUNS, "scoring_run_create", "create: run row, customer ids"),
    "orders": (RUNS, "orders_frame_for_ids", "read orders (COPY → pandas)"),
    "customers": (RUNS, "customers_frame_for_ids", "read customers"),
    "events": (RUNS, "events_frame_for_ids", "read events"),
    "features": (RUNS, "build_features", "build_features"),
    "score": (RUNS, "score_features", "align + predict + tiers + reasons"),
    "reasons": (TRAINING, "explain_customers", "  of which reasons (explain)"),
    "scores": (RUNS, "bulk_insert", "write scores (bulk_insert)"),
    "latest": (RUNS, "_customers_take_scores", "customers take the scores (UPDATE)"),
    "finish": (RUNS, "scoring_run_finish", "finish: tier counts, drift"),
}


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

    from scoring.services import runs

    if not reasons:  # nobody explained, in the chunks or at the finish
        runs.reasons_threshold = lambda **_: math.inf  # type: ignore[assignment]
        runs._explain_the_rest = lambda **_: 0  # type: ignore[assignment]
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

    for name, (module_name, attribute, _) in PHASES.items():
        module = importlib.import_module(module_name)
        setattr(module, attribute, stopwatch(name, getattr(module, attribute)))
    chunk_done: list[float] = []
    as_of = runs.parse_as_of(AS_OF)
    gc.collect()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    sampler = PeakSampler().start()
    started = time.perf_counter()
    run = runs.scoring_run_execute(
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
        # tests/worker.py names the node "<queue>-<4 hex>@host".
        and f"--hostname={queue}".encode() in _read_bytes(p / "cmdline").replace(b"\0", b" ")
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


# Seconds between the worker's first answer and the timed run (see step_celery).
WORKER_SETTLE_SECONDS = 3.0


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
        # A production worker has been up for hours; this one just answered its first ping.
        # Its processes warm up on a thread as they start (SCORING_WORKER_WARM_UP_CUSTOMERS):
        # give them the time to, as the reference has its model loaded before its clock starts.
        time.sleep(WORKER_SETTLE_SECONDS)
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

    import numpy as np
    from django.conf import settings

    score, edges = _reference_scorer()
    # Not timed: every row in memory first, orders grouped by customer for the chunked pass.
    started = time.perf_counter()
    orders, events, customers = _frames_in_memory()
    read_seconds = time.perf_counter() - started
    loaded_mb = process_peak_mb()

    gc.collect()
    sampler = PeakSampler().start()
    # (a) chunked: the same chunks of customers as the run, sliced from the sorted frames.
    size = settings.SCORING_CHUNK_CUSTOMERS
    chunked_probability, chunked_features, chunked_predict = _score_in_chunks(
        score, orders=orders, events=events, customers=customers, size=size
    )
    gc.collect()
    # (b) the whole frame at once.
    index, probability, tiers, whole_features, whole_predict = score(orders, events, customers)
    if not np.array_equal(probability, chunked_probability):
        raise SystemExit("reference: chunked and whole-frame probabilities differ")
    copy_seconds = _copy_reference(config, index=index, probability=probability, tiers=tiers)
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
        "rows": len(index),
        "orders_in_memory": len(orders),
        "at_risk": int(np.sum(probability >= (edges[0] if edges else 0.0))),
        "sampled_peak_mb": peak,
        "loaded_mb": loaded_mb,
        "process_peak_mb": process_peak_mb(),
    }


def _reference_scorer() -> tuple[Any, list[float]]:
    """score(orders, events, customers) → (ids, probability, tiers, features s, predict s)
    with the active model, as the run scores (no reasons); and the tier edges."""
    import numpy as np
    import pandas as pd

    from scoring.ml.features import FeatureSpec, align_features, build_features
    from scoring.ml.tiers import NOT_SCORABLE, assign_ranked_tiers
    from scoring.selectors import churn_model_active, risk_tier_edges, risk_tier_rules
    from scoring.services.runs import parse_as_of, scorable_mask
    from scoring.services.training import churn_model_load

    model = churn_model_active()
    assert model is not None
    estimator = churn_model_load(model=model)
    spec = FeatureSpec.from_dict(model.feature_spec)
    edges, _names = risk_tier_edges()
    rules = risk_tier_rules()  # as the run tiers: by rank within the run, or by band
    as_of = pd.Timestamp(parse_as_of(AS_OF))
    kinds = model.reference.get("event_kinds") or None

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
        # As the run tiers: ranked among the customers the model can score; the rest apart.
        scorable = scorable_mask(model=model, features=features)
        tiers = np.full(len(probability), NOT_SCORABLE, dtype=object)
        tiers[scorable] = assign_ranked_tiers(probabilities=probability[scorable], rules=rules)
        return X.index, probability, tiers, t1 - t0, time.perf_counter() - t1

    return score, edges


def _frames_in_memory() -> tuple[Any, Any, Any]:
    """Every order, event and customer, the orders and events sorted by customer."""
    from customers.selectors import (
        customers_frame_for_ids,
        events_frame_for_ids,
        orders_frame_for_ids,
    )

    orders = orders_frame_for_ids()
    events = events_frame_for_ids()
    customers = customers_frame_for_ids()
    orders = orders.sort_values("customer_id", kind="stable", ignore_index=True)
    events = events.sort_values("customer_id", kind="stable", ignore_index=True)
    return orders, events, customers


def _score_in_chunks(
    score: Any, *, orders: Any, events: Any, customers: Any, size: int
) -> tuple[Any, float, float]:
    """The probabilities of every customer scored `size` customers at a time, and the
    seconds spent on features and on predicting."""
    import numpy as np

    order_ids = orders["customer_id"].to_numpy()
    event_ids = events["customer_id"].to_numpy()
    customer_ids = customers["customer_id"].to_numpy()
    parts: list[Any] = []
    features_seconds = predict_seconds = 0.0
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
        features_seconds += f_s
        predict_seconds += p_s
    return np.concatenate(parts), features_seconds, predict_seconds


def _copy_reference(config: dict[str, Any], *, index: Any, probability: Any, tiers: Any) -> float:
    """COPY (customer_id, probability, tier) into a fresh unindexed table; the seconds taken
    (creating the table not included)."""
    import io

    import pandas as pd
    import psycopg

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
        return time.perf_counter() - t0
