"""What customers' attributes and orders were before a change, kept so that features built
as of a past cutoff read the values of that time (scoring.ml.features, docs/scoring.md).

Set-based: one read of the chunk's current state before a write, one after, one bulk insert
of the rows that changed. A first import reads an empty "before" and writes nothing.
Call inside the write's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from django.db import connection

from common.db.bulk import bulk_insert
from common.db.frames import frame_from_queryset, frame_from_sql
from customers.models import Customer, CustomerAttributeVersion, Order, OrderVersion

ORDER_VERSIONED = ("amount", "status", "item_count", "discount_amount")


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _attribute_texts(column: str, keys: list[Any]) -> pd.DataFrame:
    """id and attributes as canonical JSON text (jsonb), read by COPY with one array
    parameter (PostgreSQL); elsewhere through the ORM, as sorted-key JSON text."""
    if _postgres():
        table = Customer._meta.db_table
        return frame_from_sql(
            f"SELECT id, attributes::text FROM {table} WHERE {column} = ANY(%s)",
            [keys],
            columns=["id", "attributes"],
            dtypes={"attributes": str},
        )
    rows = Customer.objects.filter(**{f"{column}__in": keys}).values_list("id", "attributes")
    return pd.DataFrame(
        [(pk, json.dumps(a or {}, sort_keys=True)) for pk, a in rows], columns=["id", "attributes"]
    )


def customer_attributes_read(*, external_ids: Sequence[str]) -> pd.DataFrame:
    """id and attributes (JSON text) of the existing customers among `external_ids`."""
    return _attribute_texts("external_id", list(external_ids))


def customer_attribute_versions_record(*, before: pd.DataFrame, valid_until: datetime) -> int:
    """Keep the `before` attributes (from `customer_attributes_read`) of every customer whose
    attributes have changed since, valid until `valid_until`. Returns the versions written."""
    if before.empty:
        return 0
    after = _attribute_texts("id", [int(i) for i in before["id"]]).set_index("id")["attributes"]
    old = before.set_index("id")["attributes"]
    changed = old[old != after.reindex(old.index)]
    if changed.empty:
        return 0
    frame = pd.DataFrame(
        {"customer_id": changed.index, "attributes": changed.to_numpy(), "valid_until": valid_until}
    )
    return bulk_insert(CustomerAttributeVersion, frame, json_text=("attributes",))


def order_state_read(
    *, ids: Sequence[int] | None = None, external_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """id and the versioned columns of existing orders, by primary key or external id."""
    columns = ["id", *ORDER_VERSIONED]
    if _postgres():
        column, keys = (
            ("id", [int(i) for i in ids])
            if ids is not None
            else ("external_id", list(external_ids or []))
        )
        return frame_from_sql(
            f"SELECT id, amount::float8, status, item_count, discount_amount::float8 "
            f"FROM {Order._meta.db_table} WHERE {column} = ANY(%s)",
            [keys],
            columns=columns,
        )
    qs = Order.objects.order_by()
    qs = qs.filter(pk__in=list(ids)) if ids is not None else qs
    qs = qs.filter(external_id__in=list(external_ids)) if external_ids is not None else qs
    return frame_from_queryset(qs.values_list(*columns), columns)


def order_versions_record(*, before: pd.DataFrame, valid_until: datetime | pd.Series) -> int:
    """Keep the `before` state (from `order_state_read`) of every order whose amount, items
    or status changed since; `valid_until` is one time or a Series by order id. Returns the
    versions written."""
    if before.empty:
        return 0
    after = order_state_read(ids=before["id"].tolist()).set_index("id")
    old = before.set_index("id").reindex(after.index).dropna(how="all")
    now = after.reindex(old.index)
    changed = pd.Series(False, index=old.index)
    for column in ORDER_VERSIONED:
        a, b = old[column], now[column]
        if column in ("amount", "discount_amount"):
            changed |= (a.astype(float) - b.astype(float)).abs() > 0.004
        else:
            changed |= a.astype(str) != b.astype(str)
    rows = old[changed]
    if rows.empty:
        return 0
    until = (
        valid_until.reindex(rows.index)
        if isinstance(valid_until, pd.Series)
        else pd.Series(valid_until, index=rows.index)
    )
    frame = (
        rows.reset_index().rename(columns={"id": "order_id"}).assign(valid_until=until.to_numpy())
    )
    return bulk_insert(OrderVersion, frame)
