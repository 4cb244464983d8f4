"""Customers' latest-score columns are rewritten by every scoring run: let PostgreSQL do it in
place. Without an index on those columns and with half of each page left free (fillfactor
50), an UPDATE of a customer's score is a heap-only tuple update that touches no index.

The fillfactor applies to pages written from now on; `VACUUM FULL customers_customer` (or
CLUSTER) repacks existing rows with it, in a maintenance window.
"""

from django.db import migrations


def set_fillfactor(apps, schema_editor, value: int = 50) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE customers_customer SET (fillfactor = {int(value)})")


def reset_fillfactor(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE customers_customer RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0004_covering_customer_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="customer",
            name="customer_tier_probability",
        ),
        migrations.RunPython(set_fillfactor, reset_fillfactor),
    ]
