"""The one reader of query rows into DataFrames.

- `frame_from_query`: a cursor's rows as they come (Python values: Decimal, datetime, …), for
  small results such as report cells and the candidates of a dispatch chunk.
- `frame_from_queryset`: the same for a `values_list` queryset, without building model objects.
- `frame_from_sql`: large results fast, through PostgreSQL COPY … TO STDOUT (CSV).
- `frame_from_columns`: NOT NULL fixed-width columns through COPY BINARY, decoded by numpy in
  one step (scoring reads its orders this way).

Elsewhere than PostgreSQL every one falls back to the plain cursor, so no code path builds one
Python object per row beyond the driver's tuples.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import QuerySet


def frame_from_query(
    sql: str, params: Sequence[Any], columns: Sequence[str], *, cursor: Any = None
) -> pd.DataFrame:
    """Run `sql` (params with %s) and return every row as a DataFrame with `columns`.

    Pass `cursor` to read inside a cursor that has already set something up (e.g. a
    `SET LOCAL work_mem` of the current transaction)."""
    if cursor is None:
        with connection.cursor() as own:
            return frame_from_query(sql, params, columns, cursor=own)
    cursor.execute(sql, params)
    return pd.DataFrame.from_records(cursor.fetchall(), columns=list(columns))


def frame_from_queryset(qs: QuerySet[Any], columns: Sequence[str]) -> pd.DataFrame:
    """A `values_list` queryset's rows through the raw cursor (no per-row model conversion)."""
    sql, params = qs.query.sql_with_params()
    return frame_from_query(sql, params, columns)


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
            frame = frame_from_query(sql, params, columns, cursor=cursor)
            if dtypes:
                frame = frame.astype({k: v for k, v in dtypes.items() if k in frame})
    for column in datetimes:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


# Fixed-width PostgreSQL binary types: (numpy big-endian dtype, SQL cast).
_BINARY_TYPES = {
    "int8": (">i8", "int8"),
    "int4": (">i4", "int4"),
    "float8": (">f8", "float8"),
    "timestamptz": (">i8", "timestamptz"),
}
# PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
_PG_EPOCH_US = 946_684_800_000_000
# COPY BINARY: 11-byte signature, 4-byte flags, 4-byte header extension length; -1 at the end.
_BINARY_HEADER = 19
_BINARY_TRAILER = 2


def columns_sql(table: str, columns: Mapping[str, tuple[str, str]], *, where: str = "") -> str:
    """The SELECT `frame_from_columns` runs (its parameters left as placeholders)."""
    postgres = connection.vendor == "postgresql"
    exprs = ", ".join(
        f"({expr})::{_BINARY_TYPES[kind][1]}" if postgres else expr
        for expr, kind in columns.values()
    )
    return f"SELECT {exprs} FROM {table}{(' WHERE ' + where) if where else ''}"


def frame_from_columns(
    table: str,
    columns: dict[str, tuple[str, str]],
    *,
    where: str = "",
    params: Sequence[Any] = (),
    arrays: bool | None = None,
) -> pd.DataFrame:
    """Read NOT NULL fixed-width columns of `table` into a DataFrame, fast.

    `columns` maps an output name to (SQL expression, type), the type one of int8, int4,
    float8 or timestamptz (a tz-aware UTC datetime column). On PostgreSQL the rows travel as
    COPY BINARY and are decoded by numpy in one step (every row has the same width, so no
    per-value parsing); elsewhere through `frame_from_sql`. An expression must never be NULL
    (coalesce it): a NULL would change the row width, and is refused.

    With `arrays` (by default when there is a `where`: a bounded read, such as a scoring
    chunk's orders) PostgreSQL gathers each column into one array (`array_agg`) and sends a
    single row: COPY sends a message per row, and receiving them one by one cost this process
    ~1 µs of Python each, holding the interpreter (0.45 s of a chunk's 500,000 orders, against
    0.1 s for the arrays; PostgreSQL spends ~0.1 s more building them). The arrays are held in
    the server's memory until sent (8 bytes a value), and a PostgreSQL value is at most 1 GB,
    so an unbounded read (every order, for training) streams rows as before.
    """
    names = list(columns)
    postgres = connection.vendor == "postgresql"
    sql = columns_sql(table, columns, where=where)
    if not postgres:
        frame = frame_from_sql(
            sql,
            params,
            columns=names,
            datetimes=[n for n in names if columns[n][1] == "timestamptz"],
        )
        return frame.astype({n: "float64" for n in names if columns[n][1] == "float8"})
    if arrays if arrays is not None else bool(where):
        aggregates = ", ".join(f"array_agg(c{i})" for i in range(len(names)))
        aliases = ", ".join(f"c{i}" for i in range(len(names)))
        sql = f"SELECT {aggregates} FROM ({sql}) AS rows ({aliases})"
        values = _decode_arrays(_copy_binary(sql, params), names, columns)
    else:
        values = _decode_rows(_copy_binary(sql, params), names, columns, sql)
    out: dict[str, Any] = {}
    for name in names:
        if columns[name][1] == "timestamptz":
            out[name] = pd.to_datetime(values[name] + _PG_EPOCH_US, unit="us", utc=True)
        else:
            out[name] = values[name]
    return pd.DataFrame(out)


