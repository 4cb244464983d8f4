"""Model quality on the public churn data sets in /work/shared/data (a benchmark, not a test).

For every data set: each candidate's out-of-fold ROC-AUC, PR-AUC, Brier, F1 and fit time,
the selected model (calibrated, nested out-of-fold), plain reference baselines computed in
this run on the same folds, and PASS/FAIL against the targets. Averages over seeds
(3 by default, 1 with --quick).

    .venv/bin/python bench/model_quality.py [--quick] [--only telco,bank,ecomm,cdnow]
        [--candidates default|extended|name,name] [--seeds N] [--data DIR]

CDNOW headroom (target ROC-AUC 0.78, default set 0.772): screened at other cutoffs
(as of 1997-07-01 and 1997-08-01, same 273-day horizon), extra history features (distinct
purchase days, active weeks/months/quarters, BG/NBD quantities at 90/273/365 days and the
posterior purchase rate, recency relative to the customer's rhythm, second-last purchase,
active span, a 180-day window, first/last order amounts, monthly counts and amounts) and
model variants (log1p before splines, shallow or monotonic-constrained boosting) all landed
within about 0.001 ROC-AUC of the default set, about 0.003 above six log-RFM features; with
all of those features at the official cutoff lr_spline, hgb_tuned and the blend scored
0.7717 / 0.7707 / 0.7724 (unchanged). The transactions hold no more ranking signal that
these summaries miss, so none of them was added.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import cpu_model
from _summary import figure, summary_print

from scoring.ml.features import (
    FeatureSpec,
    build_features,
    build_snapshot_features,
    infer_feature_spec,
)
from scoring.ml.labels import behaviour_labels, parse_explicit_label
from scoring.ml.pipelines import select_candidates
from scoring.ml.train import make_splits, train_and_select

# The shared data sets sit beside the repository (../shared/data; see its SOURCES.md).
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
QUICK_CANDIDATES = "lr_balanced,lr_spline,hgb,hgb_tuned,blend_lr_hgb"
CDNOW_CUTOFF = pd.Timestamp("1997-10-01", tz="UTC")
CDNOW_HORIZON_DAYS = 273  # 1997-10-01 .. 1998-06-30 inclusive


@dataclass(frozen=True)
class Dataset:
    name: str
    X: pd.DataFrame
    y: np.ndarray
    spec: FeatureSpec
    note: str
    targets: dict[str, float]
    baselines: dict[str, Callable[[], object]]
    baseline_X: pd.DataFrame | None = None  # CDNOW: its own log-RFM features


def _plain_lr(spec: FeatureSpec) -> Callable[[], object]:
    def make() -> object:
        return make_pipeline(
            ColumnTransformer(
                [
                    (
                        "cat",
                        make_pipeline(
                            SimpleImputer(strategy="constant", fill_value="missing"),
                            OneHotEncoder(handle_unknown="ignore"),
                        ),
                        list(spec.categorical),
                    ),
                    (
                        "num",
                        make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                        list(spec.numeric),
                    ),
                ]
            ),
            LogisticRegression(max_iter=3000),
        )

    return make


def _plain_hgb(spec: FeatureSpec) -> Callable[[], object]:
    def make() -> object:
        return make_pipeline(
            ColumnTransformer(
                [
                    (
                        "cat",
                        make_pipeline(
                            SimpleImputer(strategy="constant", fill_value="missing"),
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                        ),
                        list(spec.categorical),
                    ),
                ],
                remainder="passthrough",
                sparse_threshold=0.0,
            ),
            HistGradientBoostingClassifier(random_state=0),
        )

    return make


def load_telco(data: Path) -> Dataset:
    table = pd.read_csv(data / "WA_Fn-UseC_-Telco-Customer-Churn.csv")
    y = parse_explicit_label(values=table["Churn"]).astype(np.int64)
    X = build_snapshot_features(table=table, id_column="customerID", label_column="Churn")
    spec = infer_feature_spec(features=X)
    return Dataset(
        "telco",
        X,
        y,
        spec,
        "Churn=Yes; customerID dropped",
        {"roc_auc": 0.85, "pr_auc": 0.66},
        {"LR one-hot+scaled": _plain_lr(spec), "HGB default": _plain_hgb(spec)},
    )


def load_bank(data: Path) -> Dataset:
    table = pd.read_csv(data / "Churn_Modelling.csv")
    y = parse_explicit_label(values=table["Exited"]).astype(np.int64)
    X = build_snapshot_features(
        table=table, label_column="Exited", drop=["RowNumber", "CustomerId", "Surname"]
    )
    spec = infer_feature_spec(features=X)
    return Dataset(
        "bank",
        X,
        y,
        spec,
        "Exited; RowNumber, CustomerId, Surname dropped",
        {"roc_auc": 0.865, "pr_auc": 0.70},
        {"LR one-hot+scaled": _plain_lr(spec), "HGB default": _plain_hgb(spec)},
    )


ECOMM_SYNONYMS = {
    "PreferredLoginDevice": {"Phone": "Mobile Phone"},
    "PreferredPaymentMode": {"CC": "Credit Card", "COD": "Cash on Delivery"},
    "PreferedOrderCat": {"Mobile": "Mobile Phone"},
}


def load_ecomm(data: Path) -> Dataset:
    table = pd.read_excel(data / "E Commerce Dataset.xlsx", sheet_name="E Comm")
    n_raw = len(table)
    for column, mapping in ECOMM_SYNONYMS.items():
        table[column] = table[column].replace(mapping)
    # Duplicates (ignoring CustomerID) would sit on both sides of a split: drop them first.
    table = table.drop_duplicates(subset=[c for c in table.columns if c != "CustomerID"])
    y = parse_explicit_label(values=table["Churn"]).astype(np.int64)
    X = build_snapshot_features(table=table, id_column="CustomerID", label_column="Churn")
    spec = infer_feature_spec(features=X)
    return Dataset(
        "ecomm",
        X,
        y,
        spec,
        f"Churn; {n_raw - len(table)} duplicate rows removed, category synonyms merged",
        {"roc_auc": 0.98},
        {"LR one-hot+scaled": _plain_lr(spec), "HGB default": _plain_hgb(spec)},
    )


def load_cdnow(data: Path) -> Dataset:
    raw = pd.read_csv(data / "CDNOW_master.txt", sep=r"\s+", dtype={"customer_id": str})
    placed = pd.to_datetime(raw["date"].astype(str), format="%Y%m%d", utc=True)
    orders = pd.DataFrame(
        {
            "customer_id": raw["customer_id"],
            "placed_at": placed,
            "amount": raw["dollar_value"].astype(float),
            "status": "completed",
            "discount_amount": 0.0,
            "item_count": raw["number_of_cds"].astype(int),
        }
    )
    customers = pd.DataFrame(
        {"customer_id": orders["customer_id"].unique(), "signup_date": pd.NaT, "attributes": None}
    )
    events = pd.DataFrame(
        {"customer_id": [], "kind": [], "occurred_at": pd.to_datetime([], utc=True)}
    )
    labels = behaviour_labels(
        orders=orders, cutoff=CDNOW_CUTOFF, horizon_days=CDNOW_HORIZON_DAYS
    ).as_series()
    X = build_features(orders=orders, events=events, customers=customers, as_of=CDNOW_CUTOFF)
    X = X.loc[labels.index]
    spec = infer_feature_spec(features=X)
    # Reference: six log-RFM features straight from the transactions before the cutoff.
    before = orders[orders["placed_at"] < CDNOW_CUTOFF]
    g = before.groupby("customer_id")
    days = lambda s: (CDNOW_CUTOFF - s).dt.days  # noqa: E731
    rfm = pd.DataFrame(
        {
            "recency": days(g["placed_at"].max()),
            "age": days(g["placed_at"].min()),
            "frequency": g.size(),
            "monetary": g["amount"].sum(),
            "aov": g["amount"].mean(),
            "cds": g["item_count"].sum(),
        }
    )
    rfm = np.log1p(rfm.loc[labels.index].clip(lower=0)).astype(np.float64)
    return Dataset(
        "cdnow",
        X,
        labels.to_numpy().astype(np.int64),
        spec,
        "features as of 1997-10-01; churn = no purchase 1997-10-01..1998-06-30",
        {"roc_auc": 0.78},
        {"LR six log-RFM": lambda: make_pipeline(StandardScaler(), LogisticRegression())},
        baseline_X=rfm,
    )


LOADERS = {"telco": load_telco, "bank": load_bank, "ecomm": load_ecomm, "cdnow": load_cdnow}


def _baseline(ds: Dataset, make: Callable[[], object], seeds: list[int]) -> dict[str, float]:
    X = ds.baseline_X if ds.baseline_X is not None else ds.X
    aucs, aps, secs = [], [], 0.0
    for seed in seeds:
        p = np.zeros(len(ds.y))
        for train, valid in make_splits(y=ds.y, n_splits=5, random_state=seed):
            model = make()
            start = time.perf_counter()
            model.fit(X.iloc[train], ds.y[train])  # type: ignore[attr-defined]
            secs += time.perf_counter() - start
            p[valid] = model.predict_proba(X.iloc[valid])[:, 1]  # type: ignore[attr-defined]
        aucs.append(roc_auc_score(ds.y, p))
        aps.append(average_precision_score(ds.y, p))
    return {"roc_auc": float(np.mean(aucs)), "pr_auc": float(np.mean(aps)), "seconds": secs}


def machine() -> str:
    model = cpu_model()
    openmp = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "openmp"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {model}, "
        f"Python {platform.python_version()}, OpenMP threads {openmp or '-'}, load avg {load}"
    )


def run(
    ds: Dataset, candidates: str, seeds: list[int], *, judged: bool = True
) -> list[dict[str, Any]]:
    print(
        f"\n=== {ds.name}: {len(ds.y)} rows × {len(ds.spec.columns)} features "
        f"({len(ds.spec.numeric)} numeric, {len(ds.spec.categorical)} categorical), "
        f"positive rate {ds.y.mean():.2%}"
    )
    print(f"    {ds.note}")
    rows: dict[str, list[dict[str, float]]] = {}
    selected: list[dict[str, float]] = []
    chosen: list[str] = []
    for seed in seeds:
        result = train_and_select(
            X=ds.X,
            y=ds.y,
            spec=ds.spec,
            candidates=select_candidates(names=candidates),
            random_state=seed,
            importance_sample=1000,
        )
        for rep in result.candidates:
            if rep.error:
                print(f"    {rep.name}: FAILED {rep.error}")
                continue
            rows.setdefault(rep.name, []).append({**rep.metrics, "seconds": rep.fit_seconds})
        selected.append({**result.metrics, "seconds": result.metrics["fit_seconds"]})
        chosen.append(result.selected)
    header = "    {:28s} {:>8s} {:>8s} {:>7s} {:>6s} {:>7s}".format(
        "candidate", "ROC-AUC", "PR-AUC", "Brier", "F1", "fit s"
    )
    print(header)
    print("    " + "-" * (len(header) - 4))

    def line(name: str, ms: list[dict[str, float]], mark: str = "") -> dict[str, float]:
        avg = {
            k: float(np.mean([m[k] for m in ms]))
            for k in ("roc_auc", "pr_auc", "brier", "f1", "seconds")
        }
        print(
            f"    {name:28s} {avg['roc_auc']:8.4f} {avg['pr_auc']:8.4f} {avg['brier']:7.4f} "
            f"{avg['f1']:6.3f} {avg['seconds']:7.1f} {mark}"
        )
        return avg

    for name, ms in rows.items():
        line(name, ms, "<- selected" if name in chosen else "")
    picked = max(set(chosen), key=chosen.count)
    label = f"SELECTED {picked} (calibrated)"
    sel = line(label, selected, f"[{', '.join(chosen)}]" if len(set(chosen)) > 1 else "")
    print("    reference baselines (same folds, same run):")
    refs = {}
    for name, make in ds.baselines.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refs[name] = _baseline(ds, make, seeds)
        r = refs[name]
        print(f"    {name:28s} {r['roc_auc']:8.4f} {r['pr_auc']:8.4f} {'':14s} {r['seconds']:7.1f}")
    best_ref = max(refs.values(), key=lambda r: r["roc_auc"])
    print(
        f"    selected / best reference: ROC-AUC ×{sel['roc_auc'] / best_ref['roc_auc']:.3f}, "
        f"PR-AUC ×{sel['pr_auc'] / best_ref['pr_auc']:.3f}"
    )
    figures = []
    for metric, target in ds.targets.items():
        passed = sel[metric] >= target
        print(f"    {'PASS' if passed else 'FAIL'}: {metric} {sel[metric]:.4f} >= {target}")
        figures.append(
            figure(
                f"{ds.name}: {metric} of the selected model",
                round(sel[metric], 4),
                "",
                goal=f"≥ {target}",
                reference=round(best_ref[metric], 4) if metric in best_ref else None,
                ratio=sel[metric] / best_ref[metric] if best_ref.get(metric) else None,
                passed=passed if judged else None,
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 candidates")
    parser.add_argument("--only", default=",".join(LOADERS), help="comma list of data sets")
    parser.add_argument("--candidates", default=None, help="default | extended | name,name")
    parser.add_argument("--seeds", type=int, default=None, help="number of CV seeds")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OpenMP threads for gradient boosting (default 1: fastest on a shared machine)",
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    limiter = threadpool_limits(limits=args.threads, user_api="openmp")
    n_seeds = args.seeds or (1 if args.quick else 3)
    candidates = args.candidates or (QUICK_CANDIDATES if args.quick else "default")
    seeds = list(range(n_seeds))
    print(f"machine: {machine()}")
    print(
        f"protocol: stratified 5-fold × {n_seeds} seed(s), candidates '{candidates}', "
        "selected by PR-AUC, metrics out-of-fold; selected = calibrated (sigmoid/isotonic, "
        "3 inner folds) nested in each outer fold; F1 at the max-F1 OOF threshold"
    )
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(LOADERS)
    if unknown:
        parser.error(f"unknown data sets: {', '.join(sorted(unknown))}")
    skipped = [p.name for p in args.data.glob("Kevin_Hillstrom*")]
    if skipped:
        print(f"skipped {skipped[0]}: randomized e-mail uplift data, no churn label")
    all_ok = True
    figures: list[dict[str, Any]] = []
    # The targets are set for the full protocol (3 seeds, the default candidates): a quicker
    # run prints PASS/FAIL per target but is not judged (exit status 0, "n/a" in make bench).
    judged = candidates == "default" and n_seeds >= 3
    for name in names:
        start = time.perf_counter()
        try:
            ds = LOADERS[name](args.data)
        except FileNotFoundError as exc:
            print(f"\n=== {name}: skipped, file not found ({exc})")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = run(ds, candidates, seeds, judged=judged)
            figures += found
            all_ok &= all(f["pass"] is not False for f in found)
        print(f"    wall time {time.perf_counter() - start:.0f} s")
    print(f"\nmachine at the end: {machine()}")
    print(f"OVERALL: {'PASS' if all_ok else 'FAIL'}" if judged else "OVERALL: not judged")
    summary_print(figures, size=f"{', '.join(names)}; {n_seeds} seed(s), candidates {candidates}")
    limiter.unregister()
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
