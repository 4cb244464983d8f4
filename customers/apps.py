from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CustomersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "customers"
    verbose_name = "Customers"

    def ready(self) -> None:
        post_migrate.connect(_ensure_event_kinds, sender=self)


def _ensure_event_kinds(sender: Any, **kwargs: Any) -> None:
    from customers.realtime import event_kinds_ensure

    event_kinds_ensure(using=kwargs.get("using", "default"))
