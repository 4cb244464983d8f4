"""Strictly as of the cutoff: data changed after a training cutoff (an attribute update, an
order refunded by an order-level file, a line-level cancellation dated after the cutoff)
changes no training feature, bit for bit; the same changes read as they are now do."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from customers.importers import import_file
from customers.line_import import import_order_lines
from customers.models import Customer, CustomerAttributeVersion, Order, OrderVersion
from customers.selectors import customers_frame_for_ids, events_frame_for_ids, orders_frame_for_ids
from scoring.ml.features import build_features
from scoring.services.datasets import training_data_from_database

pytestmark = pytest.mark.django_db

CUTOFF = pd.Timestamp("2011-06-01", tz="UTC")
HORIZON = 90
N = 40


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _shop(tmp_path: Path) -> None:
    """N customers with a plan and a score attribute; order-level orders of the first half,
    line-level invoices of the second half, some with a cancellation before the cutoff."""
    rng = np.random.default_rng(3)
    _csv(
        tmp_path / "customers.csv",
        ["customer_id", "signup_date", "plan", "score"],
        [[f"c{i}", "2010-06-01", ["basic", "pro"][i % 2], i % 7] for i in range(N)],
    )
    import_file(kind="customers", path=tmp_path / "customers.csv")
    orders: list[list[object]] = []
    lines: list[list[object]] = []
    for i in range(N):
        days = np.sort([0, *rng.choice(np.arange(1, 330), size=3, replace=False)])
        for k, day in enumerate(days):
            when = pd.Timestamp("2011-01-01") + pd.Timedelta(days=int(day))
            if i < N // 2:
                orders.append([f"o{i}-{k}", f"c{i}", when.isoformat(), 10 + i + k, "completed"])
            else:
                lines.append(
                    [
                        f"{1000 + 10 * i + k}",
                        "A1",
                        "Mug",
                        3,
                        when.isoformat(),
                        "2.50",
                        f"c{i}",
                        "UK",
                    ]
                )
    _csv(
        tmp_path / "orders.csv",
        ["order_id", "customer_id", "placed_at", "amount", "status"],
        orders,
    )
    import_file(kind="orders", path=tmp_path / "orders.csv")
    # Two cancellations before the cutoff (they must show) in the first line-level import.
    early = [
        [f"C9{i}", "A1", "Mug", -1, "2011-05-30 12:00:00", "2.50", f"c{i}", "UK"]
        for i in (N // 2, N // 2 + 1)
    ]
    _line_file(tmp_path / "lines.csv", lines + early)
    import_order_lines(path=tmp_path / "lines.csv", currency="GBP", create_customers=False)


def _line_file(path: Path, rows: list[list[object]]) -> Path:
    header = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice"]
    return _csv(path, [*header, "CustomerID", "Country"], rows)


def _change_everything_after_the_cutoff(tmp_path: Path) -> None:
    _csv(
        tmp_path / "customers2.csv",
        ["customer_id", "plan", "score"],
        [[f"c{i}", "enterprise", 99] for i in range(0, N, 3)],
    )
    import_file(kind="customers", path=tmp_path / "customers2.csv")
    before_cutoff = Order.objects.filter(
        external_id__startswith="o", placed_at__lt=CUTOFF
    ).order_by("external_id")[:6]
    refunds = [
        [o.external_id, o.customer.external_id, o.placed_at.isoformat(), o.amount, "refunded"]
        for o in before_cutoff
    ]
    _csv(
        tmp_path / "refunds.csv",
        ["order_id", "customer_id", "placed_at", "amount", "status"],
        refunds,
    )
    import_file(kind="orders", path=tmp_path / "refunds.csv")
    # Cancellations dated after the cutoff of mugs bought before it.
    late = [
        [f"C8{i}", "A1", "Mug", -3, "2011-07-15 12:00:00", "2.50", f"c{i}", "UK"]
        for i in range(N // 2, N, 2)
    ]
    _line_file(tmp_path / "late.csv", late)
    import_order_lines(path=tmp_path / "late.csv", currency="GBP", create_customers=False)


def _now_features() -> pd.DataFrame:
    """Features at the cutoff from the data as it is now (no history): the leak."""
    return build_features(
        orders=orders_frame_for_ids(),
        events=events_frame_for_ids(),
        customers=customers_frame_for_ids(),
        as_of=CUTOFF,
    )


def test_changes_after_the_cutoff_change_no_training_feature(tmp_path: Path) -> None:
    _shop(tmp_path)
    before = training_data_from_database(as_of=CUTOFF.to_pydatetime(), horizon_days=HORIZON)
    naive_before = _now_features()
    assert OrderVersion.objects.count() == 2  # the two cancellations before the cutoff

    _change_everything_after_the_cutoff(tmp_path)
    assert CustomerAttributeVersion.objects.count() == len(range(0, N, 3))
    assert OrderVersion.objects.count() == 2 + 6 + len(range(N // 2, N, 2))
    after = training_data_from_database(as_of=CUTOFF.to_pydatetime(), horizon_days=HORIZON)

    for old, new in ((before.X, after.X), (before.holdout_X, after.holdout_X)):
        assert list(old.index) == list(new.index)
        assert list(old.columns) == list(new.columns)
        for column in old.columns:
            a, b = old[column].to_numpy(), new[column].to_numpy()
            if a.dtype.kind == "f":
                assert a.tobytes() == b.tobytes(), column
            else:
                assert list(pd.Series(a).fillna("<NA>")) == list(pd.Series(b).fillna("<NA>")), (
                    column
                )
    # Without the history the same changes do reach the features: the test can fail.
    naive_after = _now_features()
    for column in ("attr_plan", "attr_score", "refund_share", "revenue_lifetime"):
        assert not naive_before[column].equals(naive_after[column]), column


def test_a_change_before_the_cutoff_is_seen(tmp_path: Path) -> None:
    """Cancellations dated before the cutoff lower the order's amount in the features."""
    _shop(tmp_path)
    X = training_data_from_database(as_of=CUTOFF.to_pydatetime(), horizon_days=HORIZON).holdout_X
    pk = dict(Customer.objects.values_list("external_id", "pk"))
    cancelled = [pk[f"c{i}"] for i in (N // 2, N // 2 + 1)]
    whole = [pk[f"c{i}"] for i in range(N // 2 + 2, N)]
    revenue = X["revenue_lifetime"]
    # Every line-level order is 3 mugs at 2.50 = 7.50 unless one mug came back.
    assert (revenue.loc[cancelled] % 7.5 != 0).all()
    assert (revenue.reindex(whole).dropna() % 7.5 == 0).all()
