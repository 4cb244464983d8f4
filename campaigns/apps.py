from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        post_migrate.connect(_ensure_groups, sender=self)
        from campaigns import privacy

        privacy.register()  # this app's part of a customer's export and erasure
        from campaigns import admin_uplift_models

        admin_uplift_models.register()  # predicted uplift per action on the customer page
        from campaigns import realtime

        realtime.connect()  # triggered campaigns (docs/realtime.md)


def _ensure_groups(sender: Any, **kwargs: Any) -> None:
    from campaigns.services.setup import campaign_groups_ensure

    campaign_groups_ensure(using=kwargs.get("using", "default"))
