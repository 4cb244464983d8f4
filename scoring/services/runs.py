"""Scoring runs: create a run and its chunks of customer ids, score a chunk (idempotent),
finish with tiers ranked over the run, counts and drift, or fail; plus the cutoff dates runs
are scored as of."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Count, Q
from django.utils import timezone

from common.compute import threads_limited
from common.db.bulk import bulk_insert, tables_analyze
from customers.models import Customer
from customers.selectors import (
    customer_id_ranges,
    customers_frame_for_ids,
    events_frame_for_ids,
    orders_frame_for_ids,
)
from scoring.errors import ScoringError
from scoring.ml.distill import Student
from scoring.ml.drift import DriftReference, counts_from_cumulative, population_stability
from scoring.ml.features import build_features, merge_statistics, order_statistics
from scoring.ml.tiers import BAND, NOT_SCORABLE
from scoring.models import (
    ChurnModel,
    CustomerScore,
    RunKind,
    RunStatus,
    ScoringChunk,
    ScoringRun,
)
from scoring.selectors import churn_model_active, risk_tier_edges, risk_tier_rules
from scoring.services.statistics import (
    statistics_kept,
    statistics_snapshot,
    statistics_store,
    statistics_tidy,
    statistics_usable,
)
from scoring.services.tiers import TierReassignment, tiers_reassign
from scoring.services.training import ScoredFrame, churn_model_estimator, score_features

logger = logging.getLogger(__name__)

# A chunk's scorable scores as it keeps them for the run's finish (ScoringChunk.scored): the
# customer, the probability as stored, and the chunk's tier as its position in the chunk's
# tier_names. Reading them back from 20 chunks instead of a million scores from the table
# (0.33 s of a 1M run's finish, a serial step: docs/scaling.md, tenth session).
CHUNK_SCORES = np.dtype([("customer_id", "<i8"), ("probability", "<f8"), ("tier", "<i2")])


def scoring_run_create(
    *, as_of: datetime, run_key: str | None = None, model: ChurnModel | None = None
) -> tuple[ScoringRun, list[tuple[int, int]]] | None:
    """Create the run row and its chunks of customer ids; None if `run_key` already ran.

    The unique run_key (e.g. nightly-2026-11-24) is the guard against a doubled periodic run.
    """
    model = model or churn_model_active()
    if model is None:
        raise ScoringError("there is no active churn model: train one with manage.py churn_train")
    total, chunks = customer_id_ranges(settings.SCORING_CHUNK_CUSTOMERS)
    key = run_key or f"manual-{timezone.now():%Y%m%dT%H%M%S.%f}"
    try:
        with transaction.atomic():
            run = ScoringRun.objects.create(
                run_key=key,
                model=model,
                as_of=as_of,
                customers_total=total,
                chunks_total=len(chunks),
                reasons_from=reasons_threshold(model=model),
            )
    except IntegrityError:
        return None
    return run, chunks


# A run's chunks explain the customers from this share of the last run's at-risk bound down
# (`reasons_threshold`): a margin for tonight's probabilities moving against last night's.
# The bound is a quantile of every scored customer under the same model, which moves little
# from one night to the next (the 1M-customer bench: not at all); whoever falls between it and
# the margin is explained at the finish. 0.9 explained 370,762 there for 308,313 needed, 0.97
# explains 324,611 (docs/scaling.md, eighth session).
REASONS_MARGIN = 0.97
# Customers per batch when the finish explains those the chunks did not (`_explain_the_rest`).
EXPLAIN_BATCH = 2_000
# The statistics target of the ANALYZE a run's finish asks for (`_run_analyze`).
RUN_ANALYZE_TARGET = 25
# The columns a run writes, which the finish has PostgreSQL ANALYZE (`tables_analyze`): the
# planner's statistics of the others stay true, and the JSON ones (reasons, waterfalls,
# attributes) are the dearest to sample — nothing looks inside them. Half the whole tables'
# time at 1M customers (0.25 s against 0.5 s).
SCORING_RUN_COLUMNS = {
    CustomerScore: (
        "run",
        "customer",
        "probability",
        "tier",
        "scored_at",
        "scorable",
        "not_scorable_reason",
        "sequence",
        "trigger",
        "student_leaf",
    ),
    Customer: (
        "churn_probability",
        "risk_tier",
        "scored_at",
        "score_model_version",
        "score_student_leaf",
    ),
}


def reasons_threshold(*, model: ChurnModel) -> float | None:
    """The probability from which a run's chunks explain customers (None: the tiers' band
    bound, `score_features`' default).

    Reasons are for the customers in a tier above the least severe: the ones campaigns target
    and agents call. With band tiers that is the second tier's bound, known to every chunk.
    With rank tiers (the default: the top 5%, 10%, 20%) it depends on the whole run, which a
    chunk cannot see; the last completed run of the same model knows it (`at_risk_from`), and
    the chunks explain from a little below it (`REASONS_MARGIN`). Anyone ranked above the
    least severe tier and still unexplained is explained at the finish (`_explain_the_rest`),
    so the threshold only decides how much work the chunks do, never who has reasons. Before,
    a rank-tier run explained everyone above the second tier's band bound whatever the ranks:
    675,429 of 1M customers in the benchmark, against 308,313 in the tiers above the least."""
    rules = risk_tier_rules()
    if all(rule.mode == BAND for rule in rules[:-1]):
        return None
    last = (
        ScoringRun.objects.filter(
            status=RunStatus.COMPLETED,
            kind=RunKind.SCHEDULED,
            model=model,
            at_risk_from__isnull=False,
        )
        .order_by("-finished_at", "-pk")
        .first()
    )
    if last is None or last.at_risk_from is None:
        return None
    return last.at_risk_from * REASONS_MARGIN


def scoring_run_chunks() -> list[list[int]]:
    """The chunks of today's customers ([first id, last id] each), as `scoring_run_create`
    splits them: what a resumed run (its first start died) scores again."""
    return [list(pair) for pair in customer_id_ranges(settings.SCORING_CHUNK_CUSTOMERS)[1]]


def scoring_chunk_score(
    *,
    run: ScoringRun,
    first_id: int,
    last_id: int,
    frames: RangeFrames | None = None,
    writer: Callable[[Callable[[], int]], None] | None = None,
) -> int:
    """Score the customers with first_id ≤ id ≤ last_id for `run`; safe to run twice.

    A chunk's scores and the customers' latest-score columns are written in one transaction,
    so a chunk with any score of this run is complete: a retried or redelivered chunk finds it
    and writes nothing (and two attempts at once meet the unique (run, customer) constraint).
    Returns the scores written — or, given a `writer` (`chunk_writes_behind`), hands it that
    transaction and returns the scores it will write.
    """
    mine = CustomerScore.objects.filter(
        run=run, customer_id__gte=first_id, customer_id__lte=last_id
    )
    if mine.exists():
        return 0
    model = run.model
    ranged = range_score(
        model=model,
        estimator=churn_model_estimator(model=model),
        first_id=first_id,
        last_id=last_id,
        as_of=run.as_of,
        frames=frames,
        reasons_from=run.reasons_from,
    )
    if ranged is None:
        return 0
    features, scorable, scored = ranged.features, ranged.scorable, ranged.scored
    fresh, snapshot = ranged.fresh, ranged.snapshot
    scores = _scores_frame(run=run, index=features.index, scorable=scorable, scored=scored)
    scores["student_leaf"] = student_leaves(
        student=model_student(model=model), features=features, scorable=scorable
    ).array
    kept, tier_names = _chunk_scores_packed(features.index, scorable, scored)

    def write() -> int:
        try:
            with transaction.atomic():
                written = bulk_insert(CustomerScore, scores, json_text=("reasons", "attributions"))
                _customers_take_scores(run=run, first_id=first_id, last_id=last_id)
                ScoringChunk.objects.create(
                    run=run,
                    first_id=first_id,
                    last_id=last_id,
                    customers=int(scorable.sum()),  # the rows counted into feature_counts
                    feature_counts=scored.drift_counts,
                    scores=len(scores),
                    score_counts=scored.score_counts,
                    scored=kept,
                    tier_names=tier_names,
                )
        except IntegrityError:
            if mine.exists():  # another attempt at this chunk committed first
                return 0
            raise
        if fresh is not None and snapshot is not None:
            statistics_store(statistics=fresh, snapshot=snapshot)
        return written

    if writer is None:
        return write()
    writer(write)
    return len(scores)


@dataclass(frozen=True)
class RangeFrames:
    """What scoring reads of a range of customers: customers, orders and events; and, where
    order statistics are kept (scoring.services.statistics), the stored statistics usable as
    of the run's date — `orders` then holds only the other customers' orders — and the
    snapshot taken before the reads."""

    customers: pd.DataFrame
    orders: pd.DataFrame
    events: pd.DataFrame
    statistics: pd.DataFrame | None = None
    snapshot: str | None = None


# Below this share of a chunk's customers with stale statistics, their orders are read by id
# (an index lookup each); above it, the chunk's whole range is read and the rest dropped.
STALE_READ_BY_ID = 0.3


def range_frames(
    *,
    first_id: int | None = None,
    last_id: int | None = None,
    ids: Sequence[int] | None = None,
    as_of: datetime | None = None,
) -> RangeFrames:
    """The customers first_id ≤ id ≤ last_id (or those of `ids`) as scoring reads them; for a
    range scored as of `as_of`, with the stored order statistics where they are kept."""
    where: dict[str, Any] = {"first_id": first_id, "last_id": last_id, "ids": ids}
    kept = as_of is not None and ids is None and first_id is not None and statistics_kept()
    snapshot = statistics_snapshot() if kept else None
    customers = customers_frame_for_ids(**where)
    if customers.empty:
        return RangeFrames(customers, pd.DataFrame(), pd.DataFrame())
    if not kept:
        return RangeFrames(customers, orders_frame_for_ids(**where), events_frame_for_ids(**where))
    assert first_id is not None and last_id is not None and as_of is not None
    stored = statistics_usable(first_id=first_id, last_id=last_id, as_of=as_of)
    stale = customers["customer_id"][~customers["customer_id"].isin(stored.index)]
    if len(stale) < STALE_READ_BY_ID * len(customers):
        orders = orders_frame_for_ids(ids=stale.tolist())
    else:
        orders = orders_frame_for_ids(**where)
        orders = orders[~orders["customer_id"].isin(stored.index)]
    return RangeFrames(customers, orders, events_frame_for_ids(**where), stored, snapshot)


class RangeScores(NamedTuple):
    """`range_score`'s result: the features (every customer), which of them the model can
    score, their scores, and the order statistics computed from orders read this time (to be
    stored; None where statistics are not kept), with the snapshot taken before the reads."""

    features: pd.DataFrame
    scorable: np.ndarray
    scored: ScoredFrame
    fresh: pd.DataFrame | None = None
    snapshot: str | None = None


def range_score(
    *,
    model: ChurnModel,
    estimator: Any,
    as_of: datetime,
    first_id: int | None = None,
    last_id: int | None = None,
    ids: Sequence[int] | None = None,
    frames: RangeFrames | None = None,
    reasons_from: float | None = None,
) -> RangeScores | None:
    """The one feature path: the customers first_id ≤ id ≤ last_id (or those of `ids`) read
    from the database (or given as `frames`, read ahead), their features as of `as_of` (the
    frame; from the stored order statistics where they are usable, from orders otherwise),
    which of them the model can score, and the scores (with the tier ranked within these
    customers and the reasons of those from `reasons_from` up: `score_features`). None when
    there is no such customer. A scoring chunk and an event-triggered rescore
    (scoring.services.realtime) both call it."""
    frames = frames or range_frames(first_id=first_id, last_id=last_id, ids=ids, as_of=as_of)
    customers = frames.customers
    if customers.empty:
        return None
    with threads_limited(settings.SCORING_COMPUTE_THREADS):
        return _frames_score(model, estimator, as_of, frames, reasons_from)


def _frames_score(
    model: ChurnModel,
    estimator: Any,
    as_of: datetime,
    frames: RangeFrames,
    reasons_from: float | None,
) -> RangeScores:
    customers = frames.customers
    index = pd.Index(customers["customer_id"], name="customer_id")
    statistics = order_statistics(orders=frames.orders, index=index, as_of=pd.Timestamp(as_of))
    fresh = None
    if frames.statistics is not None:
        fresh = statistics[~index.isin(frames.statistics.index)]
        statistics = merge_statistics(statistics, frames.statistics)
    features = build_features(
        orders=frames.orders,
        events=frames.events,
        customers=customers,
        as_of=pd.Timestamp(as_of),
        event_kinds=model.reference.get("event_kinds") or None,
        btyd_params=model.reference.get("btyd_params"),
        statistics=statistics,
    )
    scorable = scorable_mask(model=model, features=features)
    scored = score_features(
        model=model, estimator=estimator, features=features[scorable], reasons_from=reasons_from
    )
    return RangeScores(features, scorable, scored, fresh, frames.snapshot)


def model_student(*, model: ChurnModel) -> Student | None:
    """The model's readable student (scoring.ml.distill), None when it has none."""
    data = (model.reference or {}).get("student")
    return Student.from_dict(data) if data else None


