import numpy as np
import pandas as pd
import pytest

from scoring.ml.features import (
    align_features,
    build_features,
    build_snapshot_features,
    infer_feature_spec,
)

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")


def _ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    customers = pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "signup_date": [_ts("2023-01-01"), pd.NaT, pd.NaT],
            "attributes": [
                {"plan": "gold", "age": 41, "vip": True},
                {"plan": "basic", "age": 29.5},
                None,
            ],
        }
    )
    orders = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2, 2, 1],
            "placed_at": [
                _ts("2024-01-10"),
                _ts("2024-04-01"),
                _ts("2024-05-22"),
                _ts("2024-05-01"),
                _ts("2024-05-20"),
                _ts("2024-06-01"),  # exactly at as_of: must be ignored
            ],
            "amount": [100.0, 50.0, 30.0, 20.0, 20.0, 999.0],
            "status": ["completed", "completed", "completed", "completed", "refunded", "completed"],
            "discount_amount": [0.0, 10.0, 0.0, 0.0, 0.0, 0.0],
            "item_count": [1, 2, 1, 1, 1, 9],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2],
            "kind": ["Complaint", "complaint", "login", "complaint"],
            "occurred_at": [
                _ts("2024-05-25"),
                _ts("2024-05-30"),
                _ts("2024-05-31"),
                _ts("2024-07-01"),
            ],
        }
    )
    return orders, events, customers


def test_features_cover_every_customer_with_expected_values(frames):
    orders, events, customers = frames
    X = build_features(orders=orders, events=events, customers=customers, as_of=AS_OF)
    assert list(X.index) == [1, 2, 3]
    assert X.loc[1, "recency_days"] == pytest.approx(10.0)
    assert X.loc[1, "orders_30d"] == 1 and X.loc[1, "orders_90d"] == 2
    assert X.loc[1, "orders_lifetime"] == 3 and X.loc[1, "revenue_lifetime"] == 180
    assert X.loc[1, "avg_order_value"] == pytest.approx(60.0)
    assert X.loc[1, "discount_share"] == pytest.approx(10 / 190)
    assert X.loc[1, "tenure_days"] == pytest.approx((AS_OF - _ts("2023-01-01")).days)
    assert X.loc[2, "tenure_days"] == pytest.approx(31.0)  # from first order, no signup
    assert X.loc[2, "refund_share"] == pytest.approx(0.5)
    assert np.isnan(X.loc[3, "recency_days"]) and X.loc[3, "orders_365d"] == 0
    assert X.loc[1, "event_complaint_30d"] == 2
    assert X.loc[1, "days_since_event_complaint"] == pytest.approx(2.0)
    assert X.loc[2, "event_complaint_30d"] == 0  # the July complaint is after as_of
    assert np.isnan(X.loc[3, "days_since_event_login"])
    gaps = [(82.0), (51.0)]  # 2024-01-10 → 04-01 → 05-22
    assert X.loc[1, "interorder_mean_days"] == pytest.approx(np.mean(gaps))
    assert X.loc[1, "interorder_std_days"] == pytest.approx(np.std(gaps))
    assert X["attr_age"].dtype == np.float32 and X.loc[2, "attr_age"] == pytest.approx(29.5)
    assert X.loc[1, "attr_plan"] == "gold" and X.loc[1, "attr_vip"] == "true"
    spec = infer_feature_spec(features=X)
    assert set(spec.categorical) == {"attr_plan", "attr_vip"}
    assert "recency_days" in spec.numeric and "attr_age" in spec.numeric


def test_features_ignore_orders_and_events_at_or_after_as_of(frames):
    orders, events, customers = frames
    before = build_features(orders=orders, events=events, customers=customers, as_of=AS_OF)
    changed_orders = orders.copy()
    late = changed_orders["placed_at"] >= AS_OF
    changed_orders.loc[late, "amount"] = 5.0
    changed_orders.loc[late, "status"] = "refunded"
    extra = pd.DataFrame(
        {
            "customer_id": [3, 2],
            "placed_at": [AS_OF, AS_OF + pd.Timedelta(days=3)],
            "amount": [77.0, 1.0],
            "status": ["completed", "completed"],
            "discount_amount": [0.0, 0.0],
            "item_count": [1, 1],
        }
    )
    changed_events = pd.concat(
        [
            events,
            pd.DataFrame({"customer_id": [3], "kind": ["complaint"], "occurred_at": [AS_OF]}),
        ]
    )
    after = build_features(
        orders=pd.concat([changed_orders, extra]),
        events=changed_events,
        customers=customers,
        as_of=AS_OF,
    )
    pd.testing.assert_frame_equal(before, after)


