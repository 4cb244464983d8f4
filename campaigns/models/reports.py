"""Stored uplift report snapshots (the figures are computed by campaigns.measurement)."""

from __future__ import annotations

from django.db import models

from campaigns.models.delivery import CampaignCycle
from campaigns.models.setup import Campaign


class ReportKind(models.TextChoices):
    CAMPAIGN = "campaign", "Campaign"
    CYCLE = "cycle", "Campaign cycle"
    PROGRAM = "program", "Program (global control vs everyone else)"


class ReportStatus(models.TextChoices):
    INTERIM = "interim", "Interim (attribution window still open)"
    FINAL = "final", "Final (attribution window closed)"
    EMPTY = "empty", "Nothing to measure yet"


class UpliftReport(models.Model):
    """A snapshot of what a campaign (one cycle of it, or the whole program) changed, computed
    nightly and on demand. One row per scope and day: a rerun the same day replaces it."""

    kind = models.CharField(max_length=16, choices=ReportKind.choices)
    scope_key = models.CharField(
        max_length=64, help_text="campaign-<id>, cycle-<id> or program: what was measured."
    )
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="uplift_reports"
    )
    cycle = models.ForeignKey(
        CampaignCycle,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="uplift_reports",
    )
    report_date = models.DateField(help_text="The day (UTC) the snapshot belongs to.")
    measured_at = models.DateTimeField(help_text="Outcomes were read as of this time.")
    status = models.CharField(max_length=16, choices=ReportStatus.choices)
    figures = models.JSONField(default=dict, blank=True)
    seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-report_date", "scope_key"]
        constraints = [
            # The nightly run guard: two beat processes (or a rerun) update one row, never two.
            models.UniqueConstraint(fields=["scope_key", "report_date"], name="one_report_per_day")
        ]

    def __str__(self) -> str:
        return f"Uplift {self.scope_key} @ {self.report_date:%Y-%m-%d} ({self.status})"
