"""Set-based upserts from a DataFrame: the one place rows reach the database in bulk.

PostgreSQL: COPY into a temporary staging table, then one
`INSERT … SELECT … ON CONFLICT (key) DO UPDATE … WHERE (…) IS DISTINCT FROM (…)`.
SQLite: executemany into the staging table, then the same statement (SQLite's UPSERT).
Rows whose values are unchanged are not rewritten, so re-importing a file changes nothing,
and the counts (created / updated / unchanged) come from the database itself.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from django.db import connection, models
from django.utils import timezone


@dataclass(frozen=True)
class UpsertCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.created + other.created,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )

    def to_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _wire_frame(frame: pd.DataFrame, model: type[models.Model]) -> pd.DataFrame:
    """Turn typed columns into the text/number values each backend expects."""
    out = pd.DataFrame(index=frame.index)
    postgres = _is_postgres()
    for column in frame.columns:
        field = model._meta.get_field(column)
        values = frame[column]
        if isinstance(field, models.JSONField):
            out[column] = values.map(lambda v: json.dumps(v, sort_keys=True, default=str))
        elif isinstance(field, models.DateTimeField):
            stamps = pd.to_datetime(values, utc=True)
            if postgres:
                text = stamps.dt.strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
            else:
                # Django's SQLite format: naive UTC, microseconds only when non-zero.
                text = stamps.dt.strftime("%Y-%m-%d %H:%M:%S.%f").str.replace(
                    r"\.000000$", "", regex=True
                )
            out[column] = text.where(stamps.notna(), None)
        elif isinstance(field, models.DateField):
            stamps = pd.to_datetime(values)
            out[column] = stamps.dt.strftime("%Y-%m-%d").where(stamps.notna(), None)
        elif isinstance(field, models.DecimalField):
            out[column] = values.astype("float64").round(field.decimal_places)
        else:
            out[column] = values
    return out


def _insert_defaults(
    model: type[models.Model], provided: Sequence[str], now: Any
) -> dict[str, Any]:
    """Values for the NOT NULL columns a batch does not provide (model defaults, timestamps)."""
    defaults: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.column in provided:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            defaults[field.column] = now
        elif field.has_default():
            value = field.get_default()
            if isinstance(field, models.JSONField):
                value = json.dumps(value)
            defaults[field.column] = value
        elif field.null:
            continue
        elif isinstance(field, (models.CharField, models.TextField)):
            defaults[field.column] = ""
    return defaults


def _stage(cursor: Any, table: str, stage: str, columns: list[str], wire: pd.DataFrame) -> None:
    cols = ", ".join(_quote(c) for c in columns)
    cursor.execute(f"DROP TABLE IF EXISTS {stage}")
    cursor.execute(f"CREATE TEMPORARY TABLE {stage} AS SELECT {cols} FROM {_quote(table)} WHERE 1=0")
    if _is_postgres():
        buffer = io.StringIO()
        # CSV with every string quoted: an unquoted empty field is NULL, "" is an empty string.
        wire.to_csv(buffer, header=False, index=False, quoting=csv.QUOTE_NONNUMERIC, na_rep="")
        with cursor.cursor.copy(f"COPY {stage} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
    else:
        placeholders = ", ".join(["%s"] * len(columns))
        rows = wire.astype(object).where(wire.notna(), None).itertuples(index=False, name=None)
        cursor.executemany(f"INSERT INTO {stage} ({cols}) VALUES ({placeholders})", list(rows))


def bulk_upsert(
    model: type[models.Model],
    frame: pd.DataFrame,
    *,
    key: str = "external_id",
    update: bool = True,
    json_merge: Sequence[str] = (),
) -> UpsertCounts:
    """Insert new rows and update changed ones, keyed by a unique column.

    `frame` columns are model field attnames (e.g. ``customer_id``); only those columns are
    compared and updated, so a file that lacks a column never blanks it. JSON columns listed in
    `json_merge` are merged key by key instead of replaced. With ``update=False`` existing rows
    are left alone (ON CONFLICT DO NOTHING). Call inside a transaction.
    """
    if frame.empty:
        return UpsertCounts()
    if frame[key].duplicated().any():
        raise ValueError(f"bulk_upsert: duplicate {key} values in one batch")
    table = model._meta.db_table
    columns = [model._meta.get_field(c).column for c in frame.columns]
    wire = _wire_frame(frame, model)
    wire.columns = columns
    postgres = _is_postgres()
    # SQLite stores datetimes as naive UTC text in Django's format.
    now: Any = timezone.now() if postgres else str(timezone.now().replace(tzinfo=None))
    stage = "_bulk_stage"
    target = _quote(table)
    key_col = _quote(model._meta.get_field(key).column)
    defaults = _insert_defaults(model, columns, now)
    insert_cols = [*columns, *defaults]
    select_exprs = [f"s.{_quote(c)}" for c in columns] + ["%s"] * len(defaults)
    params = list(defaults.values())

    with connection.cursor() as cursor:
        _stage(cursor, table, stage, columns, wire)
        cursor.execute(
            f"SELECT count(*) FROM {stage} s JOIN {target} t ON t.{key_col} = s.{key_col}"
        )
        existing = int(cursor.fetchone()[0])
        key_column = model._meta.get_field(key).column
        compared = [c for c in columns if c != key_column]
        if update and compared:
            sets, olds, news = [], [], []
            for column in compared:
                qc = _quote(column)
                new = f"EXCLUDED.{qc}"
                if column in json_merge:
                    new = (
                        f"({target}.{qc} || EXCLUDED.{qc})"
                        if postgres
                        else f"json(json_patch({target}.{qc}, EXCLUDED.{qc}))"
                    )
                    old = f"{target}.{qc}" if postgres else f"json({target}.{qc})"
                elif not postgres and column in _json_columns(model):
                    old, new = f"json({target}.{qc})", f"json({new})"
                else:
                    old = f"{target}.{qc}"
                sets.append(f"{qc} = {new}")
                olds.append(old)
                news.append(new)
            if "updated_at" in {f.column for f in model._meta.concrete_fields}:
                sets.append(f"{_quote('updated_at')} = %s")
                params.append(now)
            distinct = "IS DISTINCT FROM" if postgres else "IS NOT"
            conflict = (
                f"ON CONFLICT ({key_col}) DO UPDATE SET {', '.join(sets)} "
                f"WHERE ({', '.join(olds)}) {distinct} ({', '.join(news)})"
            )
            if len(olds) == 1:  # a one-element row value is just a parenthesised scalar
                conflict = conflict.replace(
                    f"({olds[0]}) {distinct} ({news[0]})", f"{olds[0]} {distinct} {news[0]}"
                )
        else:
            conflict = f"ON CONFLICT ({key_col}) DO NOTHING"
        cursor.execute(
            f"INSERT INTO {target} ({', '.join(_quote(c) for c in insert_cols)}) "
            f"SELECT {', '.join(select_exprs)} FROM {stage} s WHERE true {conflict}",
            params,
        )
        written = max(cursor.rowcount, 0)
        cursor.execute(f"DROP TABLE {stage}")
    created = len(frame) - existing
    updated = written - created if update else 0
    return UpsertCounts(created=created, updated=updated, unchanged=len(frame) - created - updated)


def _json_columns(model: type[models.Model]) -> set[str]:
    return {f.column for f in model._meta.concrete_fields if isinstance(f, models.JSONField)}


def ids_for_keys(
    model: type[models.Model], keys: pd.Series, *, key: str = "external_id"
) -> pd.Series:
    """Map each key to its row's primary key (NaN where unknown), in chunks of ids."""
    unique = pd.unique(keys.dropna().astype(str))
    found: dict[str, int] = {}
    # 20,000 keys per query keeps SQLite under its parameter limit and PG plans cheap.
    for start in range(0, len(unique), 20_000):
        part = unique[start : start + 20_000].tolist()
        found.update(model._default_manager.filter(**{f"{key}__in": part}).values_list(key, "pk"))
    return keys.map(found).astype("float64") if len(keys) else pd.Series(dtype="float64")

