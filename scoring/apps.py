from django.apps import AppConfig


class ScoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "scoring"
    verbose_name = "Churn scoring"

    def ready(self) -> None:
        from scoring import admin_panels, privacy

        privacy.register()  # this app's part of a customer's export (customers.privacy)
        admin_panels.register()  # recommendations on the customer's admin page
        from scoring import realtime

        realtime.connect()  # event-triggered rescoring (docs/realtime.md)
