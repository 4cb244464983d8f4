"""Per-customer reasons: which features push each customer's churn probability up.

Method (model-agnostic, vectorised per feature): for a chunk of customers, replace one
feature at a time by its typical training value (median / most frequent category) for all
customers whose value differs, re-score them with one `predict_proba` call, and take
contribution = p(actual) - p(with typical value). A positive contribution means the
customer's own value raises the risk. The top `top_k` positive contributions become short
phrases ("no order for 143 days", "Contract is Month-to-month").
Cost: one predict_proba per feature over the differing rows of the chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scoring.ml.features import FeatureSpec

# Contributions below this (in probability) are noise, not a reason.
MIN_CONTRIBUTION = 1e-3

Phrase = Callable[[Any, Any], str]


@dataclass(frozen=True)
class Explanations:
    """Aligned with the rows of the explained frame; rows below the threshold have ()."""

    index: pd.Index
    probabilities: np.ndarray
    features: tuple[tuple[str, ...], ...]
    contributions: tuple[tuple[float, ...], ...]
    reasons: tuple[tuple[str, ...], ...]

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {
                "customer_id": cid,
                "probability": float(p),
                "reasons": list(r),
                "features": list(f),
                "contributions": [round(c, 4) for c in cs],
            }
            for cid, p, r, f, cs in zip(
                self.index,
                self.probabilities,
                self.reasons,
                self.features,
                self.contributions,
                strict=True,
            )
        ]


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return "unknown"
    if abs(value - round(value)) < 1e-9:
        return str(round(value))
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def _plural(word: str, count: float) -> str:
    return word if count == 1 or word.endswith("s") else word + "s"


def _human(name: str) -> str:
    return name.replace("_", " ")


def _phrase(name: str, value: Any, reference: Any, is_categorical: bool) -> str:
    v = _num(value) if not is_categorical else value
    if is_categorical:
        label = _human(name[5:]) if name.startswith("attr_") else name
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return f"{label} unknown"
        return f"{label} is {value}"
    assert isinstance(v, float)
    if name == "recency_days":
        return "no completed order yet" if np.isnan(v) else f"no order for {v:.0f} days"
    if m := re.fullmatch(r"orders_(\d+)d", name):
        w = m.group(1)
        if v == 0:
            return f"no orders in the last {w} days"
        return f"only {_fmt(v)} {_plural('order', v)} in the last {w} days"
    if m := re.fullmatch(r"revenue_(\d+)d", name):
        w = m.group(1)
        return f"no spending in the last {w} days" if v == 0 else f"spent {_fmt(v)} in {w} days"
    if m := re.fullmatch(r"event_(.+)_(\d+)d", name):
        kind, w = _human(m.group(1)), m.group(2)
        if v == 0:
            return f"no {kind} in the last {w} days"
        return f"{_fmt(v)} {_plural(kind, v)} in the last {w} days"
    if m := re.fullmatch(r"days_since_event_(.+)", name):
        kind = _human(m.group(1))
        return f"never a {kind}" if np.isnan(v) else f"last {kind} {v:.0f} days ago"
    fixed: dict[str, Callable[[float], str]] = {
        "orders_lifetime": lambda x: f"{_fmt(x)} {_plural('order', x)} in total",
        "revenue_lifetime": lambda x: f"lifetime spend {_fmt(x)}",
        "avg_order_value": lambda x: f"average order value {_fmt(x)}",
        "items_per_order": lambda x: f"{x:.1f} items per order",
        "tenure_days": lambda x: f"customer for {x:.0f} days",
        "interorder_mean_days": lambda x: f"orders every {x:.0f} days on average",
        "interorder_std_days": lambda x: f"irregular ordering (gaps vary by {x:.0f} days)",
        "revenue_trend_90d": lambda x: (
            "spending down over the last 90 days"
            if x < 0
            else "spending pattern over the last 90 days"
        ),
        "refund_share": lambda x: f"{x:.0%} of orders refunded",
        "cancel_share": lambda x: f"{x:.0%} of orders cancelled",
        "discount_share": lambda x: f"{x:.0%} of spend was discount",
    }
    missing = {
        "interorder_mean_days": "fewer than two orders",
        "interorder_std_days": "too few orders to show a rhythm",
        "tenure_days": "customer since an unknown date",
    }
    if name in fixed:
        return missing.get(name, "no orders yet") if np.isnan(v) else fixed[name](v)
    label = _human(name[5:]) if name.startswith("attr_") else name
    ref = _num(reference)
    if np.isnan(v):
        return f"{label} unknown"
    if np.isfinite(ref) and ref != v:
        return f"{label} {_fmt(v)} (typical {_fmt(ref)})"
    return f"{label} {_fmt(v)}"


def describe(
    *,
    name: str,
    value: Any,
    reference: Any = None,
    categorical: bool = False,
    templates: Mapping[str, str] | None = None,
) -> str:
    """Readable phrase for one feature value. `templates` override by feature name with a
    format string using {value}, {reference} and {name}, e.g. "tenure {value:g} months"."""
    if templates and name in templates:
        try:
            return templates[name].format(value=value, reference=reference, name=name)
        except (ValueError, TypeError):
            pass
    return _phrase(name, value, reference, categorical)


def _differs(values: pd.Series, reference: Any, categorical: bool) -> np.ndarray:
    if categorical:
        arr = values.astype(object).to_numpy()
        missing = pd.isna(arr)
        if reference is None:
            return ~missing
        return missing | (arr != reference)
    arr = values.to_numpy(dtype=np.float64)
    ref = _num(reference)
    if np.isnan(ref):
        return ~np.isnan(arr)
    return np.isnan(arr) | (arr != ref)


def explain_customers(
    *,
    estimator: Any,
    X: pd.DataFrame,
    spec: FeatureSpec,
    reference: Mapping[str, Any],
    threshold: float = 0.0,
    top_k: int = 3,
    probabilities: np.ndarray | None = None,
    templates: Mapping[str, str] | None = None,
) -> Explanations:
    """Top `top_k` reasons for every row of X whose probability is >= `threshold`.

    `reference` is the training medians/modes (`TrainingResult.reference_values`).
    Pass `probabilities` if already computed for X to save one prediction.
    """
    X = X.loc[:, list(spec.columns)]
    n = len(X)
    p = (
        estimator.predict_proba(X)[:, 1]
        if probabilities is None
        else np.asarray(probabilities, dtype=np.float64)
    )
    rows = np.flatnonzero(p >= threshold)
    columns = list(spec.columns)
    categorical = set(spec.categorical)
    contrib = np.zeros((len(rows), len(columns)))
    if len(rows):
        work = X.iloc[rows].copy()
        base = p[rows]
        for j, col in enumerate(columns):
            ref = reference.get(col)
            is_cat = col in categorical
            idx = np.flatnonzero(_differs(work[col], ref, is_cat))
            if not len(idx):
                continue
            original = work[col]
            fill: Any = ref if is_cat else np.float32(_num(ref))
            work[col] = pd.Series(fill, index=work.index, dtype=original.dtype)
            contrib[idx, j] = base[idx] - estimator.predict_proba(work.iloc[idx])[:, 1]
            work[col] = original

    # A few spare candidates: two features can read the same ("no orders yet"), and each row
    # keeps its top_k distinct phrases.
    k = min(top_k + 3, len(columns))
    order = np.argsort(-contrib, axis=1)[:, :k]
    top_values = np.take_along_axis(contrib, order, axis=1)
    keep = top_values > MIN_CONTRIBUTION

    # Phrases are built per feature for all rows that cite it, then assembled per row.
    texts = np.empty(order.shape, dtype=object)
    sub = X.iloc[rows] if len(rows) else X.iloc[:0]
    for j in np.unique(order[keep]):
        col = columns[j]
        hit = (order == j) & keep
        row_idx = np.flatnonzero(hit.any(axis=1))
        values = sub[col].to_numpy()[row_idx]
        phrases = [
            describe(
                name=col,
                value=v,
                reference=reference.get(col),
                categorical=col in categorical,
                templates=templates,
            )
            for v in values
        ]
        texts[row_idx, np.argmax(hit[row_idx], axis=1)] = phrases

    features: list[tuple[str, ...]] = [()] * n
    contributions: list[tuple[float, ...]] = [()] * n
    reasons: list[tuple[str, ...]] = [()] * n
    for r, row in enumerate(rows):
        seen: set[str] = set()
        chosen = []
        for position in np.flatnonzero(keep[r]):
            if texts[r][position] not in seen and len(chosen) < top_k:
                seen.add(texts[r][position])
                chosen.append(position)
        features[row] = tuple(columns[j] for j in order[r][chosen])
        contributions[row] = tuple(float(c) for c in top_values[r][chosen])
        reasons[row] = tuple(texts[r][chosen])
    return Explanations(
        index=X.index,
        probabilities=p,
        features=tuple(features),
        contributions=tuple(contributions),
        reasons=tuple(reasons),
    )
