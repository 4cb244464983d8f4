"""The `scoring` stage of retention_cycle: train when there is no active model (or when the
sources file asks to), then score every customer as of the cycle's date and report it.

Split in three for the cycle on workers (retention/cycle.py): `scoring_start` (train, create
the run and its chunks), `scoring_chunk` (one chunk, idempotent) and `scoring_finish`;
`scoring_stage` runs the three in this process (the embedded default)."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from customers.selectors import customer_count
from scoring.errors import ScoringError
from scoring.ml.datasets import TrainingData
from scoring.models import RunStatus, ScoringRun
from scoring.reports import format_run, format_training_report
from scoring.selectors import churn_model_active
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import (
    parse_as_of,
    scoring_chunk_score,
    scoring_run_chunks,
    scoring_run_create,
    scoring_run_fail,
    scoring_run_finish,
    scoring_run_get,
)
from scoring.services.training import churn_model_train, metrics_summary


def scoring_stage(
    *, config: dict[str, Any], progress: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The whole stage in this process: start, every chunk in order, finish.

    `config` (the sources file's "scoring" entry, all optional):

    - as_of: date scored as of (default today, midnight UTC);
    - train: {"label_attribute": …} or {"as_of": …, "horizon_days": …} (default: a behaviour
      label with RETRAIN_HORIZON_DAYS at the latest fully observed cutoff);
    - retrain: "if_none" (default: only when there is no active model) or "always".
    """
    chunks, context = scoring_start(config=config, progress=progress)
    bar = tqdm(
        total=customer_count() if chunks else 0,
        unit="customers",
        desc="scoring",
        disable=not progress,
        file=sys.stderr,
    )
    try:
        for chunk in chunks:
            bar.update(scoring_chunk(context=context, chunk=chunk))
    except Exception as exc:
        scoring_fail(context=context, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        bar.close()
    return scoring_finish(context=context)


def scoring_start(
    *, config: dict[str, Any], progress: bool = False
) -> tuple[list[list[int]], dict[str, Any]]:
    """Train if needed, then create (or resume) the cycle's scoring run: its chunks of customer
    ids ([first, last], JSON-safe) and a context for the chunks and the finish.

    The run key (cycle-<date>-<model version>) makes a second cycle of the day reuse the run:
    a completed run has no chunks left; a run left unfinished (its cycle died) is resumed, its
    chunks already written being skipped by `scoring_chunk_score`."""
    started = time.time()
    lines: list[str] = []
    as_of = parse_as_of(config.get("as_of"))
    training: dict[str, Any] | None = None
    if config.get("retrain", "if_none") == "always" or churn_model_active() is None:
        train = dict(config.get("train") or {})
        training_data = _training_data(train=train, as_of=as_of)
        outcome = churn_model_train(
            data=training_data,
            candidates=train.get("candidates", "default"),
            progress=(lambda message: print(message, file=sys.stderr)) if progress else None,
        )
        training = outcome.to_dict()
        baseline = recency_baseline(training_data)
        if baseline is not None:
            training["recency_baseline"] = baseline
        lines.append(format_training_report(training))
        if baseline is not None:
            lines.append(_baseline_line(training, baseline))
    model = churn_model_active()
    if model is None:
        raise ScoringError("no active model after training (see the report above)")
    run_key = f"cycle-{as_of:%Y-%m-%d}-{model.version}"
    created = scoring_run_create(as_of=as_of, run_key=run_key, model=model)
    already = False
    if created is None:
        run = scoring_run_get(run_key=run_key)
        already = run.status == RunStatus.COMPLETED
        chunks = [] if already else scoring_run_chunks()
        if not already:
            ScoringRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, error="")
    else:
        run, pairs = created
        chunks = [[first, last] for first, last in pairs]
    context = {
        "run_id": run.pk,
        "already": already,
        "model_version": model.version,
        "trained": training,
        "metrics": metrics_summary(model.metrics),
        "as_of": as_of.date().isoformat(),
        "lines": lines,
        "started": started,
    }
    return chunks, context


def scoring_chunk(*, context: dict[str, Any], chunk: list[int]) -> int:
    """Score one chunk of the run (idempotent: a chunk already written writes nothing)."""
    run = ScoringRun.objects.select_related("model").get(pk=context["run_id"])
    return scoring_chunk_score(run=run, first_id=int(chunk[0]), last_id=int(chunk[1]))


