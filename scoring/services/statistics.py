"""Order statistics kept between scoring runs (scoring.models.OrderStatistics): read the rows
usable for a scoring date, and store fresh ones without losing an order committed meanwhile.

On PostgreSQL only. The orders table's triggers (migration scoring.0013) mark a customer's row
stale with the id of every transaction that writes their orders. A chunk takes a snapshot
before it reads anything; it reads the usable rows, then the orders of everyone else, and
stores the statistics it computed from those orders only where the mark it overwrites was
made by a transaction that snapshot already saw (so its orders were read): a transaction
still running or committed after the snapshot keeps its mark, and the next run reads those
orders again. Storing is best effort — statistics are a cache — in a transaction of its own
that gives up after a short lock wait instead of holding up the chunk's scores.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from common.db.bulk import copy_text
from common.db.frames import frame_from_columns
from scoring.ml.features import STATISTIC_COLUMNS, as_utc
from scoring.models import OrderStatistics

logger = logging.getLogger(__name__)

_TABLE = OrderStatistics._meta.db_table
_INTEGER = {"basis_ns", "valid_until_ns", "first_order_ns", "first_completed_ns",
            "last_completed_ns"}  # fmt: skip
# How long storing waits for a row an order import has locked before giving up (the rows are
# marked stale and read again next night).
STORE_LOCK_TIMEOUT = "2s"


def statistics_kept() -> bool:
    return connection.vendor == "postgresql" and bool(settings.SCORING_ORDER_STATISTICS)


def statistics_snapshot() -> str:
    """The database's current snapshot (`pg_snapshot` text): take it before the reads."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_snapshot()::text")
        return str(cursor.fetchone()[0])


def statistics_usable(*, first_id: int, last_id: int, as_of: datetime) -> pd.DataFrame:
    """The stored statistics of customers first_id ≤ id ≤ last_id usable as of `as_of` (not
    marked stale, computed as of a date no later, valid past it), indexed by customer id."""
    now = as_utc(as_of).value
    columns = {
        "customer_id": ("customer_id", "int8"),
        **{c: (c, "int8" if c in _INTEGER else "float8") for c in STATISTIC_COLUMNS},
    }
    frame = frame_from_columns(
        _TABLE,
        columns,
        where=(
            "customer_id >= %s AND customer_id <= %s AND stale_xid IS NULL "
            "AND basis_ns <= %s AND valid_until_ns > %s"
        ),
        params=[int(first_id), int(last_id), now, now],
    )
    return frame.set_index("customer_id")


def statistics_store(*, statistics: pd.DataFrame, snapshot: str) -> int:
    """Store `statistics` (indexed by customer id; computed from orders read after `snapshot`
    was taken) where that is safe: the row is not marked stale by a transaction the snapshot
    did not see, and holds no statistics for a later date. Returns the rows offered (0 when
    it gave up on a lock; logged)."""
    if statistics.empty:
        return 0
    frame = statistics.loc[:, list(STATISTIC_COLUMNS)].reset_index(names="customer_id")
    frame = frame.sort_values("customer_id", kind="stable")
    names = ["customer_id", *STATISTIC_COLUMNS]
    cols = ", ".join(names)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in STATISTIC_COLUMNS)
    stage = "_order_statistics_stage"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{STORE_LOCK_TIMEOUT}'")
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} "
                f"(LIKE {_TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cursor.execute(f"TRUNCATE {stage}")  # inside an outer transaction: no commit yet
            with cursor.cursor.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                copy.write(copy_text(frame))
            cursor.execute(
                f"INSERT INTO {_TABLE} AS t ({cols}, stale_xid) "
                f"SELECT {cols}, NULL FROM {stage} ORDER BY customer_id "
                f"ON CONFLICT (customer_id) DO UPDATE SET {sets}, stale_xid = NULL "
                "WHERE CASE WHEN t.stale_xid IS NULL THEN t.basis_ns IS NULL "
                "OR t.basis_ns < EXCLUDED.basis_ns "
                "ELSE pg_visible_in_snapshot(t.stale_xid::text::xid8, %s::pg_snapshot) END",
                [snapshot],
            )
    except DatabaseError as exc:  # a lock held too long, a deadlock: next night reads them
        logger.warning("order statistics of %d customers not stored: %s", len(frame), exc)
        return 0
    return len(frame)
