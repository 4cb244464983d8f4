"""The vectorised phrases (`numeric_phrases_for`, `group_phrases`) read exactly as the
one-value ones, on awkward values: missing, infinite, signed zero, near-integers, thousands,
huge numbers, ties at two decimals."""

import numpy as np
import pytest

from scoring.ml.phrases import group_phrase, group_phrases, numeric_phrase_for, numeric_phrases_for

VALUES = np.asarray(
    [
        np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 2.0, 0.5, 0.125, 0.375, -0.001, 2.5,
        999.995, 999.994, 1000.0, 1000.5, 1234567.891, -2.9999999999, 3.0000000001, 1e20,
        -1e20, 9007199254740993.0, 29.0, 70.35, 0.333333, 143.0, 143.5, -1500.25,
    ]
)  # fmt: skip
NAMES = [
    "recency_days", "orders_90d", "revenue_30d", "event_complaint_30d", "event_logins_7d",
    "days_since_event_complaint", "expected_orders_90d", "p_no_order_30d", "discount_share",
    "tenure_days", "interorder_std_days", "attr_plan_level", "MonthlyCharges", "tenure",
    "orders_lifetime", "revenue_lifetime", "avg_order_value", "items_per_order",
    "interorder_mean_days", "revenue_trend_90d", "refund_share", "cancel_share", "p_alive",
]  # fmt: skip
# Ties and near-ties of one decimal, of a whole number and of a whole percentage (0.125 is
# 12.5 %: a tie; 0.285 is 28.499999… % in binary), tiny and huge values, and random ones.
_rng = np.random.default_rng(7)
TIES = np.asarray(
    [
        0.05, 0.15, 0.25, 0.35, 0.45, 1.25, 2.675, 0.125, 0.285, 0.005, 0.015, 0.995, 0.5,
        1.5, 2.5, 1e-300, 5e-7, 0.049999999, 0.0500000001, 999999999.5, 1e9 + 0.5, 4.35,
        *np.nextafter(0.35, [0.0, 1.0]), *np.nextafter(0.125, [0.0, 1.0]),
    ]
)  # fmt: skip
MANY = np.concatenate(
    [
        TIES,
        _rng.random(400),
        _rng.random(200) * 400,
        np.round(_rng.random(200) * 100, 2) / 100,  # shares that are whole percentages…
        np.round(_rng.random(200) * 1000, 1) / 10,  # …and values on the one-decimal grid
        -_rng.random(20),
    ]
)


@pytest.mark.parametrize("name", NAMES)
def test_vectorised_numeric_phrases_read_as_the_one_value_ones_on_ties_and_random_values(name):
    one = numeric_phrase_for(name, None)
    assert numeric_phrases_for(name, None)(MANY).tolist() == [one(v) for v in MANY.tolist()]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reference", [70.35, 29, None, float("nan"), 1000.5])
def test_vectorised_numeric_phrases_read_as_the_one_value_ones(name, reference):
    one = numeric_phrase_for(name, reference)
    many = numeric_phrases_for(name, reference)(VALUES)
    assert many.dtype == object
    assert many.tolist() == [one(v) for v in VALUES.tolist()]


@pytest.mark.parametrize("lead", ["tenure", "orders_90d"])
@pytest.mark.parametrize("reference", [29.0, None, "n/a"])
def test_vectorised_group_phrases_read_as_the_one_value_ones(lead, reference):
    parts = [
        np.asarray([f"a {v}" for v in VALUES], dtype=object),
        np.full(len(VALUES), "b", object),
    ]
    many = group_phrases(lead=lead, lead_values=VALUES, lead_reference=reference, parts=parts)
    one = [
        group_phrase(lead=lead, lead_value=v, lead_reference=reference, parts=[a, b])
        for v, a, b in zip(VALUES.tolist(), *parts, strict=True)
    ]
    assert many.tolist() == one
