from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from scoring.ml import btyd
from scoring.ml.features import BTYD_HORIZON_DAYS, build_features
from scoring.ml.phrases import describe

TRUE = btyd.BgNbdParams(r=0.25, alpha=30.0, a=0.8, b=2.5)
AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
H = BTYD_HORIZON_DAYS
BTYD_COLUMNS = ["p_alive", f"expected_orders_{H}d", f"p_no_order_{H}d"]


def _split_at(times: list[np.ndarray], T: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x, t_x, purchases after T) from simulated repeat purchase times."""
    x = np.array([np.sum(t <= c) for t, c in zip(times, T, strict=True)], dtype=float)
    t_x = np.array([t[t <= c].max() if np.any(t <= c) else 0.0 for t, c in zip(times, T)])
    later = np.array([np.sum(t > c) for t, c in zip(times, T, strict=True)], dtype=float)
    return x, t_x, later


def test_fit_recovers_known_parameters_from_simulated_data():
    T = np.random.default_rng(0).uniform(180, 360, 20_000)
    x, t_x, _ = btyd.simulate_bgnbd(TRUE, T, seed=0)
    fit = btyd.fit_bgnbd(x, t_x, T)
    assert fit.fitted and fit.n_customers == 20_000
    assert fit.r == pytest.approx(TRUE.r, rel=0.10)
    assert fit.alpha == pytest.approx(TRUE.alpha, rel=0.10)
    assert fit.a == pytest.approx(TRUE.a, rel=0.15)
    assert fit.b == pytest.approx(TRUE.b, rel=0.15)
    # The fitted model is at least as likely as the truth on its own data (it is the MLE).
    assert btyd.log_likelihood(fit, x, t_x, T).sum() >= btyd.log_likelihood(TRUE, x, t_x, T).sum()


def test_conditional_predictions_match_simulated_holdout_purchases():
    T = np.random.default_rng(1).uniform(180, 270, 8_000)
    horizon = 180.0
    _, _, times = btyd.simulate_bgnbd(TRUE, T + horizon, seed=1)
    x, t_x, later = _split_at(times, T)
    expected = btyd.expected_purchases(TRUE, horizon, x, t_x, T)
    none = btyd.p_no_purchase(TRUE, horizon, x, t_x, T)
    assert np.isfinite(expected).all() and np.isfinite(none).all()
    assert expected.mean() == pytest.approx(later.mean(), rel=0.08)
    assert none.mean() == pytest.approx((later == 0).mean(), abs=0.02)
    # Repeat buyers: the forecast also holds within the group the model is least sure about.
    repeat = x > 0
    assert expected[repeat].mean() == pytest.approx(later[repeat].mean(), rel=0.1)


def test_p_alive_is_one_without_repeat_purchase_and_falls_with_silence():
    T = np.full(5, 200.0)
    assert np.all(btyd.p_alive(TRUE, np.zeros(5), np.zeros(5), T) == 1.0)
    t_x = np.array([190.0, 150.0, 100.0, 50.0, 10.0])  # ever longer since the last purchase
    for x in (1.0, 3.0, 10.0):
        alive = btyd.p_alive(TRUE, np.full(5, x), t_x, T)
        assert np.all(np.diff(alive) < 0) and np.all((alive > 0) & (alive < 1))
        silent = btyd.p_no_purchase(TRUE, 180.0, np.full(5, x), t_x, T)
        assert np.all(np.diff(silent) > 0)
        assert np.all(np.diff(btyd.expected_purchases(TRUE, 180.0, np.full(5, x), t_x, T)) < 0)


def test_fit_falls_back_to_the_default_prior_with_too_few_repeat_buyers():
    x = np.array([0.0, 0.0, 1.0])
    fit = btyd.fit_bgnbd(x, np.array([0.0, 0.0, 20.0]), np.array([100.0, 50.0, 30.0]))
    assert fit == btyd.DEFAULT_PARAMS and not fit.fitted
    assert btyd.BgNbdParams.from_dict(asdict(TRUE)) == TRUE


def test_summary_counts_same_day_orders_once_and_ignores_later_ones():
    day = 86_400 * 10**9
    now = AS_OF.value
    positions = np.array([0, 0, 0, 0, 1, 2])
    placed = np.array(
        [
            now - 30 * day,
            now - 30 * day + 3600 * 10**9,
            now - 10 * day,
            now,
            now - 5 * day,
            now + day,
        ]
    )
    x, t_x, T = btyd.summary_from_orders(
        positions=positions, placed_ns=placed, now_ns=now, n_customers=4
    )
    assert x[:2].tolist() == [1.0, 0.0]
    assert t_x[0] == pytest.approx(20.0) and T[0] == pytest.approx(30.0)
    assert t_x[1] == 0.0 and T[1] == pytest.approx(5.0)
    assert np.isnan(x[2]) and np.isnan(x[3]) and np.isnan(T[3])


def _orders_frame(n_customers: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers buying from a BG/NBD process, with first purchases spread over 200 days."""
    rng = np.random.default_rng(seed)
    start = AS_OF - pd.Timedelta(days=300)
    first = rng.uniform(0, 200, n_customers)
    _, _, times = btyd.simulate_bgnbd(TRUE, np.full(n_customers, 400.0), seed=seed)
    rows = [
        (cid, start + pd.Timedelta(days=float(f + t)))
        for cid, (f, ts) in enumerate(zip(first, times, strict=True))
        for t in (0.0, *ts)
    ]
    orders = pd.DataFrame(rows, columns=["customer_id", "placed_at"])
    orders["amount"] = 20.0
    orders["status"] = "completed"
    orders["discount_amount"] = 0.0
    orders["item_count"] = 1
    customers = pd.DataFrame(
        {"customer_id": np.arange(n_customers), "signup_date": pd.NaT, "attributes": None}
    )
    return orders, customers


