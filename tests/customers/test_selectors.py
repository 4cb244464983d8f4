"""Reused reads of customer data: id-range frames (what scoring reads per chunk) and counts."""

from __future__ import annotations

import pandas as pd
import pytest

from common.db.bulk import bulk_insert
from customers.models import Customer, Event, Order
from customers.selectors import (
    customer_id_ranges,
    customer_ids_sorted,
    customers_frame_for_ids,
    customers_totals,
    events_frame_for_ids,
    orders_frame_for_ids,
)

pytestmark = pytest.mark.django_db


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture
def three_customers() -> list[int]:
    """Three customers with orders (one of an unknown status) and events; returns their ids."""
    a = Customer.objects.create(
        external_id="A", signup_date="2023-05-06", attributes={"plan": "gold", "age": 41}
    )
    b = Customer.objects.create(external_id="B", attributes={"plan": "gold", "age": 41})
    c = Customer.objects.create(external_id="C")
    orders = pd.DataFrame(
        {
            "external_id": ["o1", "o2", "o3", "o4"],
            "customer_id": [a.pk, b.pk, b.pk, c.pk],
            "placed_at": [
                _ts("2024-01-02 03:04:05"),
                _ts("2024-02-29 23:59:59"),
                _ts("2024-03-01"),
                _ts("2024-04-01"),
            ],
            "amount": [12.5, 0.0, 99.99, 5.0],
            "status": ["completed", "REFUNDED", "lost in the post", "cancelled"],
            "discount_amount": [1.0, 0.0, 0.0, 0.0],
            "item_count": [1, 3, 2, 1],
        }
    )
    assert bulk_insert(Order, orders) == 4
    Event.objects.create(external_id="e1", customer=a, kind="login", occurred_at=_ts("2024-01-03"))
    Event.objects.create(
        external_id="e2", customer=c, kind="complaint", occurred_at=_ts("2024-05-01")
    )
    return [a.pk, b.pk, c.pk]


def test_orders_of_an_id_range_with_statuses_as_categories(three_customers: list[int]) -> None:
    a, b, _c = three_customers
    orders = orders_frame_for_ids(first_id=a, last_id=b).sort_values("placed_at")
    assert list(orders.columns) == [
        "order_id",
        "customer_id",
        "placed_at",
        "amount",
        "status",
        "discount_amount",
        "item_count",
    ]
    assert orders["customer_id"].tolist() == [a, b, b]
    assert orders["placed_at"].tolist() == [
        _ts("2024-01-02 03:04:05"),
        _ts("2024-02-29 23:59:59"),
        _ts("2024-03-01"),
    ]
    assert orders["amount"].tolist() == [12.5, 0.0, 99.99]
    # Case does not matter; a status outside the choices reads "other".
    assert orders["status"].astype(str).tolist() == ["completed", "refunded", "other"]
    assert isinstance(orders["status"].dtype, pd.CategoricalDtype)
    assert orders["item_count"].astype(int).tolist() == [1, 3, 2]
    assert len(orders_frame_for_ids()) == 4  # no bounds: every order


def test_events_of_an_id_range(three_customers: list[int]) -> None:
    _a, b, c = three_customers
    events = events_frame_for_ids(first_id=b, last_id=c)
    assert events[["customer_id", "kind"]].values.tolist() == [[c, "complaint"]]
    assert events["occurred_at"].tolist() == [_ts("2024-05-01")]
    assert sorted(events_frame_for_ids()["kind"]) == ["complaint", "login"]


def test_customers_of_an_id_range_in_id_order_with_their_attributes(
    three_customers: list[int],
) -> None:
    a, b, c = three_customers
    customers = customers_frame_for_ids(first_id=a, last_id=c)
    assert customers["customer_id"].tolist() == [a, b, c]
    assert customers["signup_date"].iloc[0] == _ts("2023-05-06")
    assert pd.isna(customers["signup_date"].iloc[1])
    assert customers["attributes"].tolist() == [
        {"plan": "gold", "age": 41},
        {"plan": "gold", "age": 41},
        {},
    ]
    # Equal JSON texts are parsed once and share the dict (read-only: features build their
    # attribute columns once per distinct dict).
    first, second = customers["attributes"].iloc[0], customers["attributes"].iloc[1]
    assert first is second
    assert customers_frame_for_ids(first_id=c + 1, last_id=c + 10).empty


def test_customer_ids_are_sorted_and_totals_count_everything(three_customers: list[int]) -> None:
    ids = customer_ids_sorted()
    assert ids.dtype == "int64" and ids.tolist() == sorted(three_customers)
    assert customers_totals() == {"customers": 3, "orders": 4, "events": 2, "consents": 0}


