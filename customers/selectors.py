"""Reused reads of customer data."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction

from common.db.frames import frame_from_columns, frame_from_queryset, frame_from_sql
from common.db.lookups import any_of_sql
from customers.models import (
    Channel,
    Consent,
    Customer,
    CustomerAttributeVersion,
    Event,
    Order,
    OrderStatus,
    OrderVersion,
)


def customer_by_external_id(*, external_id: str) -> Customer | None:
    return Customer.objects.filter(external_id=external_id).first()


def customer_consent_state(*, customer: Customer) -> dict[str, dict[str, object]]:
    """Consent per channel: the recorded state, or the configured default when none."""
    recorded = {c.channel: c for c in Consent.objects.filter(customer=customer)}
    state: dict[str, dict[str, object]] = {}
    for channel in Channel.values:
        consent = recorded.get(channel)
        if consent is None:
            granted = settings.CONSENT_DEFAULTS.get(channel, False)
            state[channel] = {"granted": granted, "source": "default", "recorded_at": None}
        else:
            state[channel] = {
                "granted": consent.status == "granted",
                "source": consent.source,
                "recorded_at": consent.recorded_at,
            }
    return state


def customers_totals() -> dict[str, int]:
    return {
        "customers": Customer.objects.count(),
        "orders": Order.objects.count(),
        "events": Event.objects.count(),
        "consents": Consent.objects.count(),
    }


def customer_count() -> int:
    return Customer.objects.count()


# --- id-range frames: what scoring reads per chunk of customers ----------------------------


def _id_range(
    column: str, first_id: int | None, last_id: int | None, ids: Sequence[int] | None = None
) -> tuple[str, list[int]]:
    """The condition first_id ≤ column ≤ last_id and its parameters ('' when unbounded), or
    column IN (ids) when `ids` are given (a few customers: an event-triggered rescore)."""
    if ids is not None:
        # One array parameter on PostgreSQL: a chunk's stale customers can be thousands.
        return any_of_sql(column, [int(i) for i in ids] or [0], connection.vendor)
    if first_id is None or last_id is None:
        return "", []
    return f"{column} >= %s AND {column} <= %s", [int(first_id), int(last_id)]


def _where(condition: str) -> str:
    return f" WHERE {condition}" if condition else ""


# Order statuses travel as small numbers (fixed-width rows read in one step) and come back as
# a categorical column; a status outside the choices reads "other", matched case-insensitively.
_ORDER_STATUSES = ("other", *OrderStatus.values)


def _status_code(column: str) -> str:
    """The SQL of a status column's number: the stored values (the choices) compared as they
    are first, lower() only for the rest; lower() of every row was a third of PostgreSQL's
    time reading a chunk's orders (1.1 s of 3.0 s per 2M orders)."""
    whens = " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(_ORDER_STATUSES) if i)
    return f"CASE {column} {whens} ELSE CASE lower({column}) {whens} ELSE 0 END END"


# What scoring reads of each order: every column here is in the covering index
# order_customer_time_cover, so a chunk's read is an index-only range scan.
ORDER_READ_COLUMNS = {
    "order_id": ("id", "int8"),
    "customer_id": ("customer_id", "int8"),
    "placed_at": ("placed_at", "timestamptz"),
    "amount": ("amount", "float8"),
    "status": (_status_code("status"), "int4"),
    "discount_amount": ("discount_amount", "float8"),
    "item_count": ("item_count", "int4"),
}


