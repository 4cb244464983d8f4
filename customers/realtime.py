"""Event-triggered rescoring, the customers' side: which arriving events and refunds call for
a rescore, announced through a signal that `scoring` (a higher floor this app cannot import)
listens to (scoring/realtime.py connects it in its AppConfig.ready()).

The signal is sent from `transaction.on_commit`, so a rescore never reads rows a rolled-back
batch would have written, and only for events that are recent (settings.REALTIME_MAX_EVENT_AGE):
a backfill of last year's history is scored by the nightly run, not one task per customer.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from customers.models import EventKind, OrderStatus

# The kinds issue 14 names, present after every migrate (and after a test's flush); staff
# switch them off in the admin rather than delete them (a deleted one comes back).
DEFAULT_EVENT_KINDS = {
    "complaint": "A complaint about an order or the service.",
    "cancellation_page_visit": "A visit to the subscription cancellation page.",
    "support_ticket": "A support ticket opened.",
    EventKind.REFUND: "A refunded order (an order posted or imported with status refunded).",
}


def event_kinds_ensure(*, using: str = "default") -> int:
    """Create the default event kinds that are missing (rescore on); returns how many."""
    from django.db import connections

    if EventKind._meta.db_table not in connections[using].introspection.table_names():
        return 0  # migrated back to before the table existed
    present = set(EventKind.objects.using(using).values_list("name", flat=True))
    missing = [
        EventKind(name=name, rescore=True, description=text)
        for name, text in DEFAULT_EVENT_KINDS.items()
        if name not in present
    ]
    EventKind.objects.using(using).bulk_create(missing, ignore_conflicts=True)
    return len(missing)


# Sent once per committed batch: customer_ids (list[int]) and triggers ({customer_id: kind}).
rescore_wanted = Signal()


def rescore_kinds() -> frozenset[str]:
    """The event kinds configured to trigger a rescore (one small query per batch)."""
    return frozenset(EventKind.objects.filter(rescore=True).values_list("name", flat=True))


def _recent(times: pd.Series) -> pd.Series:
    since = timezone.now() - timedelta(seconds=settings.REALTIME_MAX_EVENT_AGE)
    stamps = pd.to_datetime(times, utc=True, errors="coerce")
    return stamps.ge(pd.Timestamp(since)).fillna(False).astype(bool)


def events_rescore_request(*, records: pd.DataFrame) -> int:
    """After the batch commits, ask for a rescore of the customers of `records` (customer_id,
    kind, occurred_at) with a recent event of a rescoring kind; returns the customers asked."""
    if records.empty or not {"customer_id", "kind", "occurred_at"} <= set(records.columns):
        return 0
    wanted = records.loc[
        records["kind"].astype(str).isin(rescore_kinds()) & _recent(records["occurred_at"])
    ]
    return _request(wanted["customer_id"], wanted["kind"].astype(str))


def orders_rescore_request(*, records: pd.DataFrame) -> int:
    """The same for refunded orders (customer_id, status, placed_at), when 'refund' rescores."""
    if records.empty or not {"customer_id", "status", "placed_at"} <= set(records.columns):
        return 0
    if EventKind.REFUND not in rescore_kinds():
        return 0
    wanted = records.loc[
        records["status"].astype(str).eq(OrderStatus.REFUNDED) & _recent(records["placed_at"])
    ]
    return _request(wanted["customer_id"], pd.Series(EventKind.REFUND, index=wanted.index))


def _request(customer_ids: pd.Series, kinds: pd.Series) -> int:
    if customer_ids.empty:
        return 0
    # One trigger per customer (the first kind of the batch): the debounce merges the rest.
    first = (
        pd.DataFrame({"customer_id": customer_ids.astype("int64"), "kind": kinds})
        .drop_duplicates("customer_id")
        .set_index("customer_id")["kind"]
    )
    triggers = {int(k): str(v) for k, v in first.items()}
    # robust: a failing rescore (e.g. a broker outage) is logged and never fails the batch,
    # whose rows are committed already.
    transaction.on_commit(
        lambda: rescore_wanted.send(
            sender=EventKind, customer_ids=list(triggers), triggers=triggers
        ),
        robust=True,
    )
    return len(triggers)
