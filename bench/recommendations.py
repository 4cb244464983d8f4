"""Benchmark: product recommendations — quality on a real shop, then speed and memory at scale.

1. Quality on UCI Online Retail (../shared/data/online_retail_uci352.csv.gz, read directly with
   pandas): lines without a CustomerID, cancellations (InvoiceNo starting with "C") and
   non-positive quantities are dropped; StockCode is the product. The last 60 days are held
   out; every method is fitted on what came before and recommends 10 products to each
   customer who bought in the hold-out. Printed per method: recall@10, NDCG@10 (binary
   relevance) and catalogue coverage (share of products recommended to anyone), against two
   targets — every product bought in the hold-out, and only products new to the customer.
   Baselines in the same run: most popular, trending (popular in the last 30 days) and buy
   again (the customer's own most-bought products); plus the `implicit` package's ALS when it
   is installed (requirements-dev.txt).
2. Scale on generated data: 1,000,000 customers × 50,000 products (``--size small``: 100,000
   customers) — fit + recommend 10 to every customer, timed, with peak memory.

    .venv/bin/python bench/recommendations.py [--size full|small] [--skip-quality] [--skip-scale]
        [--als]   # also time implicit ALS at scale (slow at full size)

The generator: product popularity is Zipf-like (weight 1 / rank^1.1) over 50,000 products
split into 500 categories of 100; each customer has a favourite category and makes
1 + Poisson(9) purchases (mean 10 lines), each from the favourite category with probability
0.5, otherwise from the global power law, on a uniform day of one year; 2% of products are
inactive. Deterministic (seed 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _machine import cpu_model  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

from scoring.ml.recommend import (  # noqa: E402
    Recommendations,
    RecommenderModel,
    fit_recommender,
    recommend_top_n,
)

DATA = ROOT.parent / "shared" / "data" / "online_retail_uci352.csv.gz"
HOLDOUT_DAYS = 60
TOP_N = 10
SIZES = {"full": 1_000_000, "small": 100_000}
N_PRODUCTS = 50_000


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame  # customer, product, date (indices)
    test: sparse.csr_matrix  # customers × products, 1 = bought in the hold-out
    new: sparse.csr_matrix  # the same, only products the customer had not bought before
    users: np.ndarray  # customers with at least one hold-out purchase
    n_customers: int
    n_products: int
    cutoff: pd.Timestamp


def load_online_retail(path: Path = DATA) -> pd.DataFrame:
    """Clean order lines: customer, product (codes), date."""
    raw = pd.read_csv(
        path,
        usecols=["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "CustomerID"],
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "float64"},
    )
    keep = raw["CustomerID"].notna() & ~raw["InvoiceNo"].str.startswith("C") & (raw["Quantity"] > 0)
    lines = raw[keep]
    return pd.DataFrame(
        {
            "customer": lines["CustomerID"].astype("int64").astype(str),
            "product": lines["StockCode"].str.strip().str.upper(),
            "date": pd.to_datetime(lines["InvoiceDate"]),
        }
    )


def temporal_split(lines: pd.DataFrame, holdout_days: int = HOLDOUT_DAYS) -> Split:
    customers = pd.Index(lines["customer"].unique())
    products = pd.Index(lines["product"].unique())
    frame = pd.DataFrame(
        {
            "customer": customers.get_indexer(lines["customer"]),
            "product": products.get_indexer(lines["product"]),
            "date": lines["date"].to_numpy(),
        }
    )
    cutoff = lines["date"].max().normalize() - pd.Timedelta(days=holdout_days)
    before = frame[frame["date"] < cutoff]
    after = frame[frame["date"] >= cutoff]
    shape = (len(customers), len(products))
    test = _binary(after["customer"], after["product"], shape)
    seen = _binary(before["customer"], before["product"], shape)
    new = test - test.multiply(seen)
    new.eliminate_zeros()
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    return Split(before, test, new.tocsr(), users, shape[0], shape[1], cutoff)


def _binary(rows: pd.Series, cols: pd.Series, shape: tuple[int, int]) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    matrix.data[:] = 1.0
    return matrix


@dataclass(frozen=True)
class Quality:
    per_user: tuple[np.ndarray, np.ndarray]  # recall, NDCG per hold-out customer (all target)
    recall: float
    ndcg: float
    recall_new: float
    ndcg_new: float
    coverage: float
    fit_s: float
    recommend_s: float


def ranking_metrics(
    recs: np.ndarray, users: np.ndarray, truth: sparse.csr_matrix
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user recall@N and NDCG@N (users with at least one relevant product, in order)."""
    relevant = np.diff(truth.indptr)[users]
    has = relevant > 0
    recs, users, relevant = recs[has], users[has], relevant[has]
    n_products = truth.shape[1]
    coo = truth.tocoo()
    keys = np.sort(coo.row.astype(np.int64) * n_products + coo.col)
    hits = np.isin(users[:, None] * n_products + recs, keys) & (recs >= 0)
    n = recs.shape[1]
    discount = 1.0 / np.log2(np.arange(2, n + 2))
    ideal = np.cumsum(discount)[np.minimum(relevant, n) - 1]
    recall = hits.sum(axis=1) / relevant
    ndcg = (hits * discount).sum(axis=1) / ideal
    return recall, ndcg