def test_scoring_alignment_fills_unseen_event_kinds_with_zero(frames):
    orders, events, customers = frames
    X = build_features(orders=orders, events=events, customers=customers, as_of=AS_OF)
    spec = infer_feature_spec(features=X)
    later = build_features(orders=orders, events=events.iloc[:0], customers=customers, as_of=AS_OF)
    aligned = align_features(features=later, spec=spec)
    assert list(aligned.columns) == list(spec.columns)
    assert (aligned["event_complaint_30d"] == 0).all()


def test_snapshot_features_coerce_numeric_strings_and_keep_categories():
    table = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "TotalCharges": ["10.5", " ", "20"],
            "Contract": ["Month-to-month", "Two year", None],
            "tenure": [1, 0, 5],
            "Churn": ["Yes", "No", "No"],
        }
    )
    X = build_snapshot_features(table=table, id_column="id", label_column="Churn")
    spec = infer_feature_spec(features=X)
    assert spec.numeric == ("TotalCharges", "tenure")
    assert spec.categorical == ("Contract",)
    assert np.isnan(X.loc["b", "TotalCharges"]) and X.loc["a", "TotalCharges"] == 10.5
    assert "Churn" not in X.columns


def test_build_features_is_vectorised_enough_for_large_inputs():
    rng = np.random.default_rng(0)
    n_customers, n_orders = 50_000, 400_000
    customers = pd.DataFrame(
        {"customer_id": np.arange(n_customers), "signup_date": pd.NaT, "attributes": None}
    )
    start = _ts("2023-01-01").value
    placed = pd.to_datetime(rng.integers(start, AS_OF.value + 10**14, n_orders), utc=True)
    orders = pd.DataFrame(
        {
            "customer_id": rng.integers(0, n_customers, n_orders),
            "placed_at": placed,
            "amount": rng.gamma(2, 30, n_orders),
            "status": rng.choice(
                ["completed", "refunded", "cancelled"], n_orders, p=[0.9, 0.05, 0.05]
            ),
            "discount_amount": 0.0,
            "item_count": 1,
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": rng.integers(0, n_customers, n_orders),
            "kind": rng.choice(["login", "complaint"], n_orders),
            "occurred_at": placed,
        }
    )
    X = build_features(orders=orders, events=events, customers=customers, as_of=AS_OF)
    assert len(X) == n_customers
    assert (
        X["orders_lifetime"].sum()
        == ((orders.placed_at < AS_OF) & (orders.status == "completed")).sum()
    )


def test_features_do_not_depend_on_the_order_of_the_orders():
    """A scoring chunk reads orders sorted by (customer, time) and the sorts are then skipped;
    any other order (an import's, time order) gives the same features (up to the rounding of
    sums added in another order)."""
    rng = np.random.default_rng(7)
    n_customers, n_orders = 300, 4_000
    customers = pd.DataFrame(
        {"customer_id": np.arange(n_customers), "signup_date": pd.NaT, "attributes": None}
    )
    start = _ts("2023-01-01").value
    # Whole days and same-day repeats, so ties in time and purchase occasions both occur.
    days = rng.integers(0, 700, n_orders)
    placed = pd.to_datetime(start + days * 86_400 * 10**9, utc=True)
    orders = pd.DataFrame(
        {
            "customer_id": rng.integers(0, n_customers, n_orders),
            "placed_at": placed,
            "amount": rng.gamma(2, 30, n_orders),
            "status": rng.choice(["completed", "refunded"], n_orders, p=[0.9, 0.1]),
            "discount_amount": 0.0,
            "item_count": 1,
        }
    )
    empty_events = pd.DataFrame({"customer_id": [], "kind": [], "occurred_at": []})
    as_index = orders.sort_values(["customer_id", "placed_at"], kind="stable")
    shuffled = orders.sample(frac=1.0, random_state=3)
    frames = [
        build_features(orders=o, events=empty_events, customers=customers, as_of=AS_OF)
        for o in (as_index, shuffled)
    ]
    assert frames[0]["interorder_std_days"].notna().sum() > 100
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=False, rtol=1e-6)


