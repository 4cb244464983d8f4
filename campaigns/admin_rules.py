"""The rule builder of the campaign form: no JSON typed by hand.

Tiers are checkboxes from the tier table (most severe first); attribute conditions are rows of
field (from the attribute keys present in the data), operator and value (checked against the
field's kind); and while staff edit, rule_builder.js posts the form to `audience_view`, which
answers with each rule's customers now — decided exactly as the dispatch decides — and, for a
rule that would reach nobody, the reason."""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from campaigns.models import (
    TEMPLATED_CHANNELS,
    AttributeOperator,
    Campaign,
    ContactChannel,
    Rule,
)
from campaigns.rules import ModelSegment
from campaigns.services.dispatch import campaign_rules_audience
from customers.selectors import customer_attribute_fields
from scoring.ml.distill import Student
from scoring.ml.tiers import RANK
from scoring.selectors import churn_model_active, risk_tier_rules

# The attribute keys of the data are read once per this many seconds, not once per rule form:
# a campaign page builds a form per rule (and the live count rebuilds them on every edit).
ATTRIBUTE_FIELDS_SECONDS = 60.0
_attribute_fields_read: tuple[float, dict[str, dict[str, Any]]] | None = None


def attribute_fields() -> dict[str, dict[str, Any]]:
    """customers.selectors.customer_attribute_fields, read at most once a minute per process."""
    global _attribute_fields_read
    now = time.monotonic()
    if _attribute_fields_read is None or now - _attribute_fields_read[0] > ATTRIBUTE_FIELDS_SECONDS:
        _attribute_fields_read = (now, customer_attribute_fields())
    return _attribute_fields_read[1]


def attribute_fields_forget() -> None:
    """Read the attribute keys afresh next time (tests; after an import that adds keys)."""
    global _attribute_fields_read
    _attribute_fields_read = None


# Blank condition rows offered beyond a rule's own conditions.
EXTRA_CONDITION_ROWS = 2
NUMERIC_OPERATORS = {"gt", "gte", "lt", "lte"}


def tier_choices() -> list[tuple[str, str]]:
    """The tier table's names, most severe first, each with what puts a customer in it."""
    return [
        (
            rule.name,
            f"{rule.name.capitalize()} (next {rule.share:.0%} by risk)"
            if rule.mode == RANK and rule.share is not None
            else f"{rule.name.capitalize()} (p ≥ {rule.min_probability:.0%})",
        )
        for rule in risk_tier_rules()
    ]


def active_model_segments() -> tuple[str, list[ModelSegment]]:
    """The active model's version and its readable student's rules as segments, riskiest
    first ("", [] without an active model; the version and [] when it has no student)."""
    model = churn_model_active()
    if model is None:
        return "", []
    data = (model.reference or {}).get("student")
    if not data:
        return model.version, []
    student = Student.from_dict(data)
    return model.version, [
        ModelSegment(
            model_version=model.version,
            leaf=leaf.id,
            text=student.rule_text(leaf),
            risk=leaf.risk,
            customers=leaf.customers,
        )
        for leaf in sorted(student.leaves, key=lambda leaf: (-leaf.risk, leaf.id))
    ]


def segment_staleness(
    segment: ModelSegment | None, active_version: str, active: list[ModelSegment] | None = None
) -> str:
    """Why a rule's segment no longer selects by the active model ("" when it does); with the
    active model's segments, also when that model was distilled again (churn_distill) and the
    leaf now says something else."""
    if segment is None:
        return ""
    if segment.model_version == active_version:
        current = next((s for s in active or [] if s.leaf == segment.leaf), None)
        if active is None or (current is not None and current.text == segment.text):
            return ""
        became = f"leaf {segment.leaf} is now “{current.text}”" if current else "that leaf is gone"
        return (
            f"Model {active_version} was distilled again since this segment was chosen: "
            f"{became}. Choose the rule again."
        )
    state = f"model {active_version} is active" if active_version else "no model is active"
    return (
        f"This segment is a rule of model {segment.model_version}, but {state}: it matches only "
        "customers still scored by the old model (nobody once the next scoring run is done). "
        "Choose a rule of the active model."
    )