def _ranges_cut_here(ids: list[int], size: int) -> list[tuple[int, int]]:
    return [(ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]


def test_customer_id_ranges_cut_every_customer_into_runs_of_the_size() -> None:
    """The chunks of a scoring run: runs of `size` customers in id order, ids with gaps, the
    last run shorter (on PostgreSQL the server's cursor finds the ends)."""
    assert customer_id_ranges(3) == (0, [])
    made = Customer.objects.bulk_create(Customer(external_id=f"c{i}") for i in range(11))
    gone = [made[0].pk, made[4].pk, made[5].pk, made[10].pk]
    Customer.objects.filter(pk__in=gone).delete()
    ids = sorted(c.pk for c in made if c.pk not in gone)
    for size in (1, 2, 3, 6, 7, 8, 50):
        assert customer_id_ranges(size) == (len(ids), _ranges_cut_here(ids, size)), size
    with pytest.raises(ValueError, match="at least 1"):
        customer_id_ranges(0)


def test_postgres_reads_the_same_frames_through_copy(
    require_postgres: None, three_customers: list[int]
) -> None:
    # On PostgreSQL the orders travel as COPY BINARY (fixed-width rows decoded by numpy) and
    # the customers as COPY CSV: the frames must equal what the generic path gives.
    a, _b, c = three_customers
    orders = orders_frame_for_ids(first_id=a, last_id=c).sort_values("placed_at")
    assert orders["status"].astype(str).tolist() == [
        "completed",
        "refunded",
        "other",
        "cancelled",
    ]
    assert orders["customer_id"].dtype == "int64" and orders["amount"].dtype == "float64"
    assert orders["placed_at"].iloc[0] == _ts("2024-01-02 03:04:05")
    customers = customers_frame_for_ids(first_id=a, last_id=c)
    assert customers["attributes"].tolist()[0] == {"plan": "gold", "age": 41}
    assert customers["attributes"].tolist()[2] == {}


def test_a_chunk_of_orders_is_read_from_the_covering_index_alone(
    require_postgres: None, three_customers: list[int]
) -> None:
    """Every column scoring reads of an order is in order_customer_time_cover, so PostgreSQL
    answers a chunk's read with an index-only range scan. Leave one out (the order id was)
    and each chunk scans the whole orders table."""
    from django.db import connection

    from common.db.frames import columns_sql
    from customers.selectors import ORDER_READ_COLUMNS

    sql = columns_sql(
        Order._meta.db_table, ORDER_READ_COLUMNS, where="customer_id >= %s AND customer_id <= %s"
    )
    with connection.cursor() as cursor:
        # A table this small is cheaper to scan whole: the question is which index scan the
        # planner can use, so the other ways are switched off for this transaction.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", [min(three_customers), max(three_customers)])
        plan = cursor.fetchone()[0][0]["Plan"]
    assert (plan["Node Type"], plan.get("Index Name")) == (
        "Index Only Scan",
        "order_customer_time_cover",
    )


def test_customers_read_back_their_attributes_whatever_the_text_holds() -> None:
    """Quotes, commas, line breaks, backslashes and non-ASCII in attribute values, a missing
    signup date: the frame holds what was stored (on PostgreSQL the rows travel as one CSV
    text the server joins)."""
    tricky = [
        {"note": 'said "no", twice', "plan": "gold"},
        {"note": "line one\nline two\r\n", "path": "C:\\shop\\x"},
        {"city": "Zürich", "emoji": "✓", "empty": ""},
        {},
        {"nested": {"a": [1, 2.5, None, True]}, "n": -0.0},
    ]
    made = [
        Customer.objects.create(
            external_id=f"t{i}", attributes=a, signup_date="2023-01-02" if i % 2 else None
        )
        for i, a in enumerate(tricky)
    ]
    frame = customers_frame_for_ids(first_id=made[0].pk, last_id=made[-1].pk)
    assert frame["customer_id"].tolist() == [c.pk for c in made]
    assert frame["attributes"].tolist() == tricky
    dates = frame["signup_date"].tolist()
    assert pd.isna(dates[0]) and dates[1] == pd.Timestamp("2023-01-02", tz="UTC")
    assert customers_frame_for_ids(ids=[made[2].pk])["attributes"].tolist() == [tricky[2]]


def test_customers_come_back_in_id_order_whatever_order_the_table_holds_them() -> None:
    """On PostgreSQL the rows are joined in the order the scan meets them (an updated
    customer's new row version sits after the others on disk) and sorted by id afterwards."""
    from django.db import connection

    made = [Customer.objects.create(external_id=f"o{i}", attributes={"n": i}) for i in range(4)]
    Customer.objects.filter(pk=made[0].pk).update(attributes={"n": 0, "moved": True})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute(
                f"SELECT id FROM {Customer._meta.db_table} WHERE id BETWEEN %s AND %s",
                [made[0].pk, made[-1].pk],
            )
            on_disk = [row[0] for row in cursor.fetchall()]
        assert on_disk[-1] == made[0].pk  # the case this test is about
    frame = customers_frame_for_ids(first_id=made[0].pk, last_id=made[-1].pk)
    assert frame["customer_id"].tolist() == [c.pk for c in made]
    assert frame.index.tolist() == [0, 1, 2, 3]
    assert frame["attributes"].tolist() == [{"n": 0, "moved": True}, {"n": 1}, {"n": 2}, {"n": 3}]