def _random_history(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Customers, their orders (any status, times to the microsecond, some after AS_OF) and
    no events."""
    rng = np.random.default_rng(seed)
    n_customers, n_orders = 200, 3_000
    customers = pd.DataFrame(
        {"customer_id": np.arange(n_customers), "signup_date": pd.NaT, "attributes": None}
    )
    micros = rng.integers(0, 500 * 86_400 * 10**6, n_orders)
    placed = pd.to_datetime(_ts("2023-03-01").value + micros * 1000, utc=True)
    orders = pd.DataFrame(
        {
            "customer_id": rng.integers(0, n_customers, n_orders),
            "placed_at": placed,
            "amount": rng.gamma(2, 30, n_orders).round(2),
            "status": rng.choice(
                ["completed", "refunded", "cancelled"], n_orders, p=[0.8, 0.1, 0.1]
            ),
            "discount_amount": rng.choice([0.0, 5.0], n_orders),
            "item_count": rng.integers(1, 4, n_orders),
        }
    ).sort_values(["customer_id", "placed_at"], ignore_index=True)
    events = pd.DataFrame({"customer_id": [], "kind": [], "occurred_at": []})
    return customers, orders, events


@pytest.mark.parametrize("seed", [1, 2])
def test_statistics_give_the_features_of_any_later_date_until_they_expire(seed: int) -> None:
    """Order statistics computed as of one date give, for any later date before their
    `valid_until_ns`, exactly the features computed from the orders as of that date — what
    lets a nightly run reuse last night's statistics — and they do change just after it."""
    from scoring.ml.features import STATISTIC_COLUMNS, merge_statistics, order_statistics

    customers, orders, events = _random_history(seed)
    index = pd.Index(customers["customer_id"], name="customer_id")
    kept = order_statistics(orders=orders, index=index, as_of=AS_OF)
    until = kept["valid_until_ns"].to_numpy()
    assert (until > AS_OF.value).all() and (until < np.iinfo(np.int64).max).sum() > 150
    compared = list(STATISTIC_COLUMNS[2:])  # all but basis_ns and valid_until_ns
    reused_somewhere = 0
    for hours in (0, 7, 24, 24 * 9, 24 * 40):
        day = AS_OF + pd.Timedelta(hours=hours)
        valid = until > day.value
        reused_somewhere += int(valid.sum())
        fresh = order_statistics(orders=orders, index=index, as_of=day)
        stored = kept[valid]
        pd.testing.assert_frame_equal(fresh.loc[valid, compared], stored[compared])
        merged = merge_statistics(fresh, stored)
        by_orders = build_features(orders=orders, events=events, customers=customers, as_of=day)
        by_statistics = build_features(
            orders=orders, events=events, customers=customers, as_of=day, statistics=merged
        )
        pd.testing.assert_frame_equal(by_statistics, by_orders, check_exact=True)
    assert reused_somewhere > 200
    # Just past its bound, every customer's statistics differ (an order left a window, or one
    # placed after AS_OF now counts).
    for customer in np.flatnonzero(until < np.iinfo(np.int64).max)[:40]:
        later = pd.Timestamp(int(until[customer]) + 1000, tz="UTC")
        row = order_statistics(orders=orders, index=index, as_of=later).iloc[customer]
        assert not row[compared].equals(kept.iloc[customer][compared])


def test_attribute_columns_are_the_same_from_shared_or_separate_dicts() -> None:
    """Customers with the same attributes share one dict when read for scoring; the attribute
    columns built from the distinct dicts equal those built row by row."""
    gold, basic = {"plan": "gold", "age": 41}, {"plan": "basic", "vip": True}
    odd = {"plan": 7, "vip": False}  # a number among texts: converted value by value
    shared = [gold, basic, gold, None, basic, gold, {"age": 29.5}, odd, odd]
    copies = [dict(a) if isinstance(a, dict) else a for a in shared]
    events = pd.DataFrame({"customer_id": [], "kind": [], "occurred_at": []})
    orders = pd.DataFrame(
        {
            "customer_id": [],
            "placed_at": pd.to_datetime([], utc=True),
            "amount": [],
            "status": [],
            "discount_amount": [],
            "item_count": [],
        }
    )
    frames = [
        build_features(
            orders=orders,
            events=events,
            customers=pd.DataFrame(
                {"customer_id": range(len(a)), "signup_date": pd.NaT, "attributes": a}
            ),
            as_of=AS_OF,
        )
        for a in (shared, copies)
    ]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert frames[0]["attr_plan"].tolist()[:3] == ["gold", "basic", "gold"]
    assert frames[0]["attr_plan"].tolist()[-2:] == ["7", "7"]
    assert frames[0]["attr_vip"].tolist()[1::6] == ["true", "false"]
    assert frames[0]["attr_age"].dtype == np.float32
    assert list(frames[0].filter(like="attr_").columns) == ["attr_plan", "attr_age", "attr_vip"]