def student_leaves(
    *, student: Student | None, features: pd.DataFrame, scorable: np.ndarray | None = None
) -> pd.Series:
    """The student's leaf of every row of `features` (build_features' columns), vectorised:
    the inputs its rules read, typed as at distillation (numbers as float64, categories as
    text), then `Student.leaf_of`. <NA> where not scorable, or the model has no student."""
    out = pd.Series(pd.NA, index=features.index, dtype="Int16")
    if student is None or len(features) == 0:
        return out
    columns: dict[str, pd.Series] = {}
    for leaf in student.leaves:
        for condition in leaf.conditions:
            name = condition.column
            if name in columns:
                continue
            values = (
                features[name]
                if name in features
                else pd.Series(np.nan, index=features.index, dtype=object)
            )
            if condition.kind in ("lt", "ge"):
                columns[name] = pd.to_numeric(values, errors="coerce").astype(np.float64)
            else:
                columns[name] = values.astype(str).where(values.notna(), None)
    leaves = student.leaf_of(pd.DataFrame(columns, index=features.index))
    known = leaves >= 0
    if scorable is not None:
        known &= np.asarray(scorable, dtype=bool)
    values = pd.array(np.where(known, leaves, 0), dtype="Int16")
    values[~known] = pd.NA
    return pd.Series(values, index=features.index)