def test_btyd_features_ignore_orders_at_or_after_the_cutoff():
    orders, customers = _orders_frame()
    assert (orders["placed_at"] >= AS_OF).any()  # the simulation runs past the cutoff
    events = pd.DataFrame({"customer_id": [], "kind": [], "occurred_at": []})
    X = build_features(orders=orders, events=events, customers=customers, as_of=AS_OF)
    before = orders[orders["placed_at"] < AS_OF]
    X_before = build_features(orders=before, events=events, customers=customers, as_of=AS_OF)
    pd.testing.assert_frame_equal(X[BTYD_COLUMNS], X_before[BTYD_COLUMNS])
    assert X.attrs["btyd_params"] == X_before.attrs["btyd_params"]
    assert X.attrs["btyd_params"]["fitted"]
    # A burst of late orders changes nothing either.
    late = orders.head(50).assign(placed_at=AS_OF + pd.Timedelta(days=1))
    X_late = build_features(
        orders=pd.concat([before, late]), events=events, customers=customers, as_of=AS_OF
    )
    pd.testing.assert_frame_equal(X[BTYD_COLUMNS], X_late[BTYD_COLUMNS])


def test_btyd_features_with_given_parameters_do_not_depend_on_the_chunk():
    orders, customers = _orders_frame()
    events = pd.DataFrame({"customer_id": [], "kind": [], "occurred_at": []})
    X = build_features(orders=orders, events=events, customers=customers, as_of=AS_OF)
    params = X.attrs["btyd_params"]
    chunk = customers.iloc[:37]
    X_chunk = build_features(
        orders=orders, events=events, customers=chunk, as_of=AS_OF, btyd_params=params
    )
    pd.testing.assert_frame_equal(X_chunk[BTYD_COLUMNS], X.loc[X_chunk.index, BTYD_COLUMNS])
    assert X_chunk.attrs["btyd_params"] == params
    one_time = X["orders_lifetime"] == 1
    assert (X.loc[one_time, "p_alive"] == 1).all()
    assert X[BTYD_COLUMNS].notna().all().all()


def test_btyd_features_are_nan_without_completed_orders_and_have_phrases():
    orders, customers = _orders_frame(n_customers=5)
    customers = pd.concat([customers, pd.DataFrame({"customer_id": [99], "signup_date": [pd.NaT]})])
    events = pd.DataFrame({"customer_id": [], "kind": [], "occurred_at": []})
    X = build_features(orders=orders, events=events, customers=customers, as_of=AS_OF)
    assert X.loc[99, BTYD_COLUMNS].isna().all()
    assert not X.attrs["btyd_params"]["fitted"]  # 5 customers: the default prior is used
    assert describe(name="p_alive", value=0.23) == "low chance of still being active (23%)"
    assert describe(name="p_alive", value=float("nan")) == "no orders yet"
    assert describe(name="p_no_order_180d", value=0.81) == (
        "81% chance of no order in the next 180 days"
    )
    assert describe(name="expected_orders_180d", value=0.42) == (
        "only 0.4 orders expected in the next 180 days"
    )


def test_purchase_occasions_are_the_distinct_customer_days() -> None:
    """The sorted-key count equals counting distinct (customer, UTC day) pairs by hand."""
    rng = np.random.default_rng(3)
    day = 86_400 * 10**9
    now = 20_000 * day
    positions = rng.integers(-1, 60, 5_000)  # -1 and 50+ lie outside the 50 customers
    placed = now - rng.integers(-5 * day, 400 * day, 5_000)
    x, _, _ = btyd.summary_from_orders(
        positions=positions, placed_ns=placed, now_ns=now, n_customers=50
    )
    pairs = {
        (int(p), int(t // day))
        for p, t in zip(positions, placed, strict=True)
        if 0 <= p < 50 and t < now
    }
    occasions = np.bincount([p for p, _ in pairs], minlength=50)
    expected = np.where(occasions > 0, occasions - 1.0, np.nan)
    np.testing.assert_array_equal(x, expected)
