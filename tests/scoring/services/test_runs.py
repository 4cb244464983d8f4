"""Scoring runs against the database: every customer scored once, chunks idempotent, drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from customers.models import Customer
from scoring.models import CustomerScore, ScoringChunk, ScoringRun
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import (
    REASONS_MARGIN,
    parse_as_of,
    scoring_chunk_score,
    scoring_run_create,
    scoring_run_drift,
    scoring_run_execute,
    scoring_run_finish,
)
from scoring.services.training import churn_model_train

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(labelled_customers: Path, artifact_dir: Path) -> None:
    data = training_data_from_database(label_attribute="Churn")
    churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3)


def test_a_scoring_run_scores_everyone_once_and_its_key_guards_a_rerun(trained: None) -> None:
    as_of = parse_as_of("2024-06-01")
    run = scoring_run_execute(as_of=as_of, run_key="nightly-2024-06-01")
    assert run is not None and run.customers_scored == Customer.objects.count() == 600
    assert sum(run.tier_counts.values()) == 600
    assert scoring_run_execute(as_of=as_of, run_key="nightly-2024-06-01") is None
    assert CustomerScore.objects.count() == 600
    # A chunk scored again (a retried task) writes nothing twice.
    first, last = Customer.objects.order_by("pk").values_list("pk", flat=True)[::599]
    assert scoring_chunk_score(run=run, first_id=first, last_id=last) == 0
    assert CustomerScore.objects.count() == 600
    customer = Customer.objects.order_by("-churn_probability").first()
    assert customer is not None and customer.risk_tier == "critical"
    score = CustomerScore.objects.get(customer=customer)
    assert score.reasons and score.probability == customer.churn_probability
    assert run.drift["status"] in {"ok", "watch", "alert"}
    # Drift covers every scored customer, counted chunk by chunk.
    assert run.drift["n_rows"] == 600 and run.chunks_done == run.chunks_total
    assert sum(c.customers for c in run.chunks.all()) == 600


def test_a_run_in_several_chunks_scores_like_one_chunk(trained: None, settings) -> None:
    as_of = parse_as_of("2024-06-01")
    whole = scoring_run_execute(as_of=as_of, run_key="whole")
    settings.SCORING_CHUNK_CUSTOMERS = 70
    chunked = scoring_run_execute(as_of=as_of, run_key="chunked")
    assert whole is not None and chunked is not None
    assert whole.chunks_total == 1 and chunked.chunks_total == 9
    assert chunked.tier_counts == whole.tier_counts
    assert chunked.drift["psi"] == pytest.approx(whole.drift["psi"])

    assert _scores("chunked") == _scores("whole")


def test_the_finish_counts_and_measures_drift_from_what_the_chunks_counted(
    trained: None, settings
) -> None:
    """Each chunk counts the scores it wrote and their probabilities into the drift bins; the
    finish adds them up — the very figures the database gives counting every score."""
    settings.SCORING_CHUNK_CUSTOMERS = 70
    run = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="counted")
    assert run is not None and run.drift["score_psi"] is not None
    scores = CustomerScore.objects.filter(run=run)
    assert run.customers_scored == scores.count() == 600
    assert run.customers_not_scorable == scores.filter(scorable=False).count()
    counted = list(run.chunks.values_list("scores", "score_counts"))
    assert len(counted) == 9 and sum(n for n, _ in counted) == 600
    assert sum(sum(c) for _, c in counted) == scores.filter(scorable=True).count()
    # Chunks written before they counted (null): the database counts, to the same drift.
    ScoringChunk.objects.filter(run=run).update(scores=None, score_counts=None)
    by_database = scoring_run_drift(run=run)
    assert by_database["score_psi"] == pytest.approx(run.drift["score_psi"], abs=1e-12)
    assert by_database == {**run.drift, "score_psi": by_database["score_psi"]}


def test_each_chunk_keeps_its_scores_and_the_finish_re_tiers_from_them(
    trained: None, settings, monkeypatch
) -> None:
    """A chunk keeps its scorable scores (customer, probability, its chunk-ranked tier) as
    packed records beside the rows it wrote; the finish re-tiers the run from them, without
    reading the scores back, to the tiers the scores themselves give."""
    import numpy as np

    import scoring.services.tiers as tiers
    from scoring.services.runs import CHUNK_SCORES, _chunks_ranked_rows

    settings.SCORING_CHUNK_CUSTOMERS = 70
    created = scoring_run_create(as_of=parse_as_of("2024-06-01"), run_key="kept")
    assert created is not None
    run, chunks = created
    for first, last in chunks:
        scoring_chunk_score(run=run, first_id=first, last_id=last)
    kept = list(run.chunks.values_list("first_id", "last_id", "customers", "scored"))
    assert len(kept) == 9
    for first_id, last_id, customers, blob in kept:
        records = np.frombuffer(blob, dtype=CHUNK_SCORES)
        assert len(records) == customers
        assert np.all((records["customer_id"] >= first_id) & (records["customer_id"] <= last_id))
    # Before the finish the chunks' rows are the table's: customers, probabilities, tiers.
    names = ["critical", "high", "medium", "low"]
    from_chunks = _chunks_ranked_rows(run)(names)
    from_table = tiers._ranked_rows(
        run=run, names=names, where="run_id = %s AND scorable AND probability IS NOT NULL"
    )
    assert from_chunks is not None

    def ordered(frame):
        frame = frame.sort_values("customer_id")
        return [
            frame[c].to_numpy(dtype=float).tolist() for c in ("customer_id", "probability", "old")
        ]

    assert ordered(from_chunks) == ordered(from_table)
    finished = scoring_run_finish(run=run)
    # Re-tiered once: the chunks' tiers are no longer the scores' (a finish run again reads).
    assert _chunks_ranked_rows(run)(names) is None
    assert scoring_run_finish(run=run).tier_counts == finished.tier_counts

    # Scored again with the finish unable to read the scores: it re-tiers from the chunks.
    def unread(**kwargs):
        raise AssertionError("the finish read the scores back")

    monkeypatch.setattr(tiers, "_ranked_rows", unread)
    again = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="kept-again")
    assert again is not None and again.tier_counts == finished.tier_counts
    assert _scores("kept-again") == _scores("kept")


def test_the_finish_reads_the_scores_where_a_chunk_kept_none(trained: None, settings) -> None:
    """Chunks written before they kept their scores (null): the finish reads the scores, to the
    same tiers."""
    from scoring.services.runs import scoring_chunk_score, scoring_run_chunks

    settings.SCORING_CHUNK_CUSTOMERS = 70
    whole = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="whole-kept")
    created = scoring_run_create(as_of=parse_as_of("2024-06-01"), run_key="one-kept-none")
    assert whole is not None and created is not None
    run, chunks = created
    for first, last in chunks:
        scoring_chunk_score(run=run, first_id=first, last_id=last)
    assert [list(c) for c in chunks] == scoring_run_chunks()
    ScoringChunk.objects.filter(run=run, first_id=chunks[0][0]).update(scored=None)
    finished = scoring_run_finish(run=run)
    assert finished.tier_counts == whole.tier_counts
    assert _scores("one-kept-none") == _scores("whole-kept")


def _scores(run_key: str) -> list[tuple[int, float, str, list[str]]]:
    """Every score of a run, the least severe tier's without its reasons: a second run
    explains from just below the first's at-risk bound (`reasons_from`), so reasons in the
    least severe tier may differ between two runs of the same data; nothing else may."""
    rows = CustomerScore.objects.filter(run__run_key=run_key).order_by("customer_id")
    return [
        (customer, p, tier, reasons if tier != "low" else [])
        for customer, p, tier, reasons in rows.values_list(
            "customer_id", "probability", "tier", "reasons"
        )
    ]


def _at_risk_reasons(run: ScoringRun) -> dict[int, tuple[list[str], dict]]:
    """The reasons and waterfall of every customer of `run` in a tier above the least severe."""
    rows = CustomerScore.objects.filter(run=run).exclude(tier="low")
    return {c: (r, a) for c, r, a in rows.values_list("customer_id", "reasons", "attributions")}


def test_reasons_go_to_the_tiers_above_the_least_severe_from_the_last_runs_bound(
    trained: None,
) -> None:
    """A first run explains from the tiers' band bound; the next explains from just below the
    first's at-risk bound (the lowest probability above the least severe tier), and every
    customer above the least severe tier has reasons in both."""
    first = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="first")
    assert first is not None and first.reasons_from is None
    at_risk = CustomerScore.objects.filter(run=first).exclude(tier="low")
    assert first.at_risk_from == min(at_risk.values_list("probability", flat=True))
    second = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="second")
    assert second is not None
    assert second.reasons_from == pytest.approx(first.at_risk_from * REASONS_MARGIN)
    assert second.timings["explained_at_finish"] == 0
    assert _at_risk_reasons(second) == _at_risk_reasons(first)
    assert all(reasons for reasons, _ in _at_risk_reasons(second).values())
    low = CustomerScore.objects.filter(run=second, tier="low")
    below = low.filter(probability__lt=second.reasons_from)
    assert below.exists() and not below.exclude(reasons=[]).exists()
    assert all(a == {} for a in below.values_list("attributions", flat=True))


def test_the_finish_explains_the_at_risk_customers_the_chunks_left_out(
    trained: None, settings
) -> None:
    """A threshold set too high (tonight's scores far above last night's) leaves at-risk
    customers unexplained in the chunks: the finish explains them, with the very reasons and
    waterfall a chunk would have given."""
    first = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="first")
    assert first is not None
    ScoringRun.objects.filter(pk=first.pk).update(at_risk_from=0.99)
    settings.SCORING_CHUNK_CUSTOMERS = 200
    second = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="second")
    assert second is not None and second.reasons_from == pytest.approx(0.99 * REASONS_MARGIN)
    missed = CustomerScore.objects.filter(run=second, probability__lt=second.reasons_from).exclude(
        tier="low"
    )
    assert second.timings["explained_at_finish"] == missed.count() > 0
    assert _at_risk_reasons(second) == _at_risk_reasons(first)


def test_a_customer_whose_data_changed_before_the_finish_keeps_the_score_without_reasons(
    trained: None, caplog
) -> None:
    first = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="first")
    assert first is not None
    ScoringRun.objects.filter(pk=first.pk).update(at_risk_from=0.99)
    created = scoring_run_create(as_of=parse_as_of("2024-06-01"), run_key="second")
    assert created is not None
    run, chunks = created
    for first_id, last_id in chunks:
        scoring_chunk_score(run=run, first_id=first_id, last_id=last_id)
    # The most at-risk customer the chunks left unexplained changes before the finish.
    moved = (
        CustomerScore.objects.filter(run=run, probability__lt=run.reasons_from)
        .exclude(tier="low")
        .order_by("-probability")
        .first()
    )
    assert moved is not None
    customer = Customer.objects.get(pk=moved.customer_id)
    customer.attributes = {**customer.attributes, "signal": -3.0}
    customer.save(update_fields=["attributes"])
    finished = scoring_run_finish(run=run)
    moved.refresh_from_db()
    assert moved.tier != "low" and moved.reasons == [] and moved.attributions == {}
    assert finished.timings["explained_at_finish"] > 0
    assert "left without reasons" in caplog.text


def test_as_of_dates_are_midnight_utc() -> None:
    assert parse_as_of("2024-06-01").isoformat() == "2024-06-01T00:00:00+00:00"
    assert parse_as_of("2024-06-01T12:00:00+02:00").isoformat() == "2024-06-01T10:00:00+00:00"
    assert parse_as_of(None).hour == 0


@pytest.mark.django_db(transaction=True)
def test_chunks_read_ahead_on_a_second_connection_score_like_chunks_reading_in_place(
    require_postgres: None, labelled_customers: Path, artifact_dir: Path, settings
) -> None:
    """On PostgreSQL, outside a transaction, an in-process run reads the next chunk on a second
    connection and writes the last one on a third while it scores this one; the scores are
    those of a run reading and writing in place."""
    from django.db import transaction

    from scoring.services.runs import chunk_writes_behind, chunks_read_ahead

    trained_here = training_data_from_database(label_attribute="Churn")
    churn_model_train(data=trained_here, candidates=["lr_balanced"], n_splits=3)
    settings.SCORING_CHUNK_CUSTOMERS = 70
    as_of = parse_as_of("2024-06-01")
    with transaction.atomic():  # inside a transaction: each chunk reads and writes for itself
        assert all(frames is None for _, frames in chunks_read_ahead([(1, 2), (3, 4)], as_of=as_of))
        with chunk_writes_behind(2) as writer:
            assert writer is None
        in_place = scoring_run_execute(as_of=as_of, run_key="in-place")
    read = list(chunks_read_ahead([(0, 10**9), (10**9 + 1, 10**9 + 2)], as_of=as_of))
    assert [len(frames.customers) for _, frames in read if frames is not None] == [600, 0]
    ahead = scoring_run_execute(as_of=as_of, run_key="ahead")
    assert in_place is not None and ahead is not None and ahead.chunks_total == 9

    assert _scores("ahead") == _scores("in-place") and len(_scores("ahead")) == 600


@pytest.mark.django_db(transaction=True)
def test_a_write_behind_that_fails_fails_the_run(
    require_postgres: None, labelled_customers: Path, artifact_dir: Path, settings, monkeypatch
) -> None:
    """A writer thread's error is the run's: raised, and the run recorded failed. With two
    writer connections the chunks go to them in turn: the second chunk's write fails on the
    second connection, the third was handed to the first before that error could be seen, and
    the error is raised when the fourth is handed to the second — so the first and third
    chunks are written, whole, and the failed one not at all."""
    from scoring.models import RunStatus, ScoringRun
    from scoring.services import runs

    trained_here = training_data_from_database(label_attribute="Churn")
    churn_model_train(data=trained_here, candidates=["lr_balanced"], n_splits=3)
    settings.SCORING_CHUNK_CUSTOMERS = 100
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    calls: dict[int, str] = {}
    real = runs.bulk_insert

    def second_chunk_fails(model, frame, **kwargs):  # type: ignore[no-untyped-def]
        import threading

        first = int(frame["customer_id"].min())
        calls[ids.index(first) // 100] = threading.current_thread().name
        if first == ids[100]:
            raise RuntimeError("disk full")
        return real(model, frame, **kwargs)

    monkeypatch.setattr(runs, "bulk_insert", second_chunk_fails)
    with pytest.raises(RuntimeError, match="disk full"):
        scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="fails")
    assert settings.SCORING_WRITE_CONNECTIONS == 2
    # the chunks in turn on the two connections; the fourth was never handed over
    assert calls == {k: f"scoring-write-behind-{k % 2}_0" for k in (0, 1, 2)}
    run = ScoringRun.objects.get(run_key="fails")
    assert run.status == RunStatus.FAILED and "disk full" in run.error
    written = CustomerScore.objects.filter(run=run).order_by("customer_id")
    assert list(written.values_list("customer_id", flat=True)) == ids[:100] + ids[200:300]


@pytest.mark.django_db(transaction=True)
def test_the_finish_analyzes_the_run_before_it_re_tiers(
    require_postgres: None, labelled_customers: Path, artifact_dir: Path, settings, monkeypatch
) -> None:
    """The finish has the run's columns ANALYZEd (a small sample) before it re-tiers: the
    re-tiering's writes look the run's scores up, which the statistics of the night before
    planned badly (0.4–0.5 s instead of 0.05 s at 1M customers)."""
    from django.db import connection

    from common.db import bulk
    from scoring.services import runs

    trained_here = training_data_from_database(label_attribute="Churn")
    churn_model_train(data=trained_here, candidates=["lr_balanced"], n_splits=3)
    settings.SCORING_CHUNK_CUSTOMERS = 200
    monkeypatch.setattr(bulk, "ANALYZE_MIN_ROWS", 1)
    calls: list[str] = []
    analyze, reassign = runs.tables_analyze, runs.tiers_reassign

    def analyzing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(f"analyze {kwargs.get('statistics_target')}")
        return analyze(*args, **kwargs)

    def reassigning(**kwargs):  # type: ignore[no-untyped-def]
        calls.append("re-tier")
        return reassign(**kwargs)

    monkeypatch.setattr(runs, "tables_analyze", analyzing)
    monkeypatch.setattr(runs, "tiers_reassign", reassigning)

    def analyzed() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s",
                [Customer._meta.db_table],
            )
            return int(cursor.fetchone()[0])

    before = analyzed()
    run = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="analyzed")
    assert run is not None and run.customers_scored == 600 and run.chunks_done == 3
    assert calls == [f"analyze {runs.RUN_ANALYZE_TARGET}", "re-tier"]
    assert analyzed() == before + 1


def test_the_latest_score_update_reads_only_the_chunks_customers(
    require_postgres: None, trained: None
) -> None:
    """The UPDATE that copies a chunk's scores into the customers' latest-score columns names
    the chunk's id range on the customers too: PostgreSQL does not carry a range across a
    join, and without it scanned every customer for each chunk (1M rows a chunk at the
    bench's size)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scoring.services.runs import _customers_take_scores

    run = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="plan")
    assert run is not None
    first, last = Customer.objects.order_by("pk").values_list("pk", flat=True)[100:300:199]
    with CaptureQueriesContext(connection) as queries:
        assert _customers_take_scores(run=run, first_id=first, last_id=last) == 200
    (update,) = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    with connection.cursor() as cursor:
        # A table this small is cheaper to scan whole: the question is which conditions the
        # customers' side can use, so the whole-table scan is switched off here.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {update}")
        plan = cursor.fetchone()[0][0]["Plan"]

    def nodes(node: dict) -> list[dict]:
        return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]

    table = Customer._meta.db_table
    scans = [n for n in nodes(plan) if n.get("Relation Name") == table and "Scan" in n["Node Type"]]
    assert scans
    for scan in scans:
        conditions = " ".join(
            str(scan.get(k, "")) for k in ("Index Cond", "Recheck Cond", "Filter")
        )
        assert ">=" in conditions and "<=" in conditions, scan


