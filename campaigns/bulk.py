"""Insert-only bulk writes for campaign rows, on the staging helpers of customers.bulk.

customers.bulk.bulk_upsert conflicts on one key column; interventions conflict on
(campaign, customer, cycle), so here the statement is `INSERT ... SELECT ... ON CONFLICT DO NOTHING
RETURNING ...`: rows that already exist are skipped by the database, and only the rows actually
inserted come back (PostgreSQL: COPY into the staging table; SQLite: executemany).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import pandas as pd
from django.db import connection, models

from customers.bulk import _stage, _wire_frame


def _stage_copy(cursor: Any, model: type[models.Model], stage: str, wire: pd.DataFrame) -> None:
    """PostgreSQL staging by COPY; FORCE_NULL reads an empty field of a nullable non-text
    column as NULL even when the CSV writer quoted it (pandas quotes missing strings)."""
    quote = connection.ops.quote_name
    columns = list(wire.columns)
    cols = ", ".join(quote(c) for c in columns)
    by_column = {f.column: f for f in model._meta.concrete_fields}
    nullable = [
        quote(c)
        for c in columns
        if by_column[c].null and not isinstance(by_column[c], models.CharField | models.TextField)
    ]
    cursor.execute(f"DROP TABLE IF EXISTS {stage}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {stage} AS SELECT {cols} "
        f"FROM {quote(model._meta.db_table)} WHERE 1=0"
    )
    buffer = io.StringIO()
    wire.to_csv(buffer, header=False, index=False, quoting=csv.QUOTE_NONNUMERIC, na_rep="")
    options = "FORMAT csv" + (f", FORCE_NULL ({', '.join(nullable)})" if nullable else "")
    with cursor.cursor.copy(f"COPY {stage} ({cols}) FROM STDIN WITH ({options})") as copy:
        copy.write(buffer.getvalue())


def bulk_insert_ignore(
    model: type[models.Model], frame: pd.DataFrame, *, returning: Sequence[str] = ("id",)
) -> list[tuple[Any, ...]]:
    """Insert the frame's rows (columns are field attnames), skipping any that conflict with a
    unique constraint; return `returning` columns of the inserted rows. Call in a transaction."""
    if frame.empty:
        return []
    fields = {f.attname: f for f in model._meta.concrete_fields}
    columns = [str(fields[c].column) for c in frame.columns]
    wire = _wire_frame(frame, model)
    wire.columns = columns
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    cols = ", ".join(quote(c) for c in columns)
    stage = "_campaigns_stage"
    back = ", ".join(quote(str(fields[c].column)) for c in returning)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _stage_copy(cursor, model, stage, wire)
        else:
            _stage(cursor, model._meta.db_table, stage, columns, wire)
        # "WHERE true" keeps SQLite from reading ON CONFLICT as part of a join clause.
        cursor.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} WHERE true "
            f"ON CONFLICT DO NOTHING RETURNING {back}"
        )
        rows = list(cursor.fetchall())
        cursor.execute(f"DROP TABLE {stage}")
    return rows