def score_method(split: Split, recommend: Callable[[], tuple[np.ndarray, float, float]]) -> Quality:
    recs, fit_s, recommend_s = recommend()
    recall, ndcg = ranking_metrics(recs, split.users, split.test)
    recall_new, ndcg_new = ranking_metrics(recs, split.users, split.new)
    coverage = np.unique(recs[recs >= 0]).size / split.n_products
    means = [float(a.mean()) for a in (recall, ndcg, recall_new, ndcg_new)]
    return Quality((recall, ndcg), *means, coverage, fit_s, recommend_s)


def paired_difference(a: np.ndarray, b: np.ndarray, draws: int = 2_000) -> str:
    """Mean of a − b over the same customers with a 95% paired bootstrap interval."""
    rng = np.random.default_rng(0)
    diff = a - b
    means = diff[rng.integers(0, diff.size, size=(draws, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return f"{diff.mean():+.4f} (95% paired bootstrap {low:+.4f} to {high:+.4f})"


def ours(split: Split, method: str, **options: object) -> Callable[[], tuple]:
    def run() -> tuple[np.ndarray, float, float]:
        start = time.perf_counter()
        model = fit_recommender(
            interactions=split.train,
            n_customers=split.n_customers,
            n_products=split.n_products,
            method=method,
            as_of=split.cutoff,
            **options,  # type: ignore[arg-type]
        )
        fitted = time.perf_counter()
        recs = recommend_top_n(model, split.users, TOP_N).product_idx
        return recs, fitted - start, time.perf_counter() - fitted

    return run


def implicit_als(
    split: Split, factors: int = 64, iterations: int = 15, exclude_bought: bool = False
) -> Callable[[], tuple]:
    """The `implicit` package's ALS on the line-count matrix (one thread, like our code)."""

    def run() -> tuple[np.ndarray, float, float]:
        from implicit.als import AlternatingLeastSquares

        start = time.perf_counter()
        counts = _counts(split.train, (split.n_customers, split.n_products))
        weighted = counts.copy()
        weighted.data = 1.0 + 10.0 * np.log1p(weighted.data)  # confidence, Hu et al. 2008
        model = AlternatingLeastSquares(
            factors=factors,
            iterations=iterations,
            regularization=0.05,
            random_state=0,
            num_threads=1,
        )
        model.fit(weighted.astype(np.float32), show_progress=False)
        fitted = time.perf_counter()
        ids, _ = model.recommend(
            split.users,
            weighted[split.users],
            N=TOP_N,
            filter_already_liked_items=exclude_bought,
        )
        return np.asarray(ids, dtype=np.int64), fitted - start, time.perf_counter() - fitted

    return run


def _counts(frame: pd.DataFrame, shape: tuple[int, int]) -> sparse.csr_matrix:
    ones = np.ones(len(frame), dtype=np.float32)
    return sparse.csr_matrix((ones, (frame["customer"], frame["product"])), shape=shape)


def quality(args: argparse.Namespace) -> list[dict[str, Any]]:
    lines = load_online_retail()
    split = temporal_split(lines)
    print(
        f"\n## Quality — UCI Online Retail: {len(lines):,} clean lines, "
        f"{split.n_customers:,} customers, {split.n_products:,} products; train before "
        f"{split.cutoff.date()} ({len(split.train):,} lines), hold-out = last {HOLDOUT_DAYS} days: "
        f"{split.users.size:,} customers ({np.sum(np.diff(split.new.indptr)[split.users] > 0):,}"
        f" with a new-to-them product), top {TOP_N}"
    )
    methods: dict[str, Callable[[], tuple]] = {
        "popular (baseline)": ours(split, "popular"),
        "trending 30 d (baseline)": ours(split, "trending", trending_days=30),
        "buy again (baseline)": ours(split, "buy_again", fallback_days=None),
        "buy again, then similar *": ours(split, "buy_again_then_similar"),
        "item co-occurrence": ours(split, "item_cooccurrence"),
        "item co-occ., new only": ours(split, "item_cooccurrence", exclude_bought=True),
        "item co-occ. k=100, new": ours(
            split, "item_cooccurrence", exclude_bought=True, neighbours=100
        ),
    }
    try:
        import implicit  # noqa: F401

        methods["implicit ALS (64 f.)"] = implicit_als(split)
        methods["implicit ALS, new only"] = implicit_als(split, exclude_bought=True)
    except ImportError:
        print("(implicit not installed: ALS skipped)")
    header = (
        f"{'method':<26} {'recall@10':>9} {'NDCG@10':>8} {'recall@10':>9} {'NDCG@10':>8}"
        f" {'coverage':>8} {'fit':>7} {'recommend':>9}"
    )
    print(f"{'':<26} {'all hold-out':^18} {'new to customer':^18}")
    print(header)
    results = {}
    for name, run in methods.items():
        q = results[name] = score_method(split, run)
        print(
            f"{name:<26} {q.recall:>9.3f} {q.ndcg:>8.3f} {q.recall_new:>9.3f} {q.ndcg_new:>8.3f}"
            f" {q.coverage:>7.1%} {q.fit_s:>6.2f}s {q.recommend_s:>8.2f}s"
        )
    default, rival = results["buy again, then similar *"], results["buy again (baseline)"]
    print("* = the service's default. Default minus buy again, over the same customers (all):")
    print(f"  recall@10 {paired_difference(default.per_user[0], rival.per_user[0])}")
    print(f"  NDCG@10   {paired_difference(default.per_user[1], rival.per_user[1])}")
    best = max(q.recall for name, q in results.items() if "baseline" in name)
    return [
        figure(
            "recall@10 of the default, UCI hold-out",
            round(default.recall, 3),
            "",
            reference=round(best, 3),
            ratio=default.recall / best if best else None,
        )
    ]


def generate(n_customers: int, n_products: int = N_PRODUCTS, seed: int = 0) -> pd.DataFrame:
    """Synthetic order lines (the generator described in the module docstring)."""
    rng = np.random.default_rng(seed)
    per_customer = 1 + rng.poisson(9, size=n_customers)
    customer = np.repeat(np.arange(n_customers, dtype=np.int32), per_customer)
    n_lines = customer.size
    weight = 1.0 / np.arange(1, n_products + 1) ** 1.1
    global_pick = rng.permutation(n_products)[
        np.searchsorted(np.cumsum(weight / weight.sum()), rng.random(n_lines))
    ]
    category_size = 100
    favourite = rng.integers(0, n_products // category_size, size=n_customers)[customer]
    in_category = favourite * category_size + np.minimum(
        rng.zipf(1.5, size=n_lines) - 1, category_size - 1
    )
    product = np.where(rng.random(n_lines) < 0.5, in_category, global_pick).astype(np.int32)
    day = rng.integers(0, 365, size=n_lines)
    date = np.datetime64("2025-01-01") + day.astype("timedelta64[D]")
    return pd.DataFrame({"customer": customer, "product": product, "date": date})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    n_customers = SIZES[args.size]
    start = time.perf_counter()
    lines = generate(n_customers)
    active = np.random.default_rng(1).random(N_PRODUCTS) >= 0.02
    print(
        f"\n## Scale — generated {len(lines):,} lines, {n_customers:,} customers × "
        f"{N_PRODUCTS:,} products ({time.perf_counter() - start:.1f}s to generate; "
        f"peak RSS so far {peak_rss_mb():,.0f} MB)"
    )
    print(f"{'method':<22} {'fit':>8} {'recommend all':>14} {'total':>8} {'traced peak':>12}")
    totals = {}
    for method in ("popular", "buy_again", "item_cooccurrence", "buy_again_then_similar"):
        tracemalloc.start()
        start = time.perf_counter()
        model = fit_recommender(
            interactions=lines,
            n_customers=n_customers,
            n_products=N_PRODUCTS,
            active=active,
            method=method,
        )
        fitted = time.perf_counter()
        recs = recommend_top_n(model, np.arange(n_customers), TOP_N)
        done = time.perf_counter()
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        _check(model, recs)
        totals[method] = done - start
        print(
            f"{method:<22} {fitted - start:>7.1f}s {done - fitted:>13.1f}s "
            f"{done - start:>7.1f}s {traced / 2**20:>9,.0f} MB"
        )
        del model, recs
    if args.als:
        _als_scale(lines, active, n_customers)
    print(
        f"process peak RSS (generated data included): {peak_rss_mb():,.0f} MB; "
        f"goal: each total under 300 s and under 4,096 MB; load average now "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the machine is shared)"
    )
    full = n_customers >= SIZES["full"]
    slowest = max(totals, key=totals.__getitem__)
    return [
        figure(
            f"fit + recommend 10 to all, slowest ({slowest})",
            round(totals[slowest], 1),
            "s",
            goal="< 300 s at 1M customers",
            passed=totals[slowest] < 300 if full else None,
        ),
        figure(
            "process peak memory",
            round(peak_rss_mb()),
            "MB",
            goal="< 4096 MB",
            passed=peak_rss_mb() < 4096,
        ),
    ]


def _als_scale(lines: pd.DataFrame, active: np.ndarray, n_customers: int) -> None:
    """`implicit` ALS on the same data: fit, then 10 for everyone in batches of 2,000."""
    from implicit.als import AlternatingLeastSquares

    tracemalloc.start()
    start = time.perf_counter()
    counts = _counts(lines, (n_customers, N_PRODUCTS))
    counts.data = 1.0 + 10.0 * np.log1p(counts.data)
    model = AlternatingLeastSquares(
        factors=64, iterations=15, regularization=0.05, random_state=0, num_threads=1
    )
    model.fit(counts, show_progress=False)
    fitted = time.perf_counter()
    inactive = np.flatnonzero(~active)
    for first in range(0, n_customers, 2_000):
        users = np.arange(first, min(first + 2_000, n_customers))
        model.recommend(users, counts[users], N=TOP_N, filter_items=inactive)
    done = time.perf_counter()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{'implicit ALS (64 f.)':<22} {fitted - start:>7.1f}s {done - fitted:>13.1f}s "
        f"{done - start:>7.1f}s {traced / 2**20:>9,.0f} MB"
    )


def _check(model: RecommenderModel, recs: Recommendations) -> None:
    """The figures only count if every row is full, distinct and active."""
    products = recs.product_idx
    assert (products >= 0).all(), "a customer got fewer than 10 recommendations"
    assert model.active[products].all(), "an inactive product was recommended"
    ordered = np.sort(products, axis=1)
    assert (ordered[:, 1:] != ordered[:, :-1]).all(), "a product was recommended twice"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--als", action="store_true", help="time implicit ALS at scale too")
    args = parser.parse_args()
    print(
        f"# Recommendations benchmark — {cpu_model()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB RAM, "
        f"Python {platform.python_version()}, one process, one thread; load average "
        f"{os.getloadavg()[0]:.1f} at the start (the machine is shared)"
    )
    rows, sizes = [], []
    if not args.skip_quality:
        rows += quality(args)
        sizes.append("UCI Online Retail")
    if not args.skip_scale:
        rows += scale(args)
        sizes.append(f"{SIZES[args.size]:,} customers × {N_PRODUCTS:,} products")
    summary_print(rows, size="; ".join(sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
