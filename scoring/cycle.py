"""The `scoring` stage of retention_cycle: train when there is no active model (or when the
sources file asks to), then score every customer as of the cycle's date and report it."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from tqdm import tqdm

from customers.selectors import customer_count
from scoring.errors import ScoringError
from scoring.ml.datasets import TrainingData
from scoring.reports import format_run, format_training_report
from scoring.selectors import churn_model_active
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import parse_as_of, scoring_run_execute, scoring_run_get
from scoring.services.training import churn_model_train, metrics_summary


def scoring_stage(
    *, config: dict[str, Any], progress: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """`config` (the sources file's "scoring" entry, all optional):

    - as_of: date scored as of (default today, midnight UTC);
    - train: {"label_attribute": …} or {"as_of": …, "horizon_days": …} (default: a behaviour
      label with RETRAIN_HORIZON_DAYS at the latest fully observed cutoff);
    - retrain: "if_none" (default: only when there is no active model) or "always".
    """
    started = time.perf_counter()
    lines: list[str] = []
    as_of = parse_as_of(config.get("as_of"))
    training: dict[str, Any] | None = None
    if config.get("retrain", "if_none") == "always" or churn_model_active() is None:
        train = dict(config.get("train") or {})
        outcome = churn_model_train(
            data=_training_data(train=train, as_of=as_of),
            candidates=train.get("candidates", "default"),
            progress=(lambda message: print(message, file=sys.stderr)) if progress else None,
        )
        training = outcome.to_dict()
        lines.append(format_training_report(training))
    model = churn_model_active()
    if model is None:
        raise ScoringError("no active model after training (see the report above)")
    run_key = f"cycle-{as_of:%Y-%m-%d}-{model.version}"
    bar = tqdm(
        total=customer_count(),
        unit="customers",
        desc="scoring",
        disable=not progress,
        file=sys.stderr,
    )
    run = scoring_run_execute(
        as_of=as_of, run_key=run_key, on_chunk=lambda _first, n: bar.update(n)
    )
    bar.close()
    if run is None:
        run = scoring_run_get(run_key=run_key)
        lines.append(f"Scoring run {run_key} already done; its figures:")
    lines.append(format_run(run))
    data = {
        "model_version": model.version,
        "trained": training,
        "metrics": metrics_summary(model.metrics),
        "as_of": as_of.date().isoformat(),
        "run": run.run_key,
        "customers_scored": run.customers_scored,
        "customers_not_scorable": run.customers_not_scorable,
        "tiers": run.tier_counts,
        "drift": {"status": run.drift.get("status"), "score_psi": run.drift.get("score_psi")},
        "seconds": round(time.perf_counter() - started, 3),
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
