from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0013_order_statistics"),
    ]

    operations = [
        migrations.AddField(
            model_name="scoringchunk",
            name="scores",
            field=models.PositiveIntegerField(
                help_text="Score rows written (scorable or not).", null=True
            ),
        ),
        migrations.AddField(
            model_name="scoringchunk",
            name="score_counts",
            field=models.JSONField(
                blank=True,
                help_text="The scorable probabilities counted into the drift reference's score "
                "bins, then the missing ones ([] without a reference).",
                null=True,
            ),
        ),
    ]
