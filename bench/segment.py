"""Benchmark: where a customer's student leaf (the campaign segment) is computed.

Two ways to know, at dispatch, which leaf of the model's readable student a customer is in:
(a) compute it in the scoring chunk from the features the chunk has just built and store it
(`scoring.services.runs.student_leaves`, what the code does), then match it at dispatch on a
stored column (`campaigns.rules.rule_mask` on the candidates frame's segment key); or (b)
evaluate the student's rule at dispatch on features built again for every candidate chunk.
(b) costs at least `build_features` of the chunk (the database reads of orders, events and
customers not even counted), so that is the reference measured in the same run.

Data: N synthetic customers (default 50,000, one scoring chunk) with on average 4 orders
over two years and two attributes; the student is distilled from a logistic "teacher" of
their features on a 5,000-row sample (not timed).

    .venv/bin/python bench/segment.py [--rows 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")
import django  # noqa: E402

django.setup()
from _machine import cpu_model  # noqa: E402

from campaigns.rules import SEGMENT, ModelSegment, rule_mask, rule_spec, segment_keys  # noqa: E402
from scoring.ml.distill import distill  # noqa: E402
from scoring.ml.features import build_features  # noqa: E402
from scoring.services.runs import student_leaves  # noqa: E402

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


def data(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(4, n)
    customer = np.repeat(np.arange(1, n + 1), counts)
    days = rng.uniform(0, 730, len(customer))
    orders = pd.DataFrame(
        {
            "customer_id": customer,
            "placed_at": AS_OF - pd.to_timedelta(days, unit="D"),
            "amount": rng.gamma(2, 30, len(customer)).round(2),
            "status": np.where(rng.random(len(customer)) < 0.95, "completed", "refunded"),
            "discount_amount": 0.0,
            "item_count": rng.integers(1, 5, len(customer)),
        }
    )
    plans = rng.choice(["basic", "plus", "pro"], n)
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "signup_date": AS_OF - pd.to_timedelta(rng.uniform(30, 1500, n), unit="D"),
            "attributes": [
                {"plan": p, "age": int(a)}
                for p, a in zip(plans, rng.integers(18, 80, n), strict=True)
            ],
        }
    )
    events = pd.DataFrame(
        {"customer_id": pd.Series([], dtype=np.int64), "kind": [], "occurred_at": []}
    )
    return orders, events, customers


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    orders, events, customers = data(args.rows, seed=7)
    features = build_features(orders=orders, events=events, customers=customers, as_of=AS_OF)
    numeric = [c for c in features.columns if features[c].dtype.kind in "fiu"]
    categorical = [c for c in features.columns if c not in numeric]
    z = features[numeric].fillna(0).to_numpy(dtype=float)
    z = (z - z.mean(axis=0)) / (z.std(axis=0) + 1e-9)
    teacher = 1 / (1 + np.exp(-(z @ np.random.default_rng(1).normal(size=z.shape[1]) / 3)))
    sample = features.sample(5_000, random_state=0) if len(features) > 5_000 else features
    student, _tree, _encoded = distill(
        X=sample,
        teacher=pd.Series(teacher, index=features.index).loc[sample.index].to_numpy(),
        y=None,
        numeric=numeric,
        categorical=categorical,
    )
    build = best(
        lambda: build_features(orders=orders, events=events, customers=customers, as_of=AS_OF),
        args.repeat,
    )
    leaves = student_leaves(student=student, features=features)
    at_scoring = best(lambda: student_leaves(student=student, features=features), args.repeat)
    leaf = int(leaves.value_counts().index[0])
    frame = pd.DataFrame({"model_version": "m1", "leaf": leaves.to_numpy()})
    frame[SEGMENT] = segment_keys(frame["model_version"], frame["leaf"])
    spec = rule_spec(
        type(
            "R",
            (),
            {
                "tiers": [],
                "min_probability": None,
                "max_probability": None,
                "min_value": None,
                "max_value": None,
                "attribute_conditions": [],
                "consent_channel": "",
                "segment": ModelSegment(model_version="m1", leaf=leaf).to_dict(),
            },
        )()
    )
    at_dispatch = best(lambda: rule_mask(frame, spec), args.repeat)
    keys = best(lambda: segment_keys(frame["model_version"], frame["leaf"]), args.repeat)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"data: {args.rows:,} customers, {len(orders):,} orders, {len(features.columns)} features;"
    )
    print(f"student: {len(student.leaves)} leaves, depth {student.depth}; best of {args.repeat}")
    print(f"  reference: build_features of the chunk          {build * 1000:9.1f} ms")
    print(
        f"  (a) student_leaves in the scoring chunk         {at_scoring * 1000:9.1f} ms"
        f"   {at_scoring / build:6.1%} of the reference"
    )
    print(f"      segment key column in the candidates frame  {keys * 1000:9.1f} ms")
    print(f"      segment condition at dispatch (rule_mask)   {at_dispatch * 1000:9.1f} ms")
    print(
        f"  (b) evaluating at dispatch needs the reference and more: "
        f"{build / (at_scoring + keys + at_dispatch):,.0f}x (a)'s cost"
    )


if __name__ == "__main__":
    main()
