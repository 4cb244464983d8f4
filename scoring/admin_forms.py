"""Admin forms of the risk tiers: shares and bands typed as percentages, and checked together
(rank shares add up to 100% or less, bands do not overlap) by scoring.ml.tiers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.forms.models import BaseModelFormSet

from scoring.ml.tiers import TierRule, validate_tier_rules
from scoring.models import RiskTier


class PercentField(forms.FloatField):
    """A 0–1 fraction typed and shown as a percentage (5 → 0.05)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, float | int) and not isinstance(value, bool):
            return f"{value * 100:g}"
        return value

    def to_python(self, value: Any) -> float | None:  # type: ignore[override]
        number = super().to_python(value)
        return None if number is None else round(number / 100, 10)

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        return {**super().widget_attrs(widget), "step": "any", "style": "width:5em"}


def _rule(tier: RiskTier) -> TierRule:
    return TierRule(tier.name, tier.severity, tier.mode, tier.share, tier.min_probability)


class RiskTierRowForm(forms.ModelForm):
    """One tier with its share and band typed as percentages."""

    share = PercentField(
        required=False,
        label="Share (%)",
        help_text="Rank tiers: % of scored customers, from the most at risk. Empty for the "
        "least severe tier (the rest).",
    )
    min_probability = PercentField(
        label="Band from (%)", help_text="Band tiers: churn probability at least this."
    )

    class Meta:
        model = RiskTier
        fields = ["name", "severity", "mode", "share", "min_probability", "color"]
        widgets = {"color": forms.TextInput(attrs={"type": "color"})}


class RiskTierForm(RiskTierRowForm):
    """The change form: this tier checked against the others as stored."""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        fields = ["name", "severity", "mode", "share", "min_probability"]
        mine = RiskTier(**{k: data.get(k, getattr(self.instance, k)) for k in fields})
        others = RiskTier.objects.exclude(pk=self.instance.pk).exclude(severity=mine.severity)
        problems = validate_tier_rules([*map(_rule, others), _rule(mine)])
        if problems:
            raise forms.ValidationError(problems)
        return data


class RiskTierFormSet(BaseModelFormSet):
    """The changelist's inline edits, checked together (shares add up, bands do not overlap)."""

    def clean(self) -> None:
        super().clean()
        if any(form.errors for form in self.forms):
            return
        edited = {form.instance.pk: form.instance for form in self.forms}
        tiers = [edited.get(t.pk, t) for t in RiskTier.objects.all()]
        problems = validate_tier_rules([_rule(t) for t in tiers])
        if problems:
            raise forms.ValidationError(problems)
