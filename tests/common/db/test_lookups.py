"""`AnyOf`: a list of values as one array parameter on PostgreSQL, `IN (…)` elsewhere — the same
rows either way, in filters, updates and raw SQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from common.db.lookups import AnyOf, any_of_sql
from customers.models import Customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers() -> list[Customer]:
    return Customer.objects.bulk_create(
        Customer(external_id=f"c{i}", name=f"n{i}") for i in range(30)
    )


def test_any_of_selects_exactly_the_listed_rows(customers: list[Customer]) -> None:
    wanted = [c.pk for c in customers[3:20:2]] + [10**12]  # an id no row has
    found = Customer.objects.filter(AnyOf(F("pk"), wanted)).values_list("pk", flat=True)
    assert sorted(found) == sorted(wanted[:-1])
    assert sorted(found) == sorted(
        Customer.objects.filter(pk__in=wanted).values_list("pk", flat=True)
    )
    assert not Customer.objects.filter(AnyOf(F("pk"), [])).exists()
    # Any iterable: a generator, a set.
    assert Customer.objects.filter(AnyOf(F("pk"), (c.pk for c in customers[:2]))).count() == 2
    assert Customer.objects.filter(AnyOf(F("external_id"), {"c1", "c2", "zz"})).count() == 2


def test_any_of_in_an_update_and_combined_with_other_conditions(customers: list[Customer]) -> None:
    ids = [c.pk for c in customers[:10]]
    changed = Customer.objects.filter(AnyOf(F("pk"), ids), name__in=["n1", "n2", "n20"]).update(
        country="FR"
    )
    assert changed == 2
    assert set(Customer.objects.filter(country="FR").values_list("name", flat=True)) == {"n1", "n2"}


def test_on_postgresql_the_list_is_one_parameter(
    require_postgres: None, customers: list[Customer]
) -> None:
    ids = [c.pk for c in customers]
    with CaptureQueriesContext(connection) as queries:
        assert Customer.objects.filter(AnyOf(F("pk"), ids)).count() == len(ids)
    sql = queries[-1]["sql"]
    assert "= ANY(" in sql and " IN (" not in sql
    condition, params = any_of_sql('"id"', ids, connection.vendor)
    assert condition == '"id" = ANY(%s)' and params == [ids]


def test_raw_sql_condition_selects_the_listed_rows(customers: list[Customer]) -> None:
    ids = [c.pk for c in customers[5:9]]
    condition, params = any_of_sql("id", ids, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM customers_customer WHERE {condition}", params)
        assert sorted(row[0] for row in cursor.fetchall()) == sorted(ids)
