"""Benchmark: uplift learners trained on 200,000 past interventions (3 treatments and a shared
control arm) and scoring 1,000,000 customers for the policy (issue 16). Goal: minutes, < 4 GB.

For each method of `campaigns.uplift.models.fit_multi_action` (T-learner, DR-learner, class
transformation; binary outcome, the default scaled logistic / ridge base): the fit time and the
scoring time (`predict_uplift`: 1,000,000 customers × 3 actions). Then the revenue DR-learner,
and `campaigns.uplift.evaluation.compare_methods` (what the product runs to train: 3 methods
on half the rows, 200 bootstrap resamples per action on the other half, the best refitted on
all rows). Reference measured in the same run: one plain scaled LogisticRegression fitted on
the same 200,000 rows and predicting the same 1,000,000 (`predict_proba`). Peak memory is the
process's peak resident set (ru_maxrss), data included.

Data: synthetic customers with 12 numeric features (churn-model-like: recency, frequency,
value, tenure, …), treatment effects that differ by action and by customer (one action harms
a segment), a retained outcome and a revenue.

    .venv/bin/python bench/uplift_models.py                        # 200,000 / 1,000,000
    .venv/bin/python bench/uplift_models.py --train 20000 --score 100000   # make bench
    .venv/bin/python bench/uplift_models.py --base hgb             # gradient boosting base
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _machine import cpu_model  # noqa: E402
from _summary import figure, summary_print  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from campaigns.uplift.evaluation import compare_methods  # noqa: E402
from campaigns.uplift.models import CONTROL_ARM, default_classifier, fit_multi_action  # noqa: E402

GOAL_TRAIN, GOAL_SCORE = 200_000, 1_000_000  # the sizes the goals are set at
GOAL_SECONDS = 300.0  # "minutes": fit + score of one method within 5 minutes
GOAL_PEAK_MB = 4096
ACTIONS = ("rule-1", "rule-2", "rule-3")
FEATURES = 12


def customers(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {
        "recency_days": rng.exponential(60, n),
        "frequency_90d": rng.poisson(3, n).astype(float),
        "monetary_90d": rng.gamma(2, 50, n),
        "tenure_days": rng.uniform(30, 1500, n),
        "churn_probability": rng.beta(2, 5, n),
        "discount_share": rng.uniform(0, 0.5, n),
        "complaints_30d": rng.poisson(0.3, n).astype(float),
        "sessions_30d": rng.poisson(8, n).astype(float),
    }
    for i in range(FEATURES - len(columns)):
        columns[f"attribute_{i}"] = rng.normal(size=n)
    return pd.DataFrame(columns, index=pd.RangeIndex(1, n + 1, name="customer_id"))


def interventions(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Past randomised interventions: 10 % control, the rest spread over the 3 actions."""
    features = customers(n, seed)
    rng = np.random.default_rng(seed + 1)
    arm = rng.choice([CONTROL_ARM, *ACTIONS], n, p=[0.1, 0.3, 0.3, 0.3])
    risk = features["churn_probability"].to_numpy()
    recent = features["recency_days"].to_numpy() < 30
    effect = np.select(
        [arm == "rule-1", arm == "rule-2", arm == "rule-3"],
        [0.15 * risk, np.full(n, 0.03), np.where(recent, -0.08, 0.05)],  # rule-3 annoys actives
        0.0,
    )
    retained = (rng.random(n) < np.clip(1 - risk + effect, 0, 1)).astype(int)
    revenue = retained * rng.gamma(2, 30, n) * (1 + 0.5 * (arm != CONTROL_ARM))
    return features, arm, retained, revenue


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=GOAL_TRAIN, help="past interventions")
    parser.add_argument("--score", type=int, default=GOAL_SCORE, help="customers to score")
    parser.add_argument("--methods", default="t_learner,dr_learner,class_transformation")
    parser.add_argument("--base", choices=["linear", "hgb"], default="linear")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads (hgb)")
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args()
    at_goal_size = args.train >= GOAL_TRAIN and args.score >= GOAL_SCORE
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores (shared: timings are noisy)")
    print(f"Python {platform.python_version()}; base learner {args.base}, {args.threads} thread(s)")
    features, arm, retained, revenue = interventions(args.train, seed=1)
    population = customers(args.score, seed=2)
    print(
        f"data: {args.train:,} past interventions ({', '.join(ACTIONS)} + control 10 %), "
        f"{FEATURES} features; {args.score:,} customers to score; "
        f"data in memory: peak {peak_mb():,.0f} MB"
    )
    limiter = threadpool_limits(limits=args.threads, user_api="openmp")
    rows: list[dict[str, Any]] = []
    reference_fit, model = timed(lambda: default_classifier().fit(features, retained))
    reference_score, _ = timed(lambda: model.predict_proba(population))
    reference = reference_fit + reference_score
    print(
        f"reference: one scaled LogisticRegression fit {reference_fit:6.2f} s, "
        f"predict_proba {reference_score:6.2f} s"
    )
    slowest = 0.0
    fits: list[tuple[str, str]] = [(m, "binary") for m in args.methods.split(",")]
    fits.append(("dr_learner", "revenue"))
    for method, kind in fits:
        outcome = retained if kind == "binary" else revenue
        start = time.perf_counter()
        uplift_model = fit_multi_action(
            method=method,  # type: ignore[arg-type]
            features=features,
            arm=arm,
            outcome=outcome,
            kind=kind,  # type: ignore[arg-type]
            base=args.base,
        )
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        uplift = uplift_model.predict_uplift(population)
        score_seconds = time.perf_counter() - start
        total = fit_seconds + score_seconds
        slowest = max(slowest, total)
        label = f"{method} ({kind})"
        print(
            f"{label:32s} fit {fit_seconds:7.2f} s   score {score_seconds:7.2f} s "
            f"({uplift.shape[0]:,} × {uplift.shape[1]})   {total / reference:5.1f}× reference   "
            f"peak so far {peak_mb():,.0f} MB"
        )
        rows.append(
            figure(
                f"{label}: fit + score",
                round(total, 2),
                "s",
                goal=f"≤ {GOAL_SECONDS:g} s at {GOAL_TRAIN:,} / {GOAL_SCORE:,}",
                reference=round(reference, 2),
                ratio=total / reference,
                passed=total <= GOAL_SECONDS if at_goal_size else None,
            )
        )
        del uplift, uplift_model
    compare_seconds, comparison = timed(
        lambda: compare_methods(
            features=features,
            arm=arm,
            outcome=retained,
            risk=features["churn_probability"].to_numpy(),
            n_boot=args.n_boot,
            base=args.base,
        )
    )
    print(
        f"compare_methods (3 methods on {comparison.training_rows:,} rows, {args.n_boot} "
        f"resamples per action on {comparison.validation_rows:,}, best refitted on all): "
        f"{compare_seconds:7.2f} s; best {comparison.best}, mean Qini "
        + ", ".join(f"{m} {q:.3f}" for m, q in comparison.mean_qini.items())
    )
    rows.append(
        figure(
            "compare_methods (train + validate + refit)",
            round(compare_seconds, 2),
            "s",
            reference=round(reference, 2),
            ratio=compare_seconds / reference,
        )
    )
    limiter.unregister()
    peak = peak_mb()
    print(f"peak memory (resident, whole process): {peak:,.0f} MB; slowest method {slowest:.1f} s")
    rows.append(
        figure(
            "peak memory",
            round(peak),
            "MB",
            goal=f"< {GOAL_PEAK_MB:,} MB at {GOAL_TRAIN:,} / {GOAL_SCORE:,}",
            passed=peak < GOAL_PEAK_MB if at_goal_size else None,
        )
    )
    summary_print(rows, size=f"{args.train:,} interventions / {args.score:,} scored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
