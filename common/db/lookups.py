"""A lookup for long lists of values: `AnyOf(F("customer_id"), ids)` in a filter."""

from __future__ import annotations

from typing import Any

from django.db.models import Lookup
from django.db.models.lookups import In


class AnyOf(Lookup):
    """`column = ANY(%s)` with the values bound as one array parameter on PostgreSQL; the
    usual `column IN (%s, …)` on other databases.

    Why: psycopg's client-side binding (Django's default) splits a query at every placeholder
    and turns every value into a literal, in Python, per execution — queries longer than a few
    kilobytes are not cached. A relay chunk's `IN` of 1,000 ids made that a sixth of a relay
    process's Python time (py-spy, 1M-customer cycle bench); one array parameter is one
    placeholder and one literal. Used in `filter()` directly:
    `Intervention.objects.filter(AnyOf(F("pk"), ids))`."""

    lookup_name = "any_of"
    prepare_rhs = False

    def __init__(self, lhs: Any, rhs: Any) -> None:
        super().__init__(lhs, list(rhs))

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        if connection.vendor != "postgresql":
            return In(self.lhs, self.rhs).as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", (*lhs_params, self.rhs)


def any_of_sql(column: str, values: list[Any], vendor: str) -> tuple[str, list[Any]]:
    """`AnyOf` for raw SQL: (the condition, its parameters) for a quoted `column`."""
    if vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)
