"""Refresh every customer's product recommendations: the bridge between the order lines in the
database and the pure recommender (scoring/ml/recommend.py).

One refresh reads the kept units of every order line (customer, product, day), fits the
default method, recommends the top N to each customer with a purchase history in chunks, and
replaces the stored rows in one transaction: readers see the old list or the new one, never a
mix. Customers without history are not stored: they get the run's fallback list (selectors).
Inactive products are never recommended (the recommender masks them)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from common.db.bulk import bulk_insert
from common.db.frames import frame_from_sql
from customers.models import OrderLine, Product
from scoring.ml.recommend import DEFAULT_METHOD, SOURCE_NAMES, fit_recommender, recommend_top_n
from scoring.models import CustomerRecommendation, RecommendationRun

# Stored per customer: messages show a few; the admin and the API can show up to this many.
STORED_PER_CUSTOMER = 10
WRITE_CHUNK = 20_000


def _lines_frame() -> pd.DataFrame:
    """Every order line with a kept unit: customer id, product id, the order's time."""
    line, order = OrderLine._meta.db_table, OrderLine._meta.get_field("order").related_model
    orders = order._meta.db_table  # type: ignore[union-attr]
    return frame_from_sql(
        f"SELECT o.customer_id, l.product_id, o.placed_at FROM {line} l "
        f"JOIN {orders} o ON o.id = l.order_id WHERE l.quantity > l.refunded_quantity",
        [],
        columns=["customer_id", "product_id", "placed_at"],
        datetimes=["placed_at"],
    )


def recommendations_refresh(
    *,
    method: str = DEFAULT_METHOD,
    per_customer: int = STORED_PER_CUSTOMER,
    say: Callable[[str], None] | None = None,
) -> RecommendationRun | None:
    """Fit, recommend and store; None when the shop has no order lines yet."""
    started = time.perf_counter()
    lines = _lines_frame()
    if lines.empty:
        return None
    products = pd.DataFrame(
        list(Product.objects.order_by("pk").values_list("pk", "active")),
        columns=["product_id", "active"],
    )
    product_index = pd.Index(products["product_id"])
    customer_ids, customer_idx = np.unique(lines["customer_id"].to_numpy(), return_inverse=True)
    interactions = pd.DataFrame(
        {
            "customer": customer_idx,
            "product": product_index.get_indexer(lines["product_id"]),
            "date": lines["placed_at"],
        }
    )
    model = fit_recommender(
        interactions=interactions,
        n_customers=len(customer_ids),
        n_products=len(products),
        active=products["active"].to_numpy(dtype=bool),
        method=method,
        product_ids=products["product_id"].to_numpy(),
    )
    if say:
        say(f"fitted {method} on {len(lines):,} lines, {len(customer_ids):,} customers")
    found = recommend_top_n(model, np.arange(len(customer_ids)), per_customer)
    rows = _rows(found.product_idx, found.source, model.product_ids, customer_ids)
    fallback = [int(model.product_ids[i]) for i in model.popular_rank[:per_customer]]
    with transaction.atomic():
        run = RecommendationRun.objects.create(
            version=model.version,
            method=method,
            as_of=timezone.now(),
            customers=len(customer_ids),
            products=int(products["active"].sum()),
            lines=len(lines),
            fallback_product_ids=fallback,
        )
        CustomerRecommendation.objects.all().delete()
        rows["run_id"] = run.pk
        for start in range(0, len(rows), WRITE_CHUNK):
            bulk_insert(CustomerRecommendation, rows.iloc[start : start + WRITE_CHUNK])
        run.seconds = round(time.perf_counter() - started, 3)
        run.save(update_fields=["seconds"])
        RecommendationRun.objects.exclude(pk=run.pk).delete()
    return run


def _rows(
    product_idx: np.ndarray, source: np.ndarray, labels: np.ndarray, customer_ids: np.ndarray
) -> pd.DataFrame:
    """One row per customer: product ids and source names, empty slots dropped."""
    filled = product_idx >= 0
    ids = np.where(filled, labels[np.maximum(product_idx, 0)], -1)
    names = np.array([SOURCE_NAMES.get(s, "") for s in range(3)] + [""], dtype=object)
    source_names = names[np.where(filled, source, 3)]
    return pd.DataFrame(
        {
            "customer_id": customer_ids,
            "product_ids": [[int(p) for p in row[keep]] for row, keep in zip(ids, filled)],
            "sources": [list(row[keep]) for row, keep in zip(source_names, filled)],
        }
    )