def scoring_fail(*, context: dict[str, Any], error: str) -> None:
    scoring_run_fail(run=ScoringRun.objects.get(pk=context["run_id"]), error=error)


def scoring_finish(*, context: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Close the run (tiers ranked over the run, counts, drift) and report it."""
    run = ScoringRun.objects.select_related("model").get(pk=context["run_id"])
    lines = list(context["lines"])
    if context["already"]:
        lines.append(f"Scoring run {run.run_key} already done; its figures:")
    elif run.status != RunStatus.COMPLETED:
        run = scoring_run_finish(run=run)
    lines.append(format_run(run))
    data = {
        "model_version": context["model_version"],
        "trained": context["trained"],
        "metrics": context["metrics"],
        "as_of": context["as_of"],
        "run": run.run_key,
        "customers_scored": run.customers_scored,
        "customers_not_scorable": run.customers_not_scorable,
        "tiers": run.tier_counts,
        "drift": {"status": run.drift.get("status"), "score_psi": run.drift.get("score_psi")},
        "seconds": round(time.time() - context["started"], 3),
    }
    return data, lines


def _training_data(*, train: dict[str, Any], as_of: datetime) -> TrainingData:
    """The sources file's "train" entry: an explicit label attribute, or a behaviour label
    whose cutoff defaults to one horizon before the scoring date."""
    if "label_attribute" in train:
        return training_data_from_database(
            label_attribute=train["label_attribute"], drop=train.get("drop", ())
        )
    horizon = int(train.get("horizon_days", settings.RETRAIN_HORIZON_DAYS))
    cutoff = parse_as_of(train["as_of"]) if "as_of" in train else as_of - timedelta(days=horizon)
    return training_data_from_database(
        as_of=cutoff, horizon_days=horizon, drop=train.get("drop", ())
    )


def recency_baseline(data: TrainingData) -> dict[str, Any] | None:
    """ROC-AUC of recency alone (days since the last completed order; never ordered = the
    longest) on the rows the model is validated on, out of time when the data has a later
    cutoff (X_valid) and else on every training row. None without a recency column."""
    X, y = (data.X_valid, data.y_valid) if data.X_valid is not None else (data.X, data.y)
    source = data.X_champion if data.X_champion is not None and data.X_valid is not None else X
    if y is None or "recency_days" not in source.columns or len(set(y.tolist())) < 2:
        return None
    recency = source["recency_days"].to_numpy(dtype=float)
    longest = np.nanmax(recency) if np.isfinite(recency).any() else 0.0
    recency = np.where(np.isnan(recency), longest + 1.0, recency)
    return {
        "roc_auc": float(roc_auc_score(np.asarray(y, dtype=int), recency)),
        "rows": len(y),
        "out_of_time": data.X_valid is not None,
    }


def _baseline_line(training: dict[str, Any], baseline: dict[str, Any]) -> str:
    where = "out of time" if baseline["out_of_time"] else "on the training rows"
    model_auc = training["selected"].get("roc_auc")
    shown = "—" if model_auc is None else f"{model_auc:.3f}"
    return (
        f"Discrimination {where} ({baseline['rows']:,} customers): model ROC-AUC {shown} · "
        f"recency alone {baseline['roc_auc']:.3f} (same rows, same run)"
    )


def recommendations_stage(*, say: Any = None) -> tuple[dict[str, Any], list[str]]:
    """Refresh every customer's product recommendations (after scoring, before the dispatch,
    so the messages carry them). Nothing to do, and said so, when there are no order lines."""
    from scoring.services.recommendations import recommendations_refresh

    run = recommendations_refresh(say=say)
    if run is None:
        return {"run": None}, ["Recommendations: no order lines yet, nothing done."]
    data = {
        "version": run.version,
        "method": run.method,
        "customers": run.customers,
        "products_on_sale": run.products,
        "lines": run.lines,
        "fallback": len(run.fallback_product_ids),
        "seconds": run.seconds,
    }
    line = (
        f"Recommendations {run.version} ({run.method}): {run.customers:,} customers with a "
        f"history, {run.products:,} products on sale, from {run.lines:,} order lines in "
        f"{run.seconds:.1f} s; others get the {len(run.fallback_product_ids)} most bought of "
        "the last weeks"
    )
    return data, [line]