@pytest.mark.django_db(transaction=True)
def test_the_latest_score_update_runs_without_jit_in_its_transaction_only(
    require_postgres: None, trained: None
) -> None:
    """PostgreSQL's JIT compiled the update (its estimated cost passes jit_above_cost) for
    ~10 ms a chunk and no faster update: switched off for the chunk's transaction only."""
    from django.db import connection, transaction

    from scoring.services.runs import _customers_take_scores

    run = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="jit")
    assert run is not None
    first, last = Customer.objects.order_by("pk").values_list("pk", flat=True)[0:600:599]

    def jit() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW jit")
            return cursor.fetchone()[0]

    with connection.cursor() as cursor:
        cursor.execute("SET jit = on")  # the server's default, for this connection
    with transaction.atomic():
        assert _customers_take_scores(run=run, first_id=first, last_id=last) == 600
        assert jit() == "off"
    assert jit() == "on"


def test_a_worker_warm_up_scores_a_few_customers_and_writes_nothing(trained: None) -> None:
    """What a Celery worker process does as it starts (scoring.tasks._warm_up_scoring): the
    active model loaded and kept, a few customers scored, nothing written."""
    from scoring.models import OrderStatistics
    from scoring.services import training
    from scoring.services.runs import scoring_warm_up

    training._estimators.clear()
    scores, runs = CustomerScore.objects.count(), ScoringRun.objects.count()
    assert scoring_warm_up(customers=50) == 50
    assert scoring_warm_up(customers=0) == 0
    assert len(training._estimators) == 1  # the model stays loaded for the first task
    assert CustomerScore.objects.count() == scores and ScoringRun.objects.count() == runs
    assert not OrderStatistics.objects.exists()


def test_a_worker_warm_up_without_a_model_does_nothing(db: None) -> None:
    from scoring.services.runs import scoring_warm_up

    assert scoring_warm_up(customers=50) == 0


def test_scoring_computes_with_the_configured_blas_threads(
    trained: None, settings, monkeypatch
) -> None:
    """Each chunk's computation runs under SCORING_COMPUTE_THREADS (a Celery pool runs a
    process per core already: docs/scaling.md, tenth session)."""
    from threadpoolctl import threadpool_info

    import scoring.services.runs as runs

    seen: list[set[int]] = []
    real = runs.score_features

    def spy(**kwargs):
        seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return real(**kwargs)

    monkeypatch.setattr(runs, "score_features", spy)
    settings.SCORING_COMPUTE_THREADS = 1
    run = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="limited")
    assert run is not None and run.customers_scored == 600
    assert seen and all(threads == {1} for threads in seen)
