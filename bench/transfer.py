"""Transfer learning for a shop with few labels: learning curves, target-only vs each
transfer method (scoring.ml.transfer), out of time on the target (a benchmark, not a test).

Target: the UCI online gift shop (UK, 2010-11; online_retail_uci352.csv.gz), labels "no order
in the next 90 days". The labelled target customers are drawn at the cutoff 2011-06-01
(their labels end 2011-08-30); every model is measured on ALL the shop's customers eligible
at the later cutoff 2011-09-01 (labels end 2011-11-30): out of time, never seen in training.
Sources, each with labels over the same 90 days and the shared behavioural features only:

- cross-shop: CDNOW (US CD retailer, 1997-98) as of 1997-09-01;
- cross-period: the same gift shop as of 2011-03-01 (labels end 2011-05-30, before the
  target's training cutoff, so nothing of the target's label window leaks in).

For each size (100, 200, 500, 1,000, 2,000 labelled target customers) and seed, every method
is fitted on the same sample, and `transfer_select` (the procedure `churn_train
--transfer-from` runs) keeps one by cross-validation on that sample alone. Figures: mean
over seeds with a 95 % t-interval, and the paired difference to target-only (the reference
measured in the same run, on the same samples) with its 95 % interval. One table holds both
pairs: target-only once per size (both pairs use the same samples), then each transfer method
and the kept one per pair; the summary line (`make bench`) gives the kept model's log-loss
gain per pair at the smallest and the largest size.

    .venv/bin/python bench/transfer.py [--seeds 10] [--sizes 100,200,500,1000,2000]
        [--source-rows 3000] [--data DIR] [--pairs cross-shop,cross-period]

Timings are not the point here; the machine is printed for completeness.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import cpu_model
from _summary import figure, summary_print

from scoring.ml.features import build_features
from scoring.ml.labels import behaviour_labels
from scoring.ml.transfer import (
    METHODS,
    SourceModel,
    _linear,
    evaluate,
    fit_method,
    prepare,
    shared_columns,
    transfer_select,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HORIZON = 90
TARGET_TRAIN = pd.Timestamp("2011-06-01", tz="UTC")
TARGET_TEST = pd.Timestamp("2011-09-01", tz="UTC")
UCI_OLD = pd.Timestamp("2011-03-01", tz="UTC")
CDNOW_CUTOFF = pd.Timestamp("1997-09-01", tz="UTC")
_NO_EVENTS = pd.DataFrame(
    {"customer_id": [], "kind": [], "occurred_at": pd.to_datetime([], utc=True)}
)


def cdnow_orders(data: Path) -> pd.DataFrame:
    raw = pd.read_csv(data / "CDNOW_master.txt", sep=r"\s+", dtype={"customer_id": str})
    return pd.DataFrame(
        {
            "customer_id": "cd" + raw["customer_id"],
            "placed_at": pd.to_datetime(raw["date"].astype(str), format="%Y%m%d", utc=True),
            "amount": raw["dollar_value"].astype(float),
            "status": "completed",
            "discount_amount": 0.0,
            "item_count": raw["number_of_cds"].astype(int),
        }
    )


def uci_orders(data: Path) -> pd.DataFrame:
    """One order per invoice; a cancellation invoice (C…) is a refunded order at its date
    (as the line importer keeps unmatched cancellations); lines without a customer dropped."""
    raw = pd.read_csv(
        data / "online_retail_uci352.csv.gz",
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str},
    )
    raw = raw.dropna(subset=["CustomerID"])
    raw = raw.assign(
        value=(raw["Quantity"] * raw["UnitPrice"]).abs(),
        units=raw["Quantity"].abs(),
        placed=pd.to_datetime(raw["InvoiceDate"], utc=True),
    )
    orders = raw.groupby("InvoiceNo", sort=False).agg(
        customer_id=("CustomerID", "first"),
        placed_at=("placed", "min"),
        amount=("value", "sum"),
        item_count=("units", "sum"),
    )
    cancelled = orders.index.str.startswith("C")
    return orders.reset_index(drop=True).assign(
        customer_id=lambda f: "uk" + f["customer_id"].str.replace(".0", "", regex=False),
        status=np.where(cancelled, "refunded", "completed"),
        discount_amount=0.0,
    )


def labelled(
    orders: pd.DataFrame, cutoff: pd.Timestamp, btyd_params: dict | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Features as of `cutoff` and 90-day churn labels of the customers eligible then.
    `btyd_params`: the BG/NBD parameters of the training cutoff, reused as scoring does
    (fitted again at a later cutoff they change what p_alive and the expected orders mean)."""
    labels = behaviour_labels(orders=orders, cutoff=cutoff, horizon_days=HORIZON).as_series()
    customers = pd.DataFrame(
        {"customer_id": labels.index.to_numpy(), "signup_date": pd.NaT, "attributes": None}
    )
    X = build_features(
        orders=orders,
        events=_NO_EVENTS,
        customers=customers,
        as_of=cutoff,
        btyd_params=btyd_params,
    )
    return X, labels.reindex(X.index).to_numpy().astype(np.int64)


