"""Admin pages of uplift models (campaigns.services.uplift_models): the registry list, a
model's page in words (validation Qini per action with its interval, beside random and risk
targeting), the action that makes a challenger champion, the preview's policy section and the
customer page's panel of predicted uplift per action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from campaigns import selectors
from campaigns.models import Campaign, SuppressionReason, Targeting, UpliftModel, UpliftModelStatus
from campaigns.money import money
from campaigns.services.uplift_models import (
    UpliftTrainingError,
    action_cost,
    action_evidence,
    uplift_model_activate,
    uplift_predict,
)
from customers.admin_panels import CustomerPanel, customer_panel_register
from customers.models import Customer

METHOD_WORDS = {
    "t_learner": "T-learner (one model per arm)",
    "class_transformation": "Class transformation (one model of the transformed outcome)",
    "dr_learner": "DR-learner (doubly robust)",
    "x_learner": "X-learner",
}


def method_words(method: str) -> str:
    return METHOD_WORDS.get(method, method.replace("_", " "))


def _figure(value: Any, *, points: bool = False) -> str:
    """{value, low, high} (or a number) in words: "0.214 (95% interval 0.102 to 0.331)"."""
    if value is None:
        return "—"
    if not isinstance(value, dict):
        value = {"value": value}

    def one(v: Any) -> str:
        number = float(v)
        return f"{number * 100:+.2f} pp" if points else f"{number:.3f}"

    text = one(value["value"])
    if value.get("low") is not None and value.get("high") is not None:
        low, high = float(value["low"]), float(value["high"])
        if low == low and high == high and (low, high) != (value["value"], value["value"]):
            text += f" (95% interval {one(low)} to {one(high)})"
    return text


def _action_label(model: UpliftModel, key: str) -> str:
    for action in model.actions:
        if action.get("key") == key:
            channel = f", {action['channel']}" if action.get("channel") else ""
            return f"{action.get('label', key)}{channel}"
    return key


def validation_table(model: UpliftModel) -> SafeString:
    """Per action: the model's Qini and uplift in the top 30% on the validation rows, beside
    random targeting (Qini 0 by definition) and targeting the riskiest customers first."""
    per_action = (model.metrics or {}).get("actions") or {}
    evidence = action_evidence(model)
    if not per_action:
        return format_html("<em>{}</em>", "No validation figures were recorded.")
    rows = []
    for key, roles in sorted(per_action.items()):
        mine, risk = roles.get("model", {}), roles.get("risk")
        at = next((k for k in mine if k.startswith("uplift_at_")), None)
        average = roles.get("average")
        if average is None:
            uses = "its predictions (no average recorded)"
        elif evidence.get(key) is not None and evidence[key].ranking_validated:
            uses = "each customer's prediction (the ranking beats random)"
        else:
            uses = format_html(
                "the average effect for everyone: {} (the ranking does not beat random)",
                _figure(average, points=True),
            )
        rows.append(
            (
                _action_label(model, key),
                f"{mine.get('rows', '—'):,}" if isinstance(mine.get("rows"), int) else "—",
                _figure(mine.get("qini")),
                "0 (by definition)",
                _figure(risk.get("qini")) if risk else "not measured",
                _figure(mine.get(at), points=True) if at else "—",
                uses,
            )
        )
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        rows,
    )
    return format_html(
        '<table class="uplift-validation"><thead><tr><th>action</th><th>validation rows</th>'
        "<th>Qini of this model</th><th>Qini of random targeting</th>"
        "<th>Qini of targeting by churn risk</th><th>uplift in its top 30%</th>"
        "<th>what the policy uses</th></tr></thead>"
        '<tbody>{}</tbody></table><p class="help">{}</p>',
        body,
        "Qini: how much better than random the model ranks customers by the change an offer "
        "makes in their retention (0 = random, 1 = perfect), on validation rows it was not "
        "fitted on. The interval is a 95% bootstrap interval. Where the interval's lower end "
        "is not above 0, the policy does not trust the ranking and gives every customer the "
        "action's average effect measured on the randomised rows. Mean over actions: "
        + _figure((model.metrics or {}).get("mean_qini")),
    )


@admin.register(UpliftModel)
class UpliftModelAdmin(admin.ModelAdmin):
    list_display = [
        "version",
        "campaign",
        "status_short",
        "method_short",
        "training_rows",
        "mean_qini",
    ]
    list_filter = ["status", "campaign"]
    search_fields = ["version", "campaign__name"]
    actions = ["make_champion"]
    fields = (
        "version",
        "campaign",
        "status",
        "method_text",
        "training_rows",
        "training_window_text",
        "validation",
        "decision",
        "actions_text",
        "features_text",
        "artifact_text",
        "created_at",
        "activated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # models come from training (manage.py uplift_train)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = {"show_save": False, "show_save_and_continue": False, **(extra_context or {})}
        extra["show_save_and_add_another"] = False
        model = UpliftModel.objects.filter(pk=object_id).only("version").first()
        extra.setdefault("title", f"Uplift model {model.version}" if model else "Uplift model")
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="method", ordering="method")
    def method_text(self, model: UpliftModel) -> str:
        return method_words(model.method)

    @admin.display(description="status", ordering="status")
    def status_short(self, model: UpliftModel) -> str:
        return "champion" if model.status == UpliftModelStatus.CHAMPION else model.status

    @admin.display(description="method", ordering="method")
    def method_short(self, model: UpliftModel) -> str:
        return method_words(model.method).split(" (")[0]

    @admin.display(description="Qini (mean)")
    def mean_qini(self, model: UpliftModel) -> str:
        return _figure((model.metrics or {}).get("mean_qini"))

    @admin.display(description="trained on")
    def training_window_text(self, model: UpliftModel) -> str:
        window = model.training_window or {}
        arms = window.get("rows_per_arm") or {}
        per_arm = ", ".join(
            f"{_action_label(model, k) if k != 'control' else 'control'}: {n:,}"
            for k, n in sorted(arms.items())
        )
        share = window.get("retained_share")
        cycles = window.get("cycles", "—")
        return (
            f"interventions assigned {str(window.get('first_assigned', '—'))[:10]} to "
            f"{str(window.get('last_assigned', '—'))[:10]} in {cycles} cycle"
            f"{'' if cycles == 1 else 's'}, attribution windows finished; rows per arm: "
            f"{per_arm or '—'}"
            + (f"; {float(share) * 100:.1f}% retained" if share is not None else "")
        )

    @admin.display(description="validation, beside random and risk targeting")
    def validation(self, model: UpliftModel) -> SafeString:
        return validation_table(model)

    @admin.display(description="champion / challenger")
    def decision(self, model: UpliftModel) -> str:
        return str((model.metrics or {}).get("decision") or "—")

    @admin.display(description="actions (the campaign's rules)")
    def actions_text(self, model: UpliftModel) -> SafeString:
        return format_html_join(
            "",
            "<div>{} — expected cost {} per customer</div>",
            (
                (_action_label(model, a["key"]), money(a.get("expected_cost")))
                for a in model.actions
            ),
        )

    @admin.display(description="inputs")
    def features_text(self, model: UpliftModel) -> str:
        names = list(model.feature_names or [])
        shown = ", ".join(n.replace("_", " ") for n in names[:12])
        more = f" and {len(names) - 12} more" if len(names) > 12 else ""
        return f"{len(names)} inputs as of each assignment: {shown}{more}"

    @admin.display(description="artifact")
    def artifact_text(self, model: UpliftModel) -> str:
        libraries = ", ".join(f"{k} {v}" for k, v in (model.library_versions or {}).items())
        return f"{model.artifact_path} (SHA-256 {model.artifact_sha256[:12]}…; {libraries})"

    @admin.action(description="Make the selected model its campaign's champion")
    def make_champion(self, request: HttpRequest, queryset: QuerySet[UpliftModel]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model.", messages.WARNING)
            return
        model = queryset.get()
        if model.status == UpliftModelStatus.CHAMPION:
            self.message_user(request, f"{model.version} is already the champion.")
            return
        uplift_model_activate(model=model, now=timezone.now())
        self.log_change(request, model, "Made champion by hand.")
        self.message_user(
            request,
            f"{model.version} is now the champion of “{model.campaign}”: its uplift policy "
            "uses it from the next cycle; the previous champion is a challenger again.",
        )


# --- the preview's policy section ------------------------------------------------------------


def _reason_words(reason: str) -> str:
    labels = dict(SuppressionReason.choices)
    return str(labels.get(reason, reason.replace("_", " "))).lower()


def policy_preview(policy: dict[str, Any], *, model_url: str = "") -> dict[str, Any] | None:
    """The preview's uplift-policy section: rows (what, policy, risk) in words, or the
    fallback sentence; None for a rules campaign."""
    if not policy:
        return None
    if policy.get("fallback"):
        return {"fallback": policy["fallback"]}
    expected = policy.get("expected") or {}
    mine, risk = expected.get("policy") or {}, expected.get("risk") or {}

    def row(label: str, key: str, fmt: Any) -> dict[str, str]:
        return {"label": label, "policy": fmt(mine.get(key)), "risk": fmt(risk.get(key))}

    def count(v: Any) -> str:
        return "—" if v is None else f"{float(v):,.1f}"

    budget = policy.get("budget")
    return {
        "model": policy.get("model", ""),
        "model_url": model_url,
        "budget": "no limit" if budget is None else money(budget),
        "spent": money(policy.get("spent")),
        "exploration": f"{float(policy.get('exploration_share') or 0) * 100:.0f}%",
        "candidates": f"{int(policy.get('candidates') or 0):,}",
        "negative": f"{int(policy.get('negative') or 0):,}",
        "unreachable": {
            _reason_words(reason): n for reason, n in (policy.get("unreachable") or {}).items()
        },
        "without_model": policy.get("actions_without_model") or [],
        "rows": [
            row("Customers contacted", "customers", lambda v: "—" if v is None else f"{v:,}"),
            row("Expected incremental retained customers", "retained", count),
            row("Expected incremental value (uplift × customer value)", "value", money),
            row("Expected cost (offers + messages)", "cost", money),
        ],
    }


# --- the customer page's panel ---------------------------------------------------------------


def uplift_panel(customer: Customer) -> SafeString:
    """Per campaign in uplift policy mode with a champion: the predicted change in this
    customer's probability of staying for each action, and what it is worth net of cost."""
    campaigns = Campaign.objects.filter(
        targeting=Targeting.UPLIFT_POLICY, uplift_models__status=UpliftModelStatus.CHAMPION
    ).distinct()
    now = timezone.now()
    value = float(
        selectors.customer_value_frame(id_range=(customer.pk, customer.pk), now=now).get(
            customer.pk, 0.0
        )
    )
    rows = []
    for campaign in campaigns:
        model = campaign.uplift_models.filter(status=UpliftModelStatus.CHAMPION).first()
        if model is None:
            continue
        try:
            uplift = uplift_predict(model=model, customer_ids=[customer.pk], as_of=now)
        except (UpliftTrainingError, ValueError) as exc:
            rows.append((campaign.name, f"model {model.version} cannot predict: {exc}", "", ""))
            continue
        rules = {f"rule-{r.pk}": r for r in campaign.rules.select_related("offer")}
        evidence = action_evidence(model)
        for key in uplift.columns:
            change = float(uplift.iloc[0][key])
            rule = rules.get(key)
            worth = money(change * value - action_cost(rule)) if rule is not None else "—"
            shown = f"{change * 100:+.1f} pp"
            if key in evidence and not evidence[key].ranking_validated:
                shown += " (the action's average effect: the model's ranking is not validated)"
            rows.append((campaign.name, _action_label(model, key), shown, worth))
    if not rows:
        return format_html(
            "<em>{}</em>",
            "No campaign targets by uplift policy with a champion model, so no prediction.",
        )
    body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
    return format_html(
        '<table class="uplift-panel"><thead><tr><th>campaign</th><th>action</th>'
        "<th>predicted change in P(stays)</th><th>worth, net of the action's cost</th></tr>"
        '</thead><tbody>{}</tbody></table><p class="help">{} <a href="{}">Uplift models…</a></p>',
        body,
        "From each campaign's champion uplift model, with this customer's features as of now. "
        f"The policy gives an action only to customers its rule matches and only when it is "
        f"worth more than it costs; this "
        f"customer's value (revenue over the last 365 days) is {money(value)}.",
        reverse("admin:campaigns_upliftmodel_changelist"),
    )


def register() -> None:
    customer_panel_register(CustomerPanel("uplift", "Predicted uplift per action", uplift_panel))