def scorable_mask(*, model: ChurnModel, features: pd.DataFrame) -> np.ndarray:
    """Which customers of `features` (build_features') the model can score honestly: everyone
    for a model trained on an explicit label; for a behaviour label, only customers with a
    completed order before the scoring date (the population it was trained on, as
    `labels.eligible_customer_ids` picks it; anyone else would get a probability the model has
    no basis for, e.g. 99% for a customer who never ordered)."""
    if model.label_definition.get("kind") != "behaviour":
        return np.ones(len(features), dtype=bool)
    return np.asarray(features["orders_lifetime"].to_numpy() > 0)


def not_scorable_reason(*, model: ChurnModel, as_of: datetime) -> str:
    return (
        f"no completed order before {as_of:%Y-%m-%d}: model {model.version} learned churn from "
        "customers' orders (behaviour label) and knows nothing about this customer"
    )


def _scores_frame(
    *, run: ScoringRun, index: pd.Index, scorable: np.ndarray, scored: ScoredFrame
) -> pd.DataFrame:
    """One score row per customer of `index`; not-scorable ones without a probability.

    The tier here is ranked within the chunk only; `scoring_run_finish` re-tiers the run.
    """
    probability = np.full(len(index), np.nan)
    probability[scorable] = scored.probability.astype(float)
    tier = np.full(len(index), NOT_SCORABLE, dtype=object)
    tier[scorable] = scored.tier
    reasons = np.full(len(index), "[]", dtype=object)
    reasons[scorable] = scored.explanations.reasons_json()
    attributions = np.full(len(index), "{}", dtype=object)
    attributions[scorable] = scored.explanations.attributions_json()
    return pd.DataFrame(
        {
            "run_id": run.pk,
            "customer_id": index.to_numpy(),
            "probability": probability,
            "tier": tier,
            "reasons": reasons,
            "attributions": attributions,
            "scored_at": timezone.now(),
            "scorable": scorable,
            "not_scorable_reason": np.where(
                scorable, "", not_scorable_reason(model=run.model, as_of=run.as_of)
            ),
        }
    )


