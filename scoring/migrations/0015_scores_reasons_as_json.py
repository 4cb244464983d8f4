"""A score's reasons and waterfall as PostgreSQL `json` instead of `jsonb`
(common.db.fields.TextJSONField): a scoring run writes them for a million customers a night
and nothing searches inside them. Both columns change in one ALTER TABLE, so a big scores
table is rewritten once; elsewhere (SQLite) a JSONField is text either way: nothing to do."""

from django.db import migrations

import common.db.fields

COLUMNS = ("reasons", "attributions")


def _alter(schema_editor, to: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    changes = ", ".join(f"ALTER COLUMN {quote(c)} TYPE {to}" for c in COLUMNS)
    changes += f", ALTER COLUMN {quote('attributions')} SET DEFAULT '{{}}'::{to}"
    schema_editor.execute(f"ALTER TABLE {quote('scoring_customerscore')} {changes}")


def to_json(apps, schema_editor) -> None:
    _alter(schema_editor, "json")


def to_jsonb(apps, schema_editor) -> None:
    _alter(schema_editor, "jsonb")


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0014_chunk_counts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="customerscore",
                    name="attributions",
                    field=common.db.fields.TextJSONField(db_default={}, default=dict),
                ),
                migrations.AlterField(
                    model_name="customerscore",
                    name="reasons",
                    field=common.db.fields.TextJSONField(default=list),
                ),
            ],
            database_operations=[migrations.RunPython(to_json, to_jsonb)],
        ),
    ]