def orders_frame_for_ids(
    *, first_id: int | None = None, last_id: int | None = None, ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """Orders of the customers with first_id ≤ id ≤ last_id (every order without bounds).

    Columns: order_id, customer_id, placed_at (UTC), amount, status (categorical),
    discount_amount, item_count; in table order, not sorted.
    """
    condition, params = _id_range("customer_id", first_id, last_id, ids)
    frame = frame_from_columns(
        Order._meta.db_table, ORDER_READ_COLUMNS, where=condition, params=params
    )
    frame["status"] = pd.Categorical.from_codes(frame["status"], categories=_ORDER_STATUSES)
    return frame


def order_versions_frame_for_ids(
    *, first_id: int | None = None, last_id: int | None = None
) -> pd.DataFrame:
    """Earlier states of the orders of customers first_id ≤ id ≤ last_id (customers.versions).

    Columns: order_id, valid_until (UTC), amount, status (categorical like
    `orders_frame_for_ids`), discount_amount, item_count.
    """
    condition, params = _id_range("o.customer_id", first_id, last_id)
    table, orders = OrderVersion._meta.db_table, Order._meta.db_table
    frame = frame_from_columns(
        f"{table} v JOIN {orders} o ON o.id = v.order_id",
        {
            "order_id": ("v.order_id", "int8"),
            "valid_until": ("v.valid_until", "timestamptz"),
            "amount": ("v.amount", "float8"),
            "status": (_status_code("v.status"), "int4"),
            "discount_amount": ("v.discount_amount", "float8"),
            "item_count": ("v.item_count", "int4"),
        },
        where=condition,
        params=params,
    )
    frame["status"] = pd.Categorical.from_codes(frame["status"], categories=_ORDER_STATUSES)
    return frame


def attribute_versions_frame_for_ids(
    *, first_id: int | None = None, last_id: int | None = None
) -> pd.DataFrame:
    """Earlier attributes of customers first_id ≤ id ≤ last_id (customers.versions).

    Columns: customer_id, valid_until (UTC), attributes (dicts)."""
    condition, params = _id_range("customer_id", first_id, last_id)
    qs = CustomerAttributeVersion.objects.order_by()
    if condition:
        qs = qs.filter(customer_id__gte=params[0], customer_id__lte=params[1])
    frame = frame_from_queryset(
        qs.values_list("customer_id", "valid_until", "attributes"),
        ["customer_id", "valid_until", "attributes"],
    )
    frame["valid_until"] = pd.to_datetime(frame["valid_until"], utc=True)
    frame["attributes"] = frame["attributes"].map(
        lambda v: v if isinstance(v, dict) else (json.loads(v) if isinstance(v, str) else {})
    )
    return frame


def events_frame_for_ids(
    *, first_id: int | None = None, last_id: int | None = None, ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """Events (customer_id, kind, occurred_at in UTC) of the customers with
    first_id ≤ id ≤ last_id (every event without bounds)."""
    condition, params = _id_range("customer_id", first_id, last_id, ids)
    return frame_from_sql(
        f"SELECT customer_id, kind, occurred_at FROM {Event._meta.db_table}{_where(condition)}",
        params,
        columns=["customer_id", "kind", "occurred_at"],
        datetimes=["occurred_at"],
    )


def customers_frame_for_ids(
    *, first_id: int | None = None, last_id: int | None = None, ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """Customers with first_id ≤ id ≤ last_id (all without bounds), ordered by id.

    Columns: customer_id, signup_date (UTC), attributes (a dict; customers with the same
    attributes share one dict object: read them, never change them in place).
    """
    condition, params = _id_range("id", first_id, last_id, ids)
    columns = ["customer_id", "signup_date", "attributes"]
    table = Customer._meta.db_table
    if connection.vendor == "postgresql":
        # The rows as one CSV text the server joins: COPY sends a message per row, ~0.7 µs each
        # for this process to receive (measured on a chunk's statistics rows); joining them
        # costs the server ~8 ms more a chunk of 50,000 (72 → 80 ms in psql). Joined in the
        # order the rows come, sorted here: string_agg(… ORDER BY id) sorts its 50,000 texts
        # whatever order the scan gives (PostgreSQL 15), ~60 of a chunk's ~200 ms in psql.
        line = (
            "id::text || ',' || coalesce(signup_date::text, '') || ',\"' || "
            "replace(attributes::text, '\"', '\"\"') || '\"'"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT string_agg({line}, E'\\n') FROM {table}{_where(condition)}",
                params,
            )
            text = cursor.fetchone()[0]
        frame = (
            pd.read_csv(io.StringIO(text), header=None, names=columns, keep_default_na=True)
            if text
            else pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        )
        if not frame["customer_id"].is_monotonic_increasing:  # an updated row moved on disk
            frame = frame.sort_values("customer_id", kind="stable", ignore_index=True)
    else:
        frame = frame_from_sql(
            f"SELECT id, signup_date, attributes FROM {table}{_where(condition)} ORDER BY id",
            params,
            columns=columns,
        )
    frame["signup_date"] = pd.to_datetime(frame["signup_date"], utc=True)

    # Attributes repeat a lot (a few plans, channels, ages): each distinct JSON text is parsed
    # once instead of once per customer, and the rows share its dict (features build their
    # attribute columns from the distinct dicts: scoring.ml.features._records_frame).
    def parse(v: Any) -> Any:
        return v if isinstance(v, dict) else (json.loads(v) if isinstance(v, str) else {})

    try:
        codes, distinct = pd.factorize(frame["attributes"])
    except TypeError:  # unhashable values: dicts from a backend that parses JSON itself
        frame["attributes"] = frame["attributes"].map(parse)
        return frame
    parsed = [parse(v) for v in distinct]
    shared = np.empty(len(parsed) + 1, dtype=object)
    shared[:] = [*parsed, {}]  # code -1 (no attributes) picks the last: one shared {}
    frame["attributes"] = pd.Series(shared[codes], index=frame.index, dtype=object)
    return frame


def customer_ids_sorted() -> np.ndarray:
    """Every customer id, ascending (int64)."""
    ids = frame_from_columns(Customer._meta.db_table, {"id": ("id", "int8")})["id"]
    return np.sort(ids.to_numpy(dtype=np.int64))


def customer_id_ranges(size: int) -> tuple[int, list[tuple[int, int]]]:
    """Every customer, ascending by id, cut into runs of `size`: (how many customers, the
    (first id, last id) of each run) — what a scoring run cuts into chunks.

    On PostgreSQL a cursor walks the id index in the server and only each run's two ends
    travel (fetching and sorting a million ids took 0.44 s of a run's start, a serial step,
    on the bench machine; the walk 0.25 s); elsewhere the ids are read and cut here."""
    if size < 1:
        raise ValueError(f"runs of {size} customers: expected at least 1")
    if connection.vendor != "postgresql":
        ids = customer_ids_sorted()
        ends = range(0, len(ids), size)
        return len(ids), [(int(ids[i]), int(ids[min(i + size, len(ids)) - 1])) for i in ends]
    table = connection.ops.quote_name(Customer._meta.db_table)
    ranges: list[tuple[int, int]] = []
    total = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DECLARE id_ranges SCROLL CURSOR FOR SELECT id FROM {table} ORDER BY id")
        while True:
            cursor.execute("FETCH NEXT FROM id_ranges")
            row = cursor.fetchone()
            if row is None:
                break
            first, last, moved = int(row[0]), int(row[0]), 0
            if size > 1:
                cursor.execute(f"MOVE FORWARD {size - 1} FROM id_ranges")
                moved = max(cursor.rowcount, 0)
                if moved:
                    # On the run's last row; or past the table's end, whose last row it was.
                    cursor.execute(
                        "FETCH RELATIVE 0 FROM id_ranges"
                        if moved == size - 1
                        else "FETCH LAST FROM id_ranges"
                    )
                    last = int(cursor.fetchone()[0])
            ranges.append((first, last))
            total += 1 + moved
        cursor.execute("CLOSE id_ranges")
    return total, ranges


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        float(str(value).strip() or "x")
    except ValueError:
        return False
    return True


# How many of the newest customers `customer_attribute_fields` looks at: enough to see every key
# a shop sends, few enough for a form to open in well under a second at a million customers.
ATTRIBUTE_SAMPLE = 20_000


def customer_attribute_fields(*, sample: int = ATTRIBUTE_SAMPLE) -> dict[str, dict[str, Any]]:
    """The attribute keys present in the data (the newest `sample` customers), each with its
    kind — "number" when every value seen is a number, else "text" — and up to 20 of its most
    common values: what a rule builder offers for a condition's field and value."""
    rows = Customer.objects.order_by("-pk").values_list("attributes", flat=True)[:sample]
    seen: dict[str, dict[Any, int]] = {}
    for attributes in rows:
        for key, value in (attributes or {}).items() if isinstance(attributes, dict) else ():
            if value is None or isinstance(value, dict | list):
                continue
            counts = seen.setdefault(str(key), {})
            counts[value] = counts.get(value, 0) + 1
    fields: dict[str, dict[str, Any]] = {}
    for key in sorted(seen, key=str.lower):
        values = seen[key]
        numeric = all(_is_number(v) for v in values)
        common = sorted(values, key=lambda v: -values[v])[:20]
        fields[key] = {"kind": "number" if numeric else "text", "values": common}
    return fields
