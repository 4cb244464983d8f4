from django.db import migrations

DEFAULT_TIERS = [
    ("low", 0.0, "#4caf50"),
    ("medium", 0.3, "#ffc107"),
    ("high", 0.5, "#ff7043"),
    ("critical", 0.7, "#d32f2f"),
]


def create_default_tiers(apps, schema_editor):
    RiskTier = apps.get_model("scoring", "RiskTier")
    if not RiskTier.objects.exists():
        RiskTier.objects.bulk_create(
            [RiskTier(name=n, min_probability=p, color=c) for n, p, c in DEFAULT_TIERS]
        )


class Migration(migrations.Migration):
    dependencies = [("scoring", "0001_registry")]
    operations = [migrations.RunPython(create_default_tiers, migrations.RunPython.noop)]
