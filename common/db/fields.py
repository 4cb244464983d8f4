"""Model fields the stock ones lack."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.fields.json import JSONExact


class TextJSONField(models.JSONField):
    """A JSONField stored as PostgreSQL's `json` — the text as written, checked to be JSON —
    instead of `jsonb`, which parses every value into a binary form on the way in (elsewhere,
    as a JSONField is).

    For columns written in bulk and read back whole, never searched inside: a scoring run's
    reasons and waterfalls, a million rows a night. COPY of 150,000 score rows into a table
    without indexes took 410 ms with the two columns as jsonb, 305 ms as json (docs/scaling.md,
    ninth session). Lookups inside the value (contains, has_key) need jsonb: not for these."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or isinstance(value, str):
            return super().from_db_value(value, expression, connection)
        return value  # parsed by psycopg: a column an INSERT … RETURNING gave back

    def select_format(self, compiler: Any, sql: str, params: Any) -> tuple[str, Any]:
        """Read as text, which Django parses as it does a JSONField's (psycopg would parse a
        `json` value itself, as it does not a `jsonb` one under Django)."""
        sql, params = super().select_format(compiler, sql, params)
        if compiler.connection.vendor == "postgresql":
            sql = f"({sql})::text"
        return sql, params


@TextJSONField.register_lookup
class TextJSONExact(JSONExact):
    """`field=value` compares as jsonb (`json` has no equality): the same rows as a JSONField."""

    def process_lhs(self, compiler: Any, connection: Any, lhs: Any = None) -> Any:
        sql, params = super().process_lhs(compiler, connection, lhs)
        if connection.vendor == "postgresql":
            sql = f"({sql})::jsonb"
        return sql, params
