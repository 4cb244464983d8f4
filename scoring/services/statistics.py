"""Order statistics kept between scoring runs (scoring.models.OrderStatistics): read the rows
usable for a scoring date, and store fresh ones without losing an order committed meanwhile.

On PostgreSQL only. The orders table's triggers (migration scoring.0013) append a mark
(`OrderStatisticsMark`) with the writing transaction's id for every customer whose orders a
statement writes. A chunk takes a snapshot before it reads anything; it reads the usable rows
(valid for its date, no mark left), then the orders of everyone else, and after its scores
stores the statistics it computed from those orders — and, in the same statement, deletes the
marks of the customers it stored whose transactions that snapshot saw (their orders were in
the read). A mark of a transaction still running, or committed after the snapshot, stays: the
next run reads those orders again. Storing is best effort — the statistics are a cache — in a
transaction of its own that gives up after a short lock wait instead of holding up the chunk.

Of two rows for one date, the one read under the later snapshot wins (`pg_snapshot_xmax`). Not
guarded: two runs for different dates at once, the later-dated one reading before an order the
other read after — runs are one at a time (the cycle's lock).
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from common.db.bulk import copy_text
from common.db.frames import frame_from_records
from customers.models import Customer
from scoring.ml.features import STATISTIC_COLUMNS, as_utc
from scoring.models import OrderStatistics, OrderStatisticsMark

logger = logging.getLogger(__name__)

_TABLE = OrderStatistics._meta.db_table
_MARKS = OrderStatisticsMark._meta.db_table
# How long storing waits for a row another writer holds before giving up (the customers keep
# their marks and are read again next night).
STORE_LOCK_TIMEOUT = "2s"


def statistics_kept() -> bool:
    return connection.vendor == "postgresql" and bool(settings.SCORING_ORDER_STATISTICS)


def statistics_snapshot() -> str:
    """The database's current snapshot (`pg_snapshot` text): take it before the reads."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_snapshot()::text")
        return str(cursor.fetchone()[0])


# The statistics after the two times, one fixed-width little-endian record a customer
# (`OrderStatistics.packed`): times as int64 nanoseconds, the rest float64 counts and sums.
PACKED = np.dtype([(c, "<i8" if c.endswith("_ns") else "<f8") for c in STATISTIC_COLUMNS[2:]])
# What a read gathers per customer: its id and the two times (int8send: big-endian), then the
# packed record as stored.
_READ = np.dtype(
    [("customer_id", ">i8"), *((c, ">i8") for c in STATISTIC_COLUMNS[:2]), *PACKED.descr]
)


def statistics_pack(statistics: pd.DataFrame) -> np.ndarray:
    """Each row's statistics after the two times as its `packed` bytes (an object array)."""
    records = np.empty(len(statistics), dtype=PACKED)
    for name in PACKED.names or ():
        records[name] = statistics[name].to_numpy()
    raw = records.tobytes()
    size = PACKED.itemsize
    out = np.empty(len(statistics), dtype=object)
    out[:] = [raw[i : i + size] for i in range(0, len(raw), size)]
    return out


def statistics_usable(*, first_id: int, last_id: int, as_of: datetime) -> pd.DataFrame:
    """The stored statistics of customers first_id ≤ id ≤ last_id usable as of `as_of`
    (computed as of a date no later, valid past it, no mark left), indexed by customer id."""
    now = as_utc(as_of).value
    times = "||".join(f"int8send(s.{c})" for c in ("customer_id", *STATISTIC_COLUMNS[:2]))
    frame = frame_from_records(
        f"SELECT string_agg({times}||s.packed, ''::bytea) "
        f"FROM {_TABLE} s WHERE s.customer_id >= %s AND s.customer_id <= %s "
        "AND s.basis_ns <= %s AND s.valid_until_ns > %s AND NOT EXISTS "
        f"(SELECT 1 FROM {_MARKS} m WHERE m.customer_id = s.customer_id)",
        [int(first_id), int(last_id), now, now],
        _READ,
    )
    return frame.set_index("customer_id")


def statistics_store(*, statistics: pd.DataFrame, snapshot: str) -> int:
    """Store `statistics` (indexed by customer id; computed from orders read after `snapshot`
    was taken) over any row for an earlier date, or for the same date read earlier; delete
    the marks of the customers stored that the snapshot saw. Returns the rows stored (0 when
    it gave up on a lock: logged)."""
    if statistics.empty:
        return 0
    frame = statistics.loc[:, list(STATISTIC_COLUMNS[:2])].reset_index(names="customer_id")
    # bytea in COPY's text format: \x and the hex digits (copy_text doubles the backslash)
    frame["packed"] = ["\\x" + record.hex() for record in statistics_pack(statistics)]
    frame = frame.sort_values("customer_id", kind="stable")
    names = ["customer_id", *STATISTIC_COLUMNS[:2], "packed"]
    cols = ", ".join(names)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in ("snapshot_xmax", *names[1:]))
    stage = "_order_statistics_stage"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{STORE_LOCK_TIMEOUT}'")
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                f"SELECT {cols} FROM {_TABLE} WITH NO DATA"
            )
            cursor.execute(f"TRUNCATE {stage}")  # inside an outer transaction: no commit yet
            with cursor.cursor.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                copy.write(copy_text(frame))
            cursor.execute(
                f"WITH stored AS (INSERT INTO {_TABLE} AS t ({cols}, snapshot_xmax) "
                f"SELECT {cols}, pg_snapshot_xmax(%s::pg_snapshot)::text::bigint FROM {stage} "
                f"ORDER BY customer_id ON CONFLICT (customer_id) DO UPDATE SET {sets} "
                "WHERE EXCLUDED.basis_ns > t.basis_ns OR (EXCLUDED.basis_ns = t.basis_ns "
                "AND EXCLUDED.snapshot_xmax > t.snapshot_xmax) RETURNING customer_id), "
                f"unmarked AS (DELETE FROM {_MARKS} m USING stored "
                "WHERE m.customer_id = stored.customer_id "
                "AND pg_visible_in_snapshot(m.xid::text::xid8, %s::pg_snapshot) RETURNING 1) "
                "SELECT count(*) FROM stored",
                [snapshot, snapshot],
            )
            stored = int(cursor.fetchone()[0])
    except DatabaseError as exc:  # a lock held too long, a deadlock: next night reads them
        logger.warning("order statistics of %d customers not stored: %s", len(frame), exc)
        return 0
    return stored


def statistics_tidy() -> int:
    """At the end of a run (PostgreSQL): with statistics kept, drop the marks of customers who
    no longer exist (nothing would ever consume them); with them turned off, drop every row
    and mark — nothing keeps the rows current any more, so turning them on again starts from a
    first night. Returns the marks deleted."""
    if connection.vendor != "postgresql":
        return 0
    customers = Customer._meta.db_table
    with connection.cursor() as cursor:
        if not statistics_kept():
            # DELETE, not TRUNCATE: its exclusive lock would hold up every order write.
            cursor.execute(f"DELETE FROM {_TABLE}")
            cursor.execute(f"DELETE FROM {_MARKS}")
            return int(cursor.rowcount)
        cursor.execute(
            f"DELETE FROM {_MARKS} m WHERE NOT EXISTS "
            f"(SELECT 1 FROM {customers} c WHERE c.id = m.customer_id)"
        )
        return int(cursor.rowcount)
