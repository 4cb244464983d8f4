"""Uplift models: the registry row of a model trained on a campaign's own randomised
interventions; the fitted learners are an artifact file (skops), like churn models."""

from __future__ import annotations

from django.db import models

from campaigns.models.setup import Campaign


class UpliftModelStatus(models.TextChoices):
    CHALLENGER = "challenger", "Challenger"
    CHAMPION = "champion", "Champion (used by the policy)"
    RETIRED = "retired", "Retired"


class UpliftModel(models.Model):
    """One trained uplift model of one campaign: per action (one of the campaign's rules:
    offer × channel) the predicted change in P(retained) — and in revenue — against the shared
    control arm. The champion is the one the campaign's uplift policy uses."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="uplift_models")
    version = models.CharField(max_length=64, unique=True)
    status = models.CharField(
        max_length=16, choices=UpliftModelStatus.choices, default=UpliftModelStatus.CHALLENGER
    )
    method = models.CharField(max_length=32, help_text="t_learner, x_learner, dr_learner, …")
    actions = models.JSONField(
        default=list,
        help_text="[{key, rule_id, label, channel, offer_id, expected_cost}], one per action.",
    )
    feature_names = models.JSONField(default=list)
    training_rows = models.PositiveIntegerField(default=0)
    training_window = models.JSONField(
        default=dict, help_text="The assignments used: first and last, finished windows only."
    )
    validation_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="Models with the same key were compared on the same validation rows.",
    )
    metrics = models.JSONField(
        default=dict,
        help_text="Validation Qini, AUUC, uplift at k with intervals, beside random and risk.",
    )
    candidates = models.JSONField(default=list, help_text="Every method's validation report.")
    artifact_path = models.CharField(max_length=500)
    artifact_sha256 = models.CharField(max_length=64)
    library_versions = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign"],
                condition=models.Q(status="champion"),
                name="one_champion_uplift_model_per_campaign",
            )
        ]

    def __str__(self) -> str:
        # "m… · Champion (used by the policy)": the label carries its own parentheses.
        return f"{self.version} · {self.get_status_display()}"