class ConditionRows(forms.Widget):
    """Rows of <field> <operator> <value>; submitted as `<name>_<i>_field|operator|value`."""

    def __init__(self, fields: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.fields = fields or {}

    def format_value(self, value: Any) -> list[dict[str, Any]]:
        return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        rows = self.format_value(value) + [{}] * EXTRA_CONDITION_ROWS
        body = format_html_join(
            "", "<tr>{}</tr>", ((self._row(name, i, row),) for i, row in enumerate(rows))
        )
        return format_html(
            '<table class="condition-rows"><thead><tr><th>Attribute</th><th>Operator</th>'
            "<th>Value</th></tr></thead><tbody>{}</tbody></table>"
            '<input type="hidden" name="{}_rows" value="{}">',
            body,
            name,
            len(rows),
        )

    def _row(self, name: str, index: int, row: dict[str, Any]) -> SafeString:
        field = str(row.get("field", ""))
        names = list(self.fields) + ([field] if field and field not in self.fields else [])
        field_options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (key, mark_safe(" selected") if key == field else "", self._field_label(key))
                for key in names
            ),
        )
        operator = str(row.get("operator", "eq"))
        operator_options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (code, mark_safe(" selected") if code == operator else "", label)
                for code, label in AttributeOperator.choices
            ),
        )
        value = row.get("value", "")
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        return format_html(
            '<td><select name="{0}_{1}_field"><option value="">—</option>{2}</select></td>'
            '<td><select name="{0}_{1}_operator">{3}</select></td>'
            '<td><input type="text" name="{0}_{1}_value" value="{4}" list="{5}"></td>',
            name,
            index,
            field_options,
            operator_options,
            shown,
            f"attribute-values-{field}" if field else "",
        )

    def _field_label(self, key: str) -> str:
        info = self.fields.get(key)
        if info is None:
            return f"{key} (not in the data)"
        return f"{key} ({info['kind']})"

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[dict[str, str]]:
        try:
            count = min(int(data.get(f"{name}_rows", 0)), 100)
        except (TypeError, ValueError):
            count = 0
        return [
            {
                "field": str(data.get(f"{name}_{i}_field", "")).strip(),
                "operator": str(data.get(f"{name}_{i}_operator", "eq")),
                "value": str(data.get(f"{name}_{i}_value", "")).strip(),
            }
            for i in range(count)
        ]

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return f"{name}_rows" not in data


