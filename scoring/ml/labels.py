"""Churn labels: an explicit yes/no column, or behaviour (no order within a horizon)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from scoring.ml.features import as_utc, status_lower, utc_ns

_TRUE = {"yes", "y", "1", "true", "t", "1.0", "churn", "churned"}
_FALSE = {"no", "n", "0", "false", "f", "0.0"}


def parse_explicit_label(*, values: pd.Series | np.ndarray | list[object]) -> np.ndarray:
    """Yes/No, Y/N, 1/0, true/false (any case, surrounding spaces ignored) → int8 0/1.

    Raises ValueError naming the values it does not recognise (including missing ones).
    """
    series = pd.Series(values, dtype=object)

    def norm(v: object) -> str | None:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, bool | np.bool_):
            return "true" if v else "false"
        return str(v).strip().lower()

    text = series.map(norm)
    is_true = text.isin(_TRUE)
    is_false = text.isin(_FALSE)
    bad = series[~(is_true | is_false)]
    if len(bad):
        shown = sorted({"<missing>" if pd.isna(v) else repr(v) for v in bad.tolist()})[:10]
        raise ValueError(
            f"unrecognised churn label values ({len(bad)} rows): {', '.join(shown)}; "
            "expected yes/no, y/n, 1/0 or true/false"
        )
    return is_true.to_numpy().astype(np.int8)


@dataclass(frozen=True)
class BehaviourLabels:
    """Churn labels for the eligible customers (those with a completed order before cutoff)."""

    customer_ids: np.ndarray
    churned: np.ndarray  # int8, aligned with customer_ids
    cutoff: pd.Timestamp
    horizon_days: int

    def as_series(self) -> pd.Series:
        return pd.Series(self.churned, index=pd.Index(self.customer_ids, name="customer_id"))


def _completed(orders: pd.DataFrame) -> np.ndarray:
    return np.asarray(status_lower(orders["status"]) == "completed")


def eligible_customer_ids(
    *, orders: pd.DataFrame, cutoff: pd.Timestamp | date | datetime
) -> np.ndarray:
    """Sorted ids of the customers with a completed order before `cutoff`: the only ones a
    behaviour label (and so a model trained on one) knows anything about."""
    start = as_utc(cutoff)
    placed = utc_ns(orders["placed_at"])
    before = _completed(orders) & (placed < start.value) & (placed != np.iinfo(np.int64).min)
    eligible = pd.unique(orders["customer_id"].to_numpy()[before])
    return np.sort(eligible) if len(eligible) else np.asarray(eligible)


def behaviour_labels(
    *,
    orders: pd.DataFrame,
    cutoff: pd.Timestamp | date | datetime,
    horizon_days: int,
    orders_at_cutoff: pd.DataFrame | None = None,
) -> BehaviourLabels:
    """churned = 1 for customers with a completed order before `cutoff` and none in
    [cutoff, cutoff + horizon); customers without a completed order before cutoff are not
    eligible and are left out. Only completed orders count as activity.

    `orders_at_cutoff` (the orders as they were at the cutoff, `features.orders_as_of`)
    decides eligibility when given, so a refund after the cutoff does not remove a customer
    from the training rows; activity in the window reads `orders` as they are now."""
    start = as_utc(cutoff)
    end = start + pd.Timedelta(days=horizon_days)
    placed = utc_ns(orders["placed_at"])
    completed = _completed(orders)
    ids = orders["customer_id"].to_numpy()
    during = completed & (placed >= start.value) & (placed < end.value)
    eligible = eligible_customer_ids(
        orders=orders if orders_at_cutoff is None else orders_at_cutoff, cutoff=start
    )
    active = pd.Index(pd.unique(ids[during]))
    churned = (~pd.Index(eligible).isin(active)).astype(np.int8)
    return BehaviourLabels(
        customer_ids=np.asarray(eligible),
        churned=churned,
        cutoff=start,
        horizon_days=horizon_days,
    )
