import numpy as np
import pandas as pd

from scoring.ml.explain import _numbers, explain_customers
from scoring.ml.pipelines import build_pipeline, select_candidates
from scoring.ml.train import reference_values

from .conftest import fitted_calibrated, make_frame


def test_reasons_name_the_features_that_raise_the_risk(mixed_data):
    X, y, spec = mixed_data
    model = fitted_calibrated(X, y, spec, "lr_balanced")
    reference = reference_values(X=X, spec=spec)
    at_risk = pd.DataFrame(
        {
            "recency_days": np.float32([143.0, 5.0]),
            "event_complaint_30d": np.float32([2.0, 0.0]),
            "noise": np.float32([reference["noise"], reference["noise"]]),
            "Contract": np.array(["Month-to-month", "Two year"], dtype=object),
        },
        index=["c1", "c2"],
    )
    out = explain_customers(
        estimator=model, X=at_risk, spec=spec, reference=reference, threshold=0.0
    )
    assert set(out.reasons[0]) == {
        "no order for 143 days",
        "2 complaints in the last 30 days",
        "Contract is Month-to-month",
    }
    assert out.features[0][0] in {"recency_days", "event_complaint_30d", "Contract"}
    # c2 is low risk on every driver: nothing pushes it up.
    assert out.reasons[1] == ()
    only_high = explain_customers(
        estimator=model, X=at_risk, spec=spec, reference=reference, threshold=0.99
    )
    assert only_high.reasons == ((), ()) or len(only_high.reasons[0]) > 0


def test_explanations_for_a_50k_chunk_are_fast(mixed_data):
    X, y, spec = mixed_data
    model = build_pipeline(spec=spec, candidate=select_candidates(names="hgb")[0]).fit(X, y)
    big, _ = make_frame(50_000, seed=11)
    out = explain_customers(
        estimator=model, X=big, spec=spec, reference=reference_values(X=X, spec=spec), threshold=0.5
    )
    # Speed is measured by bench/scoring.py, not asserted here.
    assert sum(1 for r in out.reasons if r) > 0


class _NoOrdersModel:
    """p rises when the customer has no orders (two features say so) and with recency."""

    def predict_proba(self, X):
        p = (
            0.2
            + 0.3 * X["avg_order_value"].isna().to_numpy()
            + 0.2 * X["revenue_lifetime"].isna().to_numpy()
            + 0.1 * (X["recency_days"].fillna(0).to_numpy() > 100)
        )
        return np.column_stack([1 - p, p])


def test_a_row_never_repeats_the_same_reason():
    from scoring.ml.features import FeatureSpec

    spec = FeatureSpec(
        numeric=("avg_order_value", "revenue_lifetime", "recency_days"), categorical=()
    )
    X = pd.DataFrame(
        {
            "avg_order_value": [np.nan],
            "revenue_lifetime": [np.nan],
            "recency_days": [143.0],
        },
        index=["c1"],
    )
    reference = {"avg_order_value": 40.0, "revenue_lifetime": 200.0, "recency_days": 30.0}
    out = explain_customers(estimator=_NoOrdersModel(), X=X, spec=spec, reference=reference)
    assert out.reasons[0] == ("no orders yet", "no order for 143 days")
    assert out.features[0] == ("avg_order_value", "recency_days")


def test_a_repeated_reason_is_replaced_by_the_next_candidate_phrased_only_where_needed():
    """With two reasons a row, a row whose two strongest inputs read alike ("no orders yet")
    takes the third; the spare candidates are phrased only in such rows, and their phrases
    share the numbering of the others (a text already seen, or a new one)."""
    from scoring.ml.features import FeatureSpec

    spec = FeatureSpec(
        numeric=("avg_order_value", "revenue_lifetime", "recency_days"), categorical=()
    )
    X = pd.DataFrame(
        {
            "avg_order_value": [np.nan, np.nan, np.nan],
            "revenue_lifetime": [np.nan, 300.0, np.nan],
            "recency_days": [143.0, 143.0, 200.0],
        },
        index=["c1", "c2", "c3"],
    )
    reference = {"avg_order_value": 40.0, "revenue_lifetime": 200.0, "recency_days": 30.0}
    out = explain_customers(
        estimator=_NoOrdersModel(), X=X, spec=spec, reference=reference, top_k=2
    )
    assert out.reasons == (
        ("no orders yet", "no order for 143 days"),
        ("no orders yet", "no order for 143 days"),
        ("no orders yet", "no order for 200 days"),
    )
    assert out.features[0] == ("avg_order_value", "recency_days")
    assert sorted(out.phrases.tolist()) == sorted(set(out.phrases.tolist()))  # one number a text


def test_row_keys_order_rows_as_the_rows_themselves() -> None:
    """One int64 key per row, in the rows' lexicographic order; rows when the key would not fit."""
    import numpy as np

    from scoring.ml.explain import _row_keys

    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 7, 500), rng.integers(0, 3, 500), rng.integers(0, 11, 500)]
    keys = _row_keys(codes, [7, 3, 11])
    rows = np.stack(codes, axis=1)
    _, by_row = np.unique(rows, axis=0, return_inverse=True)
    _, by_key = np.unique(keys, return_inverse=True)
    assert keys.ndim == 1 and np.array_equal(by_row.reshape(-1), by_key.reshape(-1))
    assert _row_keys(codes, [2**31, 2**31, 2**31]).shape == (500, 3)


def test_waterfall_numbers_are_the_six_decimal_texts_trailing_zeros_dropped():
    """`_numbers` builds each text from the value's millionths by table lookups: the same
    text as formatting it with 6 decimals, for every size a waterfall holds and beyond."""
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [rng.normal(0, scale, 20_000) for scale in (1e-7, 1e-5, 1e-3, 0.1, 1.0, 50.0, 5_000.0)]
        + [np.asarray([0.0, -0.0, 1e-9, -1e-9, np.nan, 3.0, -2.5, 0.1, 999.999999, 1000.0])]
    )
    values = np.round(values, 6)
    expected = []
    for v in np.nan_to_num(values).tolist():
        text = f"{v:.6f}".rstrip("0").rstrip(".")
        expected.append("0" if text in ("-0", "") else text)
    assert _numbers(values).tolist() == expected
    # the plain-size path alone (no value of 1,000 or more sends it to formatting)
    small = values[np.abs(np.nan_to_num(values)) < 1000]
    kept = [e for e, v in zip(expected, np.nan_to_num(values), strict=True) if abs(v) < 1000]
    assert _numbers(small).tolist() == kept
