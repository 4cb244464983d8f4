"""Read query results into DataFrames fast: PostgreSQL COPY … TO STDOUT, else a cursor.

The bridge code in each app's services.py reads orders, events and customers for a chunk of
customer ids through here, so no code path builds one Python object per row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pandas as pd
from django.db import connection


def frame_from_sql(
    sql: str,
    params: Sequence[Any],
    *,
    columns: list[str],
    datetimes: Sequence[str] = (),
    dtypes: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Run `sql` (params with %s) and return its rows as a DataFrame with `columns`.

    Columns named in `datetimes` become tz-aware UTC timestamps.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            query = cursor.cursor.mogrify(sql, params)
            if isinstance(query, bytes):
                query = query.decode()
            buffer = io.BytesIO()
            with cursor.cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
                for block in copy:
                    buffer.write(block)
            buffer.seek(0)
            if buffer.getbuffer().nbytes == 0:
                frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
            else:
                frame = pd.read_csv(
                    buffer, header=None, names=columns, dtype=dtypes, keep_default_na=True
                )
        else:
            cursor.execute(sql, params)
            frame = pd.DataFrame.from_records(cursor.fetchall(), columns=columns)
            if dtypes:
                frame = frame.astype({k: v for k, v in dtypes.items() if k in frame})
    for column in datetimes:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
