"""Campaigns get a stable key for the API (campaigns/<key>/uplift) beside their numeric id;
existing campaigns get one from their name."""

from typing import Any

from django.db import migrations, models
from django.utils.text import slugify

import campaigns.models.setup


def fill_keys(apps: Any, schema_editor: Any) -> None:
    Campaign = apps.get_model("campaigns", "Campaign")
    taken: set[str] = set()
    for campaign in Campaign.objects.order_by("pk"):
        base = slugify(campaign.name)[:56] or "campaign"
        base = f"campaign-{base}" if base.isdigit() else base
        key, n = base, 2
        while key in taken:
            key, n = f"{base}-{n}", n + 1
        taken.add(key)
        campaign.key = key
        campaign.save(update_fields=["key"])


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0006_callback_attempts")]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="key",
            field=models.SlugField(max_length=64, null=True, blank=True, db_index=False),
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="campaign",
            name="key",
            field=models.SlugField(
                blank=True,
                help_text="A stable name for the API (letters, digits, hyphens), e.g. win-back; "
                "filled from the name when left empty.",
                max_length=64,
                unique=True,
                validators=[campaigns.models.setup.campaign_key_validate],
            ),
        ),
    ]