def _chunk_scores_packed(
    index: pd.Index, scorable: np.ndarray, scored: ScoredFrame
) -> tuple[bytes, list[str]]:
    """The chunk's scorable scores as `CHUNK_SCORES` records, and the tier names their codes
    point into."""
    codes, names = pd.factorize(np.asarray(scored.tier, dtype=object))
    records = np.empty(len(codes), dtype=CHUNK_SCORES)
    records["customer_id"] = index.to_numpy(dtype=np.int64)[scorable]
    records["probability"] = scored.probability.astype(np.float64)
    records["tier"] = codes
    return records.tobytes(), [str(name) for name in names]


def _chunks_ranked_rows(run: ScoringRun) -> Callable[[list[str]], pd.DataFrame | None]:
    """The run's scorable scores as its chunks kept them (`tiers_reassign`'s `ranked_rows`),
    or None — the scores are read then — where a chunk kept none (written before they were
    kept) or the run was re-tiered once already (a finish run again: the scores' tiers are no
    longer the chunks')."""

    def rows(names: list[str]) -> pd.DataFrame | None:
        if ScoringRun.objects.filter(pk=run.pk).values_list("tier_counts", flat=True).first():
            return None
        kept = list(ScoringChunk.objects.filter(run=run).values_list("scored", "tier_names"))
        blobs = [blob for blob, _ in kept if blob is not None]
        if not kept or len(blobs) < len(kept):
            return None
        position = {name: i for i, name in enumerate(names)}
        parts = []
        for blob, (_, tier_names) in zip(blobs, kept, strict=True):
            records = np.frombuffer(blob, dtype=CHUNK_SCORES)
            old = np.asarray([position.get(name, -1) for name in tier_names] or [-1])
            parts.append(
                pd.DataFrame(
                    {
                        "customer_id": records["customer_id"],
                        "probability": records["probability"],
                        "old": old[records["tier"]],
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    return rows


def _customers_take_scores(*, run: ScoringRun, first_id: int, last_id: int) -> int:
    """Copy this run's scores of a chunk into the customers' latest-score columns, in one
    set-based UPDATE (no row passes through Python). Returns the customers updated.

    The customers' id range is stated on both tables: with it on the scores alone PostgreSQL
    hash-joined a sequential scan of every customer (1M rows) for each chunk (0.9–1.5 s a
    chunk of 50,000; 0.5–0.6 s with the range, a scan of the primary key's range)."""
    quote = connection.ops.quote_name
    customers, scores = quote(Customer._meta.db_table), quote(CustomerScore._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and connection.in_atomic_block:
            # Its estimated cost passes jit_above_cost, and compiling it took ~10 ms of each
            # chunk's 50,000 rows (EXPLAIN ANALYZE on the bench data) for no faster update.
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            f"UPDATE {customers} SET churn_probability = s.probability, risk_tier = s.tier, "
            "scored_at = s.scored_at, score_model_version = %s, "
            "score_student_leaf = s.student_leaf "
            f"FROM {scores} s WHERE s.run_id = %s AND s.customer_id BETWEEN %s AND %s "
            f"AND {customers}.id BETWEEN %s AND %s AND {customers}.id = s.customer_id",
            [run.model.version, run.pk, first_id, last_id, first_id, last_id],
        )
        return max(cursor.rowcount, 0)


def scoring_run_finish(*, run: ScoringRun) -> ScoringRun:
    """Count what the chunks wrote, check drift against training, and close the run."""
    run.refresh_from_db()
    chunks = list(ScoringChunk.objects.filter(run=run).values_list("scores", "customers"))
    run.chunks_done = len(chunks)
    counted = [(scores, customers) for scores, customers in chunks if scores is not None]
    if len(counted) == len(chunks):
        # Every chunk counted what it wrote (in the transaction that wrote it): no need to
        # count a million rows again.
        customers_scored = sum(scores for scores, _ in counted)
        not_scorable = sum(scores - customers for scores, customers in counted)
    else:  # chunks written before they counted their scores
        written = CustomerScore.objects.filter(run=run).aggregate(
            n=Count("pk"), not_scorable=Count("pk", filter=Q(scorable=False))
        )
        customers_scored, not_scorable = written["n"], written["not_scorable"]
    _run_analyze(grew_by=customers_scored)
    # Rank tiers are ranks within the whole run: re-tiered from what the chunks kept.
    reassigned = tiers_reassign(run=run, ranked_rows=_chunks_ranked_rows(run))
    run.refresh_from_db()
    run.chunks_done = len(chunks)
    run.customers_scored, run.customers_not_scorable = customers_scored, not_scorable
    run.at_risk_from = reassigned.at_risk_from
    explained = _explain_the_rest(run=run, at_risk=reassigned)
    run.timings = {**run.timings, "explained_at_finish": explained}
    run.drift = scoring_run_drift(run=run)
    statistics_tidy()
    run.status = RunStatus.COMPLETED
    run.finished_at = timezone.now()
    run.timings = {**run.timings, "seconds": (run.finished_at - run.started_at).total_seconds()}
    run.save()
    return run


def _run_analyze(*, grew_by: int) -> None:
    """Have PostgreSQL ANALYZE the columns a run writes (`SCORING_RUN_COLUMNS`), before the
    finish re-tiers: the re-tiering's writes find the run's scores by (run, customer), and
    with the statistics of the night before — the run not in them, the table a million rows
    smaller — they took 0.41–0.52 s for ~3,300 changed tiers in a 1M run's finish instead of
    ~0.05 s (docs/scaling.md, tenth session). A sample of `RUN_ANALYZE_TARGET` (7,500 rows):
    the point is the new rows' count and values for the next statements' plans, which it
    gives in 80–110 ms where the default 30,000 rows took 0.31–0.40 s; autovacuum refines it
    later. The sample sees the chunks' tiers, before the re-tiering moves a few percent."""
    tables_analyze(
        CustomerScore,
        Customer,
        grew_by=grew_by,
        columns=SCORING_RUN_COLUMNS,
        statistics_target=RUN_ANALYZE_TARGET,
    )


def _explain_the_rest(*, run: ScoringRun, at_risk: TierReassignment) -> int:
    """Explain the customers ranked above the least severe tier (`at_risk`: the run's
    re-tiering, which read every score) whom the chunks left without reasons (their
    probability was below the run's `reasons_from`): read again, scored as of the run's date
    with reasons, and stored where the probability is the one stored (a customer whose data
    changed since the chunk keeps the score without reasons, logged). Returns how many were
    explained; 0 when the threshold was exact or generous enough (no query at all)."""
    edges, _names = risk_tier_edges()
    floor = run.reasons_from if run.reasons_from is not None else (edges[0] if edges else 0.0)
    below = at_risk.at_risk_customers[at_risk.at_risk_probabilities < floor].tolist()
    missing: list[tuple[int, int, float | None]] = []
    for start in range(0, len(below), EXPLAIN_BATCH):
        missing += CustomerScore.objects.filter(
            run=run, customer_id__in=below[start : start + EXPLAIN_BATCH]
        ).values_list("pk", "customer_id", "probability")
    if not missing:
        return 0
    missing.sort(key=lambda row: row[1])
    estimator = churn_model_estimator(model=run.model)
    explained = changed = 0
    for start in range(0, len(missing), EXPLAIN_BATCH):
        batch = missing[start : start + EXPLAIN_BATCH]
        ranged = range_score(
            model=run.model,
            estimator=estimator,
            ids=[customer for _, customer, _ in batch],
            as_of=run.as_of,
            reasons_from=0.0,
        )
        if ranged is None:
            continue
        features, scorable, scored = ranged.features, ranged.scorable, ranged.scored
        found = {
            int(customer): (float(p), reasons, waterfall)
            for customer, p, reasons, waterfall in zip(
                features.index[scorable],
                scored.probability,
                scored.explanations.reasons_json(),
                scored.explanations.attributions_json(),
                strict=True,
            )
        }
        rows = []
        for pk, customer, stored in batch:
            p, reasons, waterfall = found.get(customer, (math.nan, "[]", "{}"))
            if not abs(p - float(stored or math.nan)) <= 1e-12:  # NaN too: the data changed
                changed += 1
                continue
            row = CustomerScore(pk=pk, reasons=json.loads(reasons))
            row.attributions = json.loads(waterfall)
            rows.append(row)
        CustomerScore.objects.bulk_update(rows, ["reasons", "attributions"])
        explained += len(rows)
    if changed:
        logger.warning(
            "run %s: %d customers ranked at risk are left without reasons: their data changed "
            "between their chunk and the finish (the next run explains them)",
            run.run_key,
            changed,
        )
    return explained


def scoring_run_drift(*, run: ScoringRun) -> dict[str, Any]:
    """PSI of the run's scores and of every scored customer's features against training."""
    reference_data = run.model.reference.get("drift")
    if not reference_data:
        return {}
    reference = DriftReference.from_dict(reference_data)
    chunks = list(
        ScoringChunk.objects.filter(run=run).values_list(
            "feature_counts", "customers", "score_counts"
        )
    )
    score_counts = None
    counted = [c for _, _, c in chunks]
    bins = len(reference.score.edges) + 2 if reference.score is not None else 0
    if reference.score is not None and all(c is not None and len(c) == bins for c in counted):
        # Every chunk counted its probabilities into the reference's score bins.
        score_counts = np.zeros(bins)
        for c in counted:
            score_counts += np.asarray(c, dtype=np.float64)
    elif reference.score is not None:  # chunks written before they counted their scores
        # Counted by the database into the reference's bins: no million values sent over.
        edges = reference.score.edges
        found = CustomerScore.objects.filter(run=run, scorable=True).aggregate(
            present=Count("pk", filter=Q(probability__isnull=False)),
            missing=Count("pk", filter=Q(probability__isnull=True)),
            **{f"le{i}": Count("pk", filter=Q(probability__lte=e)) for i, e in enumerate(edges)},
        )
        score_counts = counts_from_cumulative(
            [found[f"le{i}"] for i in range(len(edges))],
            present=found["present"],
            missing=found["missing"],
        )
    # Every chunk counted its customers' features into the reference bins: add them up.
    counts: dict[str, np.ndarray] = {}
    rows = 0
    for chunk_counts, customers, _ in chunks:
        rows += customers
        for name, values in chunk_counts.items():
            counts[name] = counts.get(name, 0) + np.asarray(values, dtype=np.float64)
    report = population_stability(
        reference=reference, counts=counts, n_rows=rows, score_counts=score_counts
    )
    return asdict(report)


def scoring_run_get(*, run_key: str) -> ScoringRun:
    return ScoringRun.objects.select_related("model").get(run_key=run_key)


def scoring_run_fail(*, run: ScoringRun, error: str) -> None:
    ScoringRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, error=error[:5000], finished_at=timezone.now()
    )


def scoring_run_execute(
    *,
    as_of: datetime,
    run_key: str | None = None,
    on_chunk: Callable[[int, int], object] | None = None,
) -> ScoringRun | None:
    """Score every customer in-process, chunk by chunk (the embedded mode and the demo).

    On PostgreSQL, outside a transaction, the next chunk's customers, orders and events are
    read by a second connection while this one computes (`chunks_read_ahead`), and each chunk's
    scores are written by writer connections of their own while the next are computed
    (`chunk_writes_behind`): the database's work and ours overlap on two cores. In production
    `scoring.tasks.scoring_run_task` fans the same chunk function out to workers.
    """
    created = scoring_run_create(as_of=as_of, run_key=run_key)
    if created is None:
        return None
    run, chunks = created
    try:
        with chunk_writes_behind(len(chunks)) as writer:
            for (first_id, last_id), frames in chunks_read_ahead(chunks, as_of=run.as_of):
                written = scoring_chunk_score(
                    run=run, first_id=first_id, last_id=last_id, frames=frames, writer=writer
                )
                if on_chunk:
                    on_chunk(first_id, written)
    except Exception as exc:
        scoring_run_fail(run=run, error=f"{type(exc).__name__}: {exc}")
        raise
    return scoring_run_finish(run=run)


def chunks_read_ahead(
    chunks: Sequence[tuple[int, int]], *, as_of: datetime
) -> Iterator[tuple[tuple[int, int], RangeFrames | None]]:
    """Each chunk with its frames, read one chunk ahead by a thread of its own (its own
    database connection, closed at the end) — on PostgreSQL outside a transaction only: another
    connection sees only committed rows, and SQLite has one writer. Otherwise (None) the chunk
    reads its frames itself, as before."""
    if not _threads_may_share_the_work(len(chunks)):
        yield from ((chunk, None) for chunk in chunks)
        return

    def read(chunk: tuple[int, int]) -> RangeFrames:
        return range_frames(first_id=chunk[0], last_id=chunk[1], as_of=as_of)

    with ThreadPoolExecutor(1, thread_name_prefix="scoring-read-ahead") as reader:
        ahead = reader.submit(read, chunks[0])
        try:
            for index, chunk in enumerate(chunks):
                frames = ahead.result()
                if index + 1 < len(chunks):
                    ahead = reader.submit(read, chunks[index + 1])
                yield chunk, frames
        finally:
            ahead.cancel()
            reader.submit(connections.close_all).result()  # the reader thread's connection


def _threads_may_share_the_work(chunks: int) -> bool:
    """Reads ahead and writes behind on connections of their own: on PostgreSQL, outside a
    transaction (another connection sees only committed rows; SQLite has one writer), and only
    when there is a next chunk to overlap with."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block and chunks > 1


@contextmanager
def chunk_writes_behind(chunks: int) -> Iterator[Callable[[Callable[[], int]], None] | None]:
    """A writer for `scoring_chunk_score`: threads of their own (`SCORING_WRITE_CONNECTIONS`,
    one connection each, closed at the end) run the chunks' write transactions, in turn,
    while the caller computes the next chunks — when `_threads_may_share_the_work`; else None
    (each chunk writes in place, as before).

    A chunk's write (its COPY, the customers' UPDATE, the statistics) is mostly the database's
    work on one connection: with one writer it was the run's longest serial path (27.7 of 59 s
    at 1M customers) while a core sat idle; two connections write two chunks at once (their
    rows never overlap: disjoint id ranges). At most one write waits per connection: handing
    over a chunk first waits for that connection's previous one, and its error is raised there
    (or on leaving), so a failed write stops the run within the next chunks."""
    if not _threads_may_share_the_work(chunks):
        yield None
        return
    count = max(1, min(int(settings.SCORING_WRITE_CONNECTIONS), chunks))
    threads = [
        ThreadPoolExecutor(1, thread_name_prefix=f"scoring-write-behind-{n}") for n in range(count)
    ]
    pending: list[Future[int] | None] = [None] * count
    turn = [0]

    def writer(write: Callable[[], int]) -> None:
        n = turn[0] % count
        turn[0] += 1
        before, pending[n] = pending[n], None
        if before is not None:
            before.result()
        pending[n] = threads[n].submit(write)

    try:
        yield writer
        for n, waiting in enumerate(pending):
            pending[n] = None
            if waiting is not None:
                waiting.result()
    finally:
        for waiting in pending:  # leaving on an error: let the other writes finish quietly
            if waiting is not None:
                waiting.exception()
        for thread in threads:
            thread.submit(connections.close_all).result()  # each writer thread's connection
            thread.shutdown()


def scoring_warm_up(*, customers: int) -> int:
    """Score the first `customers` customers with the active model as of today, writing
    nothing: the model loaded and checked (`churn_model_estimator`, the closed form's and the
    transforms' checks, all kept for the process), so that a worker's first chunk or event
    rescore does not pay for them. Returns the customers scored (0: no model, or none)."""
    model = churn_model_active()
    if model is None or customers <= 0:
        return 0
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:customers])
    if not ids:
        return 0
    ranged = range_score(
        model=model,
        estimator=churn_model_estimator(model=model),
        ids=ids,
        as_of=default_as_of(),
        reasons_from=0.0,
    )
    return 0 if ranged is None else len(ranged.scored.probability)


def default_as_of() -> datetime:
    """Midnight UTC today: the cutoff of a nightly run."""
    today = timezone.now().date()
    return datetime(today.year, today.month, today.day, tzinfo=UTC)


def parse_as_of(value: str | date | None) -> datetime:
    """A date or ISO datetime as an aware UTC datetime (a date means its midnight)."""
    if value is None:
        return default_as_of()
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()
