"""Risk tiers by rank within a run (critical = top 5%, high = next 10%, medium = next 20%,
low = the rest), a severity order, and scores without a probability ("not scorable")."""

from django.db import migrations, models
from django.db.models import Q

# Issue 10: fixed bands met a 75% base churn rate and made 81% of the demo "critical".
RANK_DEFAULTS = {"critical": (3, 0.05), "high": (2, 0.10), "medium": (1, 0.20), "low": (0, None)}


def tiers_by_rank(apps, schema_editor):
    """The default tiers become rank shares; other (renamed or added) tiers keep their band
    and get a severity after them in probability order."""
    RiskTier = apps.get_model("scoring", "RiskTier")
    tiers = list(RiskTier.objects.order_by("min_probability"))
    next_severity = len(RANK_DEFAULTS)
    for tier in tiers:
        if tier.name in RANK_DEFAULTS:
            tier.severity, tier.share = RANK_DEFAULTS[tier.name]
            tier.mode = "rank"
        else:
            tier.severity, tier.mode = next_severity, "band"
            next_severity += 1
        tier.save(update_fields=["severity", "share", "mode"])


def tiers_by_band(apps, schema_editor):
    apps.get_model("scoring", "RiskTier").objects.update(mode="band")


class Migration(migrations.Migration):
    dependencies = [("scoring", "0005_scoring_chunks")]

    operations = [
        migrations.AlterModelOptions(name="risktier", options={"ordering": ["-severity"]}),
        migrations.AddField(
            model_name="risktier",
            name="mode",
            field=models.CharField(
                choices=[
                    ("rank", "Rank share (top % of scored customers)"),
                    ("band", "Probability band (p ≥ bound)"),
                ],
                default="rank",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="risktier",
            name="share",
            field=models.FloatField(
                blank=True,
                null=True,
                verbose_name="rank share (%)",
                help_text="Rank tiers: share of scored customers (stored 0–1, typed in % in the "
                "admin: 5 = the top 5%). Empty for the least severe tier, which takes the rest.",
            ),
        ),
        migrations.AddField(
            model_name="risktier",
            name="severity",
            field=models.PositiveSmallIntegerField(null=True),
        ),
        migrations.RunPython(tiers_by_rank, tiers_by_band),
        migrations.AlterField(
            model_name="risktier",
            name="severity",
            field=models.PositiveSmallIntegerField(
                unique=True,
                help_text="Higher is more severe; tiers are tried and listed in this order.",
            ),
        ),
        migrations.AlterField(
            model_name="risktier",
            name="min_probability",
            field=models.FloatField(
                default=0.0,
                verbose_name="band from (%)",
                help_text="Band tiers: lower bound of the probability, inclusive (stored 0–1).",
            ),
        ),
        migrations.AddConstraint(
            model_name="risktier",
            constraint=models.CheckConstraint(
                condition=Q(share__isnull=True) | (Q(share__gt=0) & Q(share__lte=1)),
                name="tier_share_in_unit_interval",
            ),
        ),
        migrations.AddField(
            model_name="scoringrun",
            name="customers_not_scorable",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Scored rows without a probability (see CustomerScore.scorable).",
            ),
        ),
        migrations.AlterField(
            model_name="customerscore",
            name="probability",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="customerscore",
            name="scorable",
            field=models.BooleanField(db_default=True, default=True),
        ),
        migrations.AddField(
            model_name="customerscore",
            name="not_scorable_reason",
            field=models.CharField(blank=True, db_default="", default="", max_length=200),
        ),
    ]
