"""Reading rows into frames: the fixed-width binary path equals the generic one."""

from __future__ import annotations

import pandas as pd
import pytest
from django.db import connection

from common.db.bulk import bulk_insert
from common.db.frames import frame_from_columns, frame_from_records, frame_from_sql
from customers.models import Customer, Order

pytestmark = pytest.mark.django_db


def _orders() -> None:
    a = Customer.objects.create(external_id="A")
    b = Customer.objects.create(external_id="B")
    frame = pd.DataFrame(
        {
            "external_id": ["o1", "o2", "o3"],
            "customer_id": [a.pk, b.pk, b.pk],
            "placed_at": pd.to_datetime(
                ["2024-01-02 03:04:05.123456", "2024-02-29 23:59:59", "1999-12-31 00:00:00"],
                utc=True,
                format="ISO8601",
            ),
            "amount": [12.5, 0.0, 99.99],
            "item_count": [1, 3, 2],
        }
    )
    assert bulk_insert(Order, frame) == 3


def test_fixed_width_columns_read_like_the_generic_path() -> None:
    _orders()
    spec = {
        "customer_id": ("customer_id", "int8"),
        "placed_at": ("placed_at", "timestamptz"),
        "amount": ("amount", "float8"),
        "item_count": ("item_count", "int4"),
    }
    fast = frame_from_columns(Order._meta.db_table, spec, where="item_count >= %s", params=[2])
    slow = frame_from_sql(
        "SELECT customer_id, placed_at, amount, item_count FROM customers_order "
        "WHERE item_count >= %s",
        [2],
        columns=list(spec),
        datetimes=["placed_at"],
        dtypes={"amount": "float64"},
    )
    fast = fast.sort_values("placed_at", ignore_index=True)
    slow = slow.sort_values("placed_at", ignore_index=True)
    assert (
        fast["placed_at"].tolist()
        == slow["placed_at"].tolist()
        == [
            pd.Timestamp("1999-12-31", tz="UTC"),
            pd.Timestamp("2024-02-29 23:59:59", tz="UTC"),
        ]
    )
    assert fast["amount"].tolist() == [99.99, 0.0]
    assert fast["item_count"].astype(int).tolist() == slow["item_count"].tolist() == [2, 3]
    # Defaults the frame did not carry were filled in by bulk_insert.
    assert set(Order.objects.values_list("currency", flat=True)) == {"USD"}


def test_a_null_in_a_fixed_width_column_is_refused(require_postgres: None) -> None:
    _orders()
    assert connection.vendor == "postgresql"
    with pytest.raises(ValueError, match="NULL"):
        frame_from_columns(
            Order._meta.db_table,
            {"maybe": ("CASE WHEN item_count = 1 THEN NULL ELSE item_count END", "int8")},
        )


SPEC = {
    "id": ("id", "int8"),
    "customer_id": ("customer_id", "int8"),
    "placed_at": ("placed_at", "timestamptz"),
    "amount": ("amount", "float8"),
    "item_count": ("item_count", "int4"),
}


def test_columns_gathered_into_arrays_equal_the_rows_streamed(require_postgres: None) -> None:
    """A bounded read gathers each column into one array (one message instead of one per
    row); the frame is the very same as the rows streamed one by one."""
    _orders()
    where, params = "item_count >= %s", [1]
    arrays = frame_from_columns(Order._meta.db_table, SPEC, where=where, params=params)
    rows = frame_from_columns(Order._meta.db_table, SPEC, where=where, params=params, arrays=False)
    assert len(arrays) == 3
    pd.testing.assert_frame_equal(
        arrays.sort_values("id", ignore_index=True), rows.sort_values("id", ignore_index=True)
    )
    assert str(arrays["placed_at"].dt.tz) == "UTC"
    assert arrays["item_count"].dtype.kind == "i" and arrays["amount"].dtype.kind == "f"


def test_no_rows_gathered_into_arrays_is_an_empty_frame(require_postgres: None) -> None:
    _orders()
    empty = frame_from_columns(Order._meta.db_table, SPEC, where="item_count > %s", params=[99])
    assert list(empty.columns) == list(SPEC) and len(empty) == 0
    assert str(empty["placed_at"].dt.tz) == "UTC"


def test_a_null_gathered_into_an_array_is_refused(require_postgres: None) -> None:
    _orders()
    with pytest.raises(ValueError, match="NULL"):
        frame_from_columns(
            Order._meta.db_table,
            {"maybe": ("CASE WHEN item_count = 1 THEN NULL ELSE item_count END", "int8")},
            where="item_count >= %s",
            params=[1],
        )


def test_records_gathered_into_one_value_decode_by_their_dtype(require_postgres: None) -> None:
    """Fixed-width records the server concatenates (`string_agg` of their bytes) come back as a
    frame of native columns; no rows (a NULL) is an empty frame, a partial record an error."""
    import numpy as np

    dtype = np.dtype([("id", ">i8"), ("value", ">f8")])
    sql = (
        "SELECT string_agg(int8send(v.id) || float8send(v.value), ''::bytea) "
        "FROM (VALUES (1::bigint, 0.1::float8), (2, -2.5)) AS v(id, value) WHERE v.id <= %s"
    )
    frame = frame_from_records(sql, [2], dtype)
    assert frame["id"].tolist() == [1, 2] and frame["value"].tolist() == [0.1, -2.5]
    assert frame["id"].dtype == np.int64 and frame["value"].dtype.isnative
    assert frame_from_records(sql, [0], dtype).empty
    with pytest.raises(ValueError, match="not records"):
        frame_from_records("SELECT '\\x0102'::bytea", [], dtype)
