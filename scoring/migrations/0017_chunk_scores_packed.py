"""A scoring chunk keeps its scorable scores as packed records (ScoringChunk.scored), for the
run's finish to re-tier from. Stored as written on PostgreSQL (STORAGE EXTERNAL, no compression
attempt): ~0.9 MB of ids and probabilities a chunk, read once by the finish (the saving of
compressing them was not measured)."""

from django.db import migrations, models


def store_uncompressed(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE scoring_scoringchunk ALTER COLUMN scored SET STORAGE EXTERNAL"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0016_order_statistics_packed"),
    ]

    operations = [
        migrations.AddField(
            model_name="scoringchunk",
            name="scored",
            field=models.BinaryField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="scoringchunk",
            name="tier_names",
            field=models.JSONField(blank=True, default=list, editable=False),
        ),
        migrations.RunPython(store_uncompressed, migrations.RunPython.noop),
    ]
