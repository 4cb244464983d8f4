"""What customers' attributes and orders were before a change, kept so that features built
as of a past cutoff read the values of that time (scoring.ml.features, docs/scoring.md).

Set-based: one read of the chunk's current state before a write, one after, one bulk insert
of the rows that changed. A first import reads an empty "before" and writes nothing.
Call inside the write's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from common.db.bulk import bulk_insert
from common.db.frames import frame_from_queryset
from customers.models import Customer, CustomerAttributeVersion, Order, OrderVersion

ORDER_VERSIONED = ("amount", "status", "item_count", "discount_amount")


def customer_attributes_read(*, external_ids: Sequence[str]) -> pd.DataFrame:
    """id and attributes (dicts) of the existing customers among `external_ids`."""
    rows = Customer.objects.filter(external_id__in=list(external_ids)).values_list(
        "id", "attributes"
    )
    return pd.DataFrame(list(rows), columns=["id", "attributes"])


def customer_attribute_versions_record(*, before: pd.DataFrame, valid_until: datetime) -> int:
    """Keep the `before` attributes (from `customer_attributes_read`) of every customer whose
    attributes have changed since, valid until `valid_until`. Returns the versions written."""
    if before.empty:
        return 0
    after = dict(
        Customer.objects.filter(pk__in=before["id"].tolist()).values_list("id", "attributes")
    )
    changed = [
        (cid, attrs)
        for cid, attrs in zip(before["id"].tolist(), before["attributes"].tolist(), strict=True)
        if (attrs or {}) != (after.get(cid) or {})
    ]
    if not changed:
        return 0
    frame = pd.DataFrame(changed, columns=["customer_id", "attributes"]).assign(
        valid_until=valid_until
    )
    return bulk_insert(CustomerAttributeVersion, frame)


def order_state_read(
    *, ids: Sequence[int] | None = None, external_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """id and the versioned columns of existing orders, by primary key or external id."""
    qs = Order.objects.order_by()
    qs = qs.filter(pk__in=list(ids)) if ids is not None else qs
    qs = qs.filter(external_id__in=list(external_ids)) if external_ids is not None else qs
    columns = ["id", *ORDER_VERSIONED]
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