class ConditionRowsField(forms.Field):
    """The rows as the rule stores them: [{field, operator, value}], values typed by kind."""

    def __init__(self, *, fields: dict[str, dict[str, Any]], **kwargs: Any) -> None:
        self.attribute_fields = fields
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            "All must hold. Leave the attribute empty to drop a row. Numbers for > ≥ < ≤;"
            " a comma-separated list for “in”. Save and continue for more rows.",
        )
        super().__init__(widget=ConditionRows(fields), **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return value

    def to_python(self, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):  # the stored JSON (initial) rather than posted rows
            return []
        conditions, problems = [], []
        for number, row in enumerate(value, start=1):
            if not row.get("field"):
                continue
            try:
                conditions.append(self._typed(row))
            except ValidationError as exc:
                problems.append(f"Row {number} ({row['field']}): {exc.messages[0]}")
        if problems:
            raise ValidationError(problems)
        return conditions

    def _typed(self, row: dict[str, Any]) -> dict[str, Any]:
        field, operator, raw = row["field"], row["operator"], row["value"]
        if not field.replace("_", "").replace(" ", "").isalnum():
            raise ValidationError("an attribute name has letters, digits and _ only.")
        if operator not in AttributeOperator.values:
            raise ValidationError(f"unknown operator {operator!r}.")
        if raw == "":
            raise ValidationError("a value is needed.")
        kind = self.attribute_fields.get(field, {}).get("kind", "text")
        if operator == "in":
            return {"field": field, "operator": operator, "value": _split(raw)}
        if operator in NUMERIC_OPERATORS or (kind == "number" and operator in {"eq", "ne"}):
            try:
                number = Decimal(raw.replace(",", ""))
            except InvalidOperation:
                raise ValidationError(
                    f"{raw!r} is not a number, and this comparison needs one."
                ) from None
            value: Any = int(number) if number == number.to_integral_value() else float(number)
            return {"field": field, "operator": operator, "value": value}
        return {"field": field, "operator": operator, "value": raw}


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


class RuleForm(forms.ModelForm):
    """A rule without JSON: tier checkboxes and condition rows."""

    tiers = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every tier.",
    )
    segment = forms.ChoiceField(
        required=False,
        label="Model segment",
        help_text="A rule of the active churn model's readable student (riskiest first): only "
        "customers whose latest score falls in it. Risk and customers as at training.",
    )

    class Meta:
        model = Rule
        fields = [
            "position",
            "name",
            "segment",
            "tiers",
            "min_probability",
            "max_probability",
            "min_value",
            "max_value",
            "attribute_conditions",
            "consent_channel",
            "channel",
            "offer",
            "template",
            "fallback_channel",
            "fallback_template",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = tier_choices()
        stored = [t for t in (self.instance.tiers or []) if t not in dict(choices)]
        # A stored tier no longer in the table stays visible so it can be unticked.
        tiers = self.fields["tiers"]
        assert isinstance(tiers, forms.MultipleChoiceField)
        tiers.choices = choices + [(t, f"{t} (unknown tier)") for t in stored]
        tiers.initial = list(self.instance.tiers or [])
        # A fallback is a message channel (models.Rule.clean refuses the others).
        fallback = self.fields["fallback_channel"]
        assert isinstance(fallback, forms.ChoiceField)
        fallback.choices = [("", "No fallback")] + [
            (value, label) for value, label in ContactChannel.choices if value in TEMPLATED_CHANNELS
        ]
        self.fields["attribute_conditions"] = ConditionRowsField(
            fields=attribute_fields(), label="Attribute conditions"
        )
        self._segment_choices()

    def _segment_choices(self) -> None:
        """The active model's student rules; a stored segment of another model stays listed,
        marked as such, with the reason in the field's help text."""
        version, segments = active_model_segments()
        self.segments = {s.key: s for s in segments}
        stored = ModelSegment.from_dict(self.instance.segment or {})
        field = self.fields["segment"]
        assert isinstance(field, forms.ChoiceField)
        empty = "No segment" if segments else "No segment (the active model has no student rules)"
        choices = [("", empty)] + [(key, s.label()) for key, s in self.segments.items()]
        if stored is not None and stored.key not in self.segments:
            self.segments[stored.key] = stored
            choices.append((stored.key, f"{stored.label()} — model {stored.model_version}"))
        field.choices = choices
        if stored is not None or "segment" not in self.initial:  # else: ?segment= of a link
            self.initial["segment"] = stored.key if stored is not None else ""
        self.segment_warning = segment_staleness(stored, version, segments)
        if self.segment_warning:
            field.help_text = self.segment_warning

    def clean_segment(self) -> dict[str, Any]:
        key = self.cleaned_data.get("segment") or ""
        if not key:
            return {}
        segment = self.segments.get(key)
        if segment is None:
            raise ValidationError(f"Unknown segment {key!r}: choose one of the list.")
        return segment.to_dict()

    def clean_tiers(self) -> list[str]:
        known = dict(tier_choices())
        unknown = [t for t in self.cleaned_data["tiers"] if t not in known]
        if unknown:
            raise ValidationError(
                f"Unknown tier {', '.join(unknown)}: untick it (tiers are: {', '.join(known)})."
            )
        return list(self.cleaned_data["tiers"])


def attribute_datalists() -> SafeString:
    """<datalist> of the common values of each attribute, for the value inputs' suggestions."""
    return format_html_join(
        "",
        '<datalist id="attribute-values-{}">{}</datalist>',
        (
            (key, format_html_join("", '<option value="{}">', ((v,) for v in info["values"])))
            for key, info in attribute_fields().items()
        ),
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _campaign_for(request: HttpRequest) -> Campaign:
    """The campaign being edited, with the experiment fields as currently typed (unsaved)."""
    pk = _int_or_none(request.POST.get("campaign_id"))
    campaign = Campaign.objects.filter(pk=pk).first() if pk else None
    campaign = campaign or Campaign(pk=0, name="(new campaign)", salt="preview")
    for name, kind in (("control_percentage", Decimal), ("cooldown_days", int)):
        with contextlib.suppress(ValueError, InvalidOperation):
            setattr(campaign, name, kind(request.POST.get(name, "")))
    return campaign


def _posted_rules(
    request: HttpRequest, campaign: Campaign
) -> tuple[list[tuple[int, Rule]], dict[str, Any]]:
    """The inline forms of the posted campaign form, as unsaved rules (form index, rule)."""
    rules, errors = [], {}
    try:
        total = min(int(request.POST.get("rules-TOTAL_FORMS", 0)), 100)
    except ValueError:
        total = 0
    for index in range(total):
        prefix = f"rules-{index}"
        if request.POST.get(f"{prefix}-DELETE"):
            continue
        pk = _int_or_none(request.POST.get(f"{prefix}-id"))
        existing = Rule.objects.filter(pk=pk, campaign=campaign).first() if pk else None
        form = RuleForm(data=request.POST, prefix=prefix, instance=existing or Rule())
        if existing is None and not form.has_changed():
            continue  # an untouched blank form
        if form.is_valid():
            rule = form.save(commit=False)
            rule.campaign = campaign
            rules.append((index, rule))
        else:
            errors[str(index)] = [
                f"{k}: {' '.join(str(m) for m in v)}" for k, v in form.errors.items()
            ]
    rules.sort(key=lambda item: (item[1].position, item[0]))
    return rules, errors


def audience_view(request: HttpRequest) -> JsonResponse:
    """POST the campaign form → {"rules": {form index: counts and reason}, "errors": …}."""
    if request.method != "POST":
        return JsonResponse({"error": "POST the campaign form."}, status=405)
    if not request.user.has_perm("campaigns.view_campaign"):
        return JsonResponse(
            {"error": "Counting a campaign's audience needs access to campaigns."}, status=403
        )
    campaign = _campaign_for(request)
    indexed, errors = _posted_rules(request, campaign)
    audiences = campaign_rules_audience(
        campaign=campaign, rules=[rule for _, rule in indexed], now=timezone.now()
    )
    active_version, active_segments = active_model_segments()
    result = {
        str(index): {
            "name": a.name,
            "steps": a.steps,
            "matching": a.matching,
            "taken": a.taken,
            "control": a.control,
            "sendable": a.sendable,
            "suppressed": a.suppressed,
            "nobody_because": a.nobody_because,
            "segment_warning": segment_staleness(
                ModelSegment.from_dict(rule.segment or {}), active_version, active_segments
            ),
        }
        for (index, rule), a in zip(indexed, audiences, strict=True)
    }
    return JsonResponse(
        {
            "rules": result,
            "errors": errors,
            "eligible": sum(a.taken for a in audiences),
            "sendable": sum(a.sendable for a in audiences),
        }
    )
