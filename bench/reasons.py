"""Benchmark: what the reasons cost per explained customer, for a linear and a tree model.

Times `scoring.ml.explain.explain_customers` over N customers (default 50,000) explained at
threshold 0 (everyone), for a calibrated logistic regression (`lr_balanced`, exact closed
form) and gradient boosting (`hgb`, sampled Shapley values), against a reference measured in
the same run: one `predict_proba` of the same rows. Data: synthetic customers with 9 numeric
inputs (two pairs strongly correlated, so two groups) and 3 categorical ones; the models
train on 5,000 of them (not timed).

    .venv/bin/python bench/reasons.py [--rows 50000]

Run it with REASONS_CHECKOUT=/path/to/another/checkout to time that checkout's reasons on the
same data (the groups are passed only where `explain_customers` takes them). With
`--against /path/to/another/checkout` it times both, alternately, `--repeat` times each (each
run a fresh process), and prints the best of each and their ratio: on a shared machine the
two are measured under the same load.

    .venv/bin/python bench/reasons.py --rows 10000 --against /work/wt/reasons_old --repeat 3
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Another checkout's reasons on the same data (e.g. the code before a change).
sys.path.insert(0, os.environ.get("REASONS_CHECKOUT", str(ROOT)))
from _machine import cpu_model  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

from scoring.ml.explain import explain_customers  # noqa: E402
from scoring.ml.features import infer_feature_spec  # noqa: E402
from scoring.ml.pipelines import build_pipeline, select_candidates  # noqa: E402
from scoring.ml.train import calibrated, reference_values  # noqa: E402


def customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n).astype(float)
    monthly = rng.uniform(50, 110, n)
    orders = rng.poisson(3, n).astype(float)
    X = pd.DataFrame(
        {
            "tenure": tenure,
            "MonthlyCharges": monthly,
            "TotalCharges": tenure * monthly * rng.uniform(0.95, 1.05, n),
            "recency_days": rng.uniform(0, 300, n),
            "orders_90d": orders,
            "revenue_90d": orders * rng.uniform(30, 40, n),
            "event_complaint_30d": rng.poisson(0.4, n).astype(float),
            "discount_share": rng.uniform(0, 0.5, n),
            "noise": rng.normal(size=n),
        }
    ).astype(np.float32)
    X["Contract"] = rng.choice(["Month-to-month", "One year", "Two year"], n)
    X["PaymentMethod"] = rng.choice(["card", "check", "transfer", "cash"], n)
    X["InternetService"] = rng.choice(["DSL", "Fiber optic", "No"], n)
    logit = (
        -0.04 * tenure
        + 0.01 * X["recency_days"].to_numpy()
        + 0.7 * X["event_complaint_30d"].to_numpy()
        + 1.2 * (X["Contract"].to_numpy() == "Month-to-month")
        - 1.5
    )
    y = (logit + rng.logistic(size=n) > 0).astype(int)
    return X, y


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--against", help="another checkout to time on the same data")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (with --against)")
    parser.add_argument("--models", default="lr_balanced,hgb", help="comma-separated candidates")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.against:
        return compare(rows=args.rows, against=args.against, repeat=args.repeat, models=args.models)
    X_train, y_train = customers(5_000, seed=0)
    X, _ = customers(args.rows, seed=1)
    spec = infer_feature_spec(features=X_train)
    reference = reference_values(X=X_train, spec=spec)
    extra = {}
    if "groups" in inspect.signature(explain_customers).parameters:
        from scoring.ml.shapley import feature_groups

        extra["groups"] = feature_groups(X=X_train, numeric=spec.numeric, columns=spec.columns)
        print("groups:", [g for g in extra["groups"].members if len(g) > 1])
    if not args.json:
        print(f"machine: {cpu_model()}, {os.cpu_count()} cores (shared with other jobs: noisy)")
        print(f"data: {args.rows:,} customers explained, {len(spec.columns)} inputs; CPU shared")
    results = {}
    summary = []
    for name in args.models.split(","):
        model = calibrated(
            pipeline=build_pipeline(spec=spec, candidate=select_candidates(names=name)[0]),
            method="sigmoid",
            random_state=0,
        ).fit(X_train, y_train)
        # Warm-up on a few rows (first-use imports, e.g. shap's numba, paid once per worker).
        explain_customers(
            estimator=model, X=X.iloc[:20], spec=spec, reference=reference, threshold=0.0, **extra
        )
        start = time.perf_counter()
        model.predict_proba(X)
        predict = time.perf_counter() - start
        start = time.perf_counter()
        out = explain_customers(
            estimator=model, X=X, spec=spec, reference=reference, threshold=0.0, **extra
        )
        seconds = time.perf_counter() - start
        method = getattr(out, "method", "") or "one-at-a-time"
        results[name] = {"seconds": seconds, "predict": predict, "method": method}
        if args.json:
            continue
        print(
            f"{name:12s} {method:14s} reasons {seconds:7.2f} s "
            f"({seconds / args.rows * 1e6:6.1f} µs/customer); predict_proba {predict:5.2f} s; "
            f"ratio {seconds / predict:5.1f}× one prediction"
        )
        summary.append(
            figure(
                f"reasons, {name} ({method})",
                round(seconds, 2),
                "s",
                reference=round(predict, 2),
                ratio=seconds / predict,
            )
        )
    if args.json:
        print(json.dumps(results))
    else:
        summary_print(summary, size=f"{args.rows:,} customers explained")
    return 0


def compare(*, rows: int, against: str, repeat: int, models: str) -> int:
    """Both checkouts' reasons, alternately in fresh processes; the best run of each."""
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores (shared with other jobs: noisy)")
    print(f"data: {rows:,} customers explained, 12 inputs; best of {repeat} alternating runs")
    best: dict[str, dict[str, dict[str, float]]] = {"this": {}, "other": {}}
    for _ in range(repeat):
        for who, checkout in (("this", str(ROOT)), ("other", against)):
            done = subprocess.run(
                [sys.executable, __file__, "--rows", str(rows), "--models", models, "--json"],
                env={**os.environ, "REASONS_CHECKOUT": checkout},
                capture_output=True,
                text=True,
                check=True,
            )
            for name, result in json.loads(done.stdout.strip().splitlines()[-1]).items():
                kept = best[who].get(name)
                if kept is None or result["seconds"] < kept["seconds"]:
                    best[who][name] = result
    for name, this in best["this"].items():
        other = best["other"][name]
        print(
            f"{name:12s} this ({this['method']}) {this['seconds']:7.2f} s, "
            f"{against} ({other['method']}) {other['seconds']:7.2f} s: "
            f"ratio {this['seconds'] / other['seconds']:4.2f}×; predict_proba "
            f"{this['predict']:5.2f} / {other['predict']:5.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