def frame_from_records(sql: str, params: Sequence[Any], dtype: np.dtype) -> pd.DataFrame:
    """The fixed-width records of `dtype` that `sql` gathers into one bytea value (PostgreSQL:
    `SELECT string_agg(<record bytes>, ''::bytea) FROM …`; NULL for no rows), as a frame with a
    native column per field — one value to send and one `np.frombuffer`, where a column each
    costs the server an array per column to gather."""
    tuple_ = _copy_binary(sql, params)  # one tuple: a field count, a length, the value
    (length,) = struct.unpack_from(">i", tuple_, 2)
    body = tuple_[6 : 6 + length] if length > 0 else memoryview(b"")  # -1: NULL, no rows
    if len(body) % dtype.itemsize:
        raise ValueError(f"frame_from_records: {len(body)} bytes are not records of {dtype}")
    records = np.frombuffer(body, dtype=dtype)
    return pd.DataFrame({name: _native(records[name]) for name in dtype.names or ()})


def _copy_binary(sql: str, params: Sequence[Any]) -> memoryview:
    """The tuples of `COPY (sql) TO STDOUT (FORMAT binary)`, without the header and trailer."""
    buffer = bytearray()
    with connection.cursor() as cursor:
        query = cursor.cursor.mogrify(sql, params)
        if isinstance(query, bytes):
            query = query.decode()
        with cursor.cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)") as copy:
            for block in copy:
                buffer += block
    return memoryview(buffer)[_BINARY_HEADER : len(buffer) - _BINARY_TRAILER]


def _native(values: np.ndarray) -> np.ndarray:
    return values.astype(values.dtype.newbyteorder("="))


def _decode_rows(
    body: memoryview, names: list[str], columns: dict[str, tuple[str, str]], sql: str
) -> dict[str, np.ndarray]:
    """Fixed-width rows: a field count, then a length and a value per column."""
    layout: list[tuple[str, str]] = [("_fields", ">i2")]
    for i, name in enumerate(names):
        layout += [(f"_len{i}", ">i4"), (name, _BINARY_TYPES[columns[name][1]][0])]
    row = np.dtype(layout)
    if len(body) % row.itemsize:
        raise ValueError(f"frame_from_columns: a NULL or variable-width value in {sql!r}")
    rows = np.frombuffer(body, dtype=row)
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        if len(rows) and (rows[f"_len{i}"] != row[name].itemsize).any():
            raise ValueError(f"frame_from_columns: {name} has NULL values; coalesce it")
        out[name] = _native(rows[name])
    return out


def _decode_arrays(
    body: memoryview, names: list[str], columns: dict[str, tuple[str, str]]
) -> dict[str, np.ndarray]:
    """One row of one-dimensional arrays (PostgreSQL's array_send: dimensions, flags, element
    type, length and lower bound, then a length and a value per element), or NULLs for no
    rows at all."""
    at = 2  # the tuple's field count
    out: dict[str, np.ndarray] = {}
    for name in names:
        dtype = np.dtype(_BINARY_TYPES[columns[name][1]][0])
        size = int.from_bytes(body[at : at + 4], "big", signed=True)
        at += 4
        if size < 0:  # array_agg of no rows is NULL
            out[name] = np.empty(0, dtype=dtype.newbyteorder("="))
            continue
        value = body[at : at + size]
        at += size
        dims, has_nulls = int.from_bytes(value[0:4], "big"), int.from_bytes(value[4:8], "big")
        if dims != 1 or has_nulls:
            raise ValueError(f"frame_from_columns: {name} has NULL values; coalesce it")
        count = int.from_bytes(value[12:16], "big")
        elements = np.frombuffer(value[20:], dtype=[("len", ">i4"), ("value", dtype)])
        if len(elements) != count or (elements["len"] != dtype.itemsize).any():
            raise ValueError(f"frame_from_columns: {name} is not {columns[name][1]} throughout")
        out[name] = _native(elements["value"])
    return out