def source_from(
    name: str, X: pd.DataFrame, y: np.ndarray, columns: tuple[str, ...], rows: int, seed: int
) -> SourceModel:
    """A source model trained on all its labelled rows; `rows` of them offered for pooling."""
    est = _linear().fit(prepare(X, columns), y)
    pick = np.random.default_rng(seed).choice(len(X), size=min(rows, len(X)), replace=False)
    return SourceModel(
        name=name,
        predict=lambda F: est.predict_proba(prepare(F, columns))[:, 1],
        X=X.iloc[pick],
        y=y[pick],
    )


def interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def run_pairs(
    *,
    sources: dict[str, SourceModel],
    train: tuple[pd.DataFrame, np.ndarray],
    test: tuple[pd.DataFrame, np.ndarray],
    columns: tuple[str, ...],
    sizes: list[int],
    seeds: int,
) -> list[dict[str, Any]]:
    """One table for every source: per size, target-only once (the same samples serve every
    pair), then each transfer method and the kept one per pair, with the paired differences
    to target-only. Returns the summary figures (the kept model's Δ log loss per pair at the
    smallest and largest size)."""
    X_pool, y_pool = train
    X_test, y_test = test
    print(
        f"\ntarget labelled pool {len(X_pool):,} customers (churn {y_pool.mean():.1%}), "
        f"test {len(X_test):,} (churn {y_test.mean():.1%}); shared columns {len(columns)}"
    )
    for pair, source in sources.items():
        print(f"  {pair}: source {source.name}")
    transfer = [m for m in METHODS if m != "target_only"]
    header = f"{'n':>5} {'pair':<13} {'method':<17} {'ROC-AUC':>15} {'PR-AUC':>15} "
    print("\n" + header + f"{'log loss':>15} {'Δ ROC vs target-only':>22} {'Δ log loss':>18}  kept")
    figures: list[dict[str, Any]] = []
    for n in sizes:
        if n >= len(X_pool):
            print(f"{n:>5} (the pool has only {len(X_pool):,} customers: skipped)")
            continue
        base: list[dict[str, float]] = []
        results = {(pair, m): [] for pair in sources for m in [*transfer, "selected"]}
        kept: dict[str, list[str]] = {pair: [] for pair in sources}
        for seed in range(seeds):
            rng = np.random.default_rng(1000 + seed)
            pick = rng.choice(len(X_pool), size=n, replace=False)
            X, y = X_pool.iloc[pick], y_pool[pick]
            if min(np.bincount(y, minlength=2)) < 3:
                continue
            rest = np.setdiff1d(np.arange(len(X_pool)), pick)
            unlabelled = X_pool.iloc[rest[: 2 * n]]
            alone = fit_method("target_only", X=X, y=y, source=None, columns=columns)
            base.append(evaluate(y=y_test, p=alone.predict_proba_1(X_test)))
            for pair, source in sources.items():
                for method in transfer:
                    model = fit_method(
                        method, X=X, y=y, source=source, columns=columns, X_unlabelled=unlabelled
                    )
                    p = model.predict_proba_1(X_test)
                    results[(pair, method)].append(evaluate(y=y_test, p=p))
                chosen = transfer_select(
                    X=X,
                    y=y,
                    source=source,
                    columns=columns,
                    random_state=seed,
                    X_unlabelled=unlabelled,
                )
                kept[pair].append(chosen.selected)
                p = chosen.model.predict_proba_1(X_test)
                results[(pair, "selected")].append(evaluate(y=y_test, p=p))
        rows = [("—", "target_only", base, "")]
        for pair in sources:
            for method in [*transfer, "selected"]:
                counts = ""
                if method == "selected":
                    counts = ", ".join(
                        f"{m} {kept[pair].count(m)}" for m in METHODS if kept[pair].count(m)
                    )
                rows.append((pair, method, results[(pair, method)], counts))
        for pair, method, found, counts in rows:
            cells = []
            for metric in ("roc_auc", "pr_auc", "log_loss"):
                mean, half = interval(np.array([r[metric] for r in found]))
                cells.append(f"{mean:.3f} ± {half:.3f}")
            line = f"{n:>5} {pair:<13} {method:<17} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}"
            if method == "target_only":
                print(line + f" {'(reference)':>22}")
                continue
            d_roc = interval(np.array([r["roc_auc"] - b["roc_auc"] for r, b in zip(found, base)]))
            d_ll = interval(np.array([b["log_loss"] - r["log_loss"] for r, b in zip(found, base)]))
            print(
                f"{line} {d_roc[0]:>+12.4f} ± {d_roc[1]:.4f} {d_ll[0]:>+9.4f} ± {d_ll[1]:.4f}"
                f"  {counts}"
            )
            if method == "selected" and n in (sizes[0], sizes[-1]):
                figures.append(
                    figure(
                        f"transfer {pair}, {n} labels: kept model's log-loss gain "
                        f"over target-only (95 % ± {d_ll[1]:.4f})",
                        round(d_ll[0], 4),
                        "log loss",
                        goal="≥ 0 within noise",
                        reference=round(float(np.mean([b["log_loss"] for b in base])), 4),
                        passed=bool(d_ll[0] + d_ll[1] >= 0) if np.isfinite(d_ll[1]) else None,
                    )
                )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sizes", default="100,200,500,1000,2000")
    parser.add_argument("--source-rows", type=int, default=3000)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--pairs", default="cross-shop,cross-period", help="Which pairs to run (both by default)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    print("# bench/transfer.py")
    print(f"machine: {cpu_model()}, Python {platform.python_version()}; seeds {args.seeds}")

    uci = uci_orders(args.data)
    cdnow = cdnow_orders(args.data)
    train = labelled(uci, TARGET_TRAIN)
    test = labelled(uci, TARGET_TEST, btyd_params=train[0].attrs["btyd_params"])
    X_cd, y_cd = labelled(cdnow, CDNOW_CUTOFF)
    X_old, y_old = labelled(uci, UCI_OLD)
    print(
        f"data: UCI {len(uci):,} invoices, {uci['customer_id'].nunique():,} customers; "
        f"CDNOW {len(cdnow):,} orders; CDNOW source rows {len(X_cd):,} "
        f"(churn {y_cd.mean():.1%}), UCI 2011-03-01 source rows {len(X_old):,} "
        f"(churn {y_old.mean():.1%}); built in {time.perf_counter() - started:.1f} s"
    )
    columns = shared_columns(train[0], test[0], X_cd, X_old)
    # Columns constant in a source (CDNOW has no refunds or discounts) carry nothing there.
    columns = tuple(c for c in columns if X_cd[c].nunique() > 1 and train[0][c].nunique() > 1)
    print(f"shared columns: {', '.join(columns)}")
    pairs = {p.strip() for p in args.pairs.split(",")}
    sources: dict[str, SourceModel] = {}
    if "cross-shop" in pairs:  # CDNOW 1997 → the UCI gift shop 2011
        sources["cross-shop"] = source_from(
            "cdnow@1997-09-01", X_cd, y_cd, columns, args.source_rows, 0
        )
    if "cross-period" in pairs:  # the gift shop as of 2011-03-01 → as of 2011-06-01
        sources["cross-period"] = source_from(
            "uci@2011-03-01", X_old, y_old, columns, args.source_rows, 0
        )
    figures = run_pairs(
        sources=sources, train=train, test=test, columns=columns, sizes=sizes, seeds=args.seeds
    )
    print(f"\ntotal {time.perf_counter() - started:.0f} s (shared machine: timings are noisy)")
    summary_print(figures, size=f"sizes {args.sizes}, {args.seeds} seeds")


if __name__ == "__main__":
    main()
