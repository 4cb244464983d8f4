"""Admin of the churn engine: risk tiers (rank shares or bands, applied at once), the model
registry (metrics, charts, drift, promote, roll back), scoring runs with tier counts and
drift tables, and the score history."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from common.svg import Bar, bar_chart, line_chart
from scoring.admin_forms import RiskTierForm, RiskTierFormSet, RiskTierRowForm
from scoring.display import (
    drift_table,
    percent,
    tier_colors,
    tier_counts_html,
    tier_label,
    tier_swatch,
)
from scoring.errors import ScoringError, TrainingError
from scoring.ml.distill import Student
from scoring.ml.drift import STATUS_WORDS
from scoring.models import (
    ChurnModel,
    CustomerScore,
    ModelStatus,
    RecommendationRun,
    RiskTier,
    RunStatus,
    ScoringRun,
)
from scoring.selectors import churn_model_active, scoring_run_latest
from scoring.services.tiers import tiers_reassign
from scoring.services.training import churn_model_activate, churn_model_rollback

HEADLINE = ("roc_auc", "pr_auc", "brier", "log_loss", "precision", "recall", "f1")


@admin.register(RiskTier)
class RiskTierAdmin(admin.ModelAdmin):
    """Tiers by severity; saving re-tiers the latest run at once and says who moved."""

    form = RiskTierForm
    list_display = ["name", "swatch", "mode", "share", "min_probability", "latest_run"]
    list_editable = ["mode", "share", "min_probability"]
    ordering = ["-severity"]
    actions = ["apply_now"]

    def get_changelist_formset(self, request: HttpRequest, **kwargs: Any) -> Any:
        return super().get_changelist_formset(request, formset=RiskTierFormSet, **kwargs)

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> Any:
        return RiskTierRowForm  # the formset checks the rows together

    @admin.display(description="Colour")
    def swatch(self, tier: RiskTier) -> SafeString:
        return tier_swatch(tier.name, {tier.name: tier.color})

    @admin.display(description="In latest run")
    def latest_run(self, tier: RiskTier) -> str:
        run = scoring_run_latest()
        if run is None:
            return "no run yet"
        n = run.tier_counts.get(tier.name, 0)
        total = sum(run.tier_counts.values())
        return f"{n:,} ({percent(n / total if total else None)})"

    def save_model(self, request: HttpRequest, obj: RiskTier, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        request._tiers_changed = True  # type: ignore[attr-defined]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        self._retier_if_changed(request)
        return response

    def response_change(self, request: HttpRequest, obj: RiskTier) -> HttpResponse:
        self._retier_if_changed(request)
        return super().response_change(request, obj)

    def response_add(self, request: HttpRequest, obj: RiskTier, *args: Any) -> HttpResponse:
        self._retier_if_changed(request)
        return super().response_add(request, obj, *args)

    def _retier_if_changed(self, request: HttpRequest) -> None:
        if getattr(request, "_tiers_changed", False):
            request._tiers_changed = False  # type: ignore[attr-defined]
            self._retier(request)

    def _retier(self, request: HttpRequest) -> None:
        try:
            result = tiers_reassign()
        except ScoringError as exc:
            self.message_user(request, f"Tiers saved; {exc}.", messages.INFO)
            return
        except ValueError as exc:
            self.message_user(request, f"Tiers not applied: {exc}.", messages.ERROR)
            return
        self.message_user(request, result.describe(), messages.SUCCESS)

    @admin.action(description="Apply the tiers to the latest scoring run now")
    def apply_now(self, request: HttpRequest, queryset: QuerySet[RiskTier]) -> None:
        self._retier(request)


def _metric_table(rows: list[tuple[str, dict[str, Any]]]) -> SafeString:
    head = format_html_join("", "<th>{}</th>", ((m,) for m in ("", *HEADLINE)))
    body = format_html_join(
        "",
        "<tr><th>{}</th>{}</tr>",
        (
            (
                name,
                format_html_join(
                    "",
                    "<td>{}</td>",
                    (
                        (f"{metrics[m]:.3f}" if isinstance(metrics.get(m), float) else "—",)
                        for m in HEADLINE
                    ),
                ),
            )
            for name, metrics in rows
        ),
    )
    return format_html(
        '<table class="metrics"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body
    )


@admin.register(ChurnModel)
class ChurnModelAdmin(admin.ModelAdmin):
    list_display = [
        "version",
        "status",
        "candidate",
        "pr_auc",
        "roc_auc",
        "brier",
        "training_rows",
        "created_at",
        "activated_at",
    ]
    list_filter = ["status", "candidate"]
    search_fields = ["version", "candidate"]
    actions = ["promote", "roll_back"]
    readonly_fields = [
        "version",
        "status",
        "candidate",
        "algorithm",
        "sampler",
        "threshold_shown",
        "label_shown",
        "window_shown",
        "training_rows",
        "positive_rate_shown",
        "metrics_table",
        "candidates_table",
        "champion_challenger",
        "charts",
        "latest_drift",
        "student_rules",
        "libraries_shown",
        "artifact_path",
        "artifact_sha256",
        "created_at",
        "activated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "version",
                    "status",
                    "candidate",
                    "algorithm",
                    "sampler",
                    "threshold_shown",
                ]
            },
        ),
        (
            "Training",
            {"fields": ["label_shown", "window_shown", "training_rows", "positive_rate_shown"]},
        ),
        (
            "Quality (out-of-fold)",
            {"fields": ["metrics_table", "candidates_table", "champion_challenger", "charts"]},
        ),
        ("Drift (latest scoring run with this model)", {"fields": ["latest_drift"]}),
        ("Readable student: the model as a few rules", {"fields": ["student_rules"]}),
        (
            "Provenance",
            {
                "fields": [
                    "libraries_shown",
                    "artifact_path",
                    "artifact_sha256",
                    "created_at",
                    "activated_at",
                    "notes",
                ]
            },
        ),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # models are trained (churn_train), never typed in

    @admin.display(description="Rules")
    def student_rules(self, model: ChurnModel) -> SafeString | str:
        """The distilled tree (scoring.ml.distill) as rules, riskiest first, and how closely
        it follows the model on customers it was not fitted to."""
        data = (model.reference or {}).get("student")
        if not data:
            return "— (no student: models trained before rules were distilled have none)"
        student = Student.from_dict(data)
        # The active model's rules are campaign segments (campaigns.admin_rules): a link opens
        # a new campaign with a rule on that segment (by URL name: scoring imports no campaigns).
        active = model.status == ModelStatus.ACTIVE
        add_campaign = reverse("admin:campaigns_campaign_add") if active else ""

        def use(leaf_id: int) -> SafeString | str:
            if not active:
                return "—"
            query = urlencode({"segment": f"{model.version}#{leaf_id}"})
            return format_html(
                '<a class="use-segment" href="{}?{}">use as a campaign segment</a>',
                add_campaign,
                query,
            )

        rows = format_html_join(
            "",
            '<tr class="student-rule" data-leaf="{}"><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td></tr>",
            (
                (
                    leaf.id,
                    student.rule_text(leaf),
                    f"{leaf.risk:.0%}",
                    f"{leaf.customers:,}",
                    use(leaf.id),
                )
                for leaf in sorted(student.leaves, key=lambda leaf: -leaf.risk)
            ),
        )
        fidelity, mine, teacher = student.fidelity, student.metrics, student.teacher_metrics

        def pct(values: Any, key: str) -> str:
            value = values.get(key)
            return "—" if value is None or value != value else f"{value:.0%}"

        def num(values: Any, key: str) -> str:
            value = values.get(key)
            return "—" if value is None or value != value else f"{value:.3f}"

        summary = format_html(
            "<p>A decision tree {} levels deep fitted to this model's churn probabilities on "
            "{} customers, checked on {} others it never saw: its risk follows the model's "
            "with correlation {}, and it puts {} of the model's riskiest tenth in its own "
            "riskiest group ({} of customers). On those customers the rules rank churners with "
            "ROC-AUC {} and PR-AUC {} (the model: {} and {}).</p>",
            student.depth,
            f"{student.rows.get('fit', 0):,}",
            f"{student.rows.get('test', 0):,}",
            num(fidelity, "correlation"),
            pct(fidelity, "top_decile_agreement"),
            pct(fidelity, "top_decile_selected_share"),
            num(mine, "roc_auc"),
            num(mine, "pr_auc"),
            num(teacher, "roc_auc"),
            num(teacher, "pr_auc"),
        )
        return format_html(
            '{}<table class="student"><thead><tr><th>Customers who…</th><th>churn risk</th>'
            "<th>customers (training data)</th><th>campaign</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            summary,
            rows,
        )

    def _metric(self, model: ChurnModel, name: str) -> str:
        value = model.metrics.get(name)
        return f"{value:.3f}" if isinstance(value, float) else "—"

    @admin.display(description="PR-AUC")
    def pr_auc(self, model: ChurnModel) -> str:
        return self._metric(model, "pr_auc")

    @admin.display(description="ROC-AUC")
    def roc_auc(self, model: ChurnModel) -> str:
        return self._metric(model, "roc_auc")

    @admin.display(description="Brier")
    def brier(self, model: ChurnModel) -> str:
        return self._metric(model, "brier")

    @admin.display(description="Selected model (calibrated)")
    def metrics_table(self, model: ChurnModel) -> SafeString:
        return _metric_table([(model.candidate, model.metrics)])

    @admin.display(description="Every candidate (before calibration)")
    def candidates_table(self, model: ChurnModel) -> SafeString:
        return _metric_table([(c["name"], c.get("metrics", {})) for c in model.candidates])

    @admin.display(description="Champion / challenger")
    def champion_challenger(self, model: ChurnModel) -> str:
        return model.holdout_metrics.get("decision", "—") + (
            f" (challenger PR-AUC {model.holdout_metrics.get('challenger_pr_auc', 0):.3f}"
            + (
                f", champion {model.holdout_metrics['champion_pr_auc']:.3f})"
                if isinstance(model.holdout_metrics.get("champion_pr_auc"), float)
                else ")"
            )
            if model.holdout_metrics
            else ""
        )

    @admin.display(description="Drift")
    def latest_drift(self, model: ChurnModel) -> SafeString:
        run = model.runs.filter(status="completed").order_by("-finished_at").first()
        if run is None:
            return format_html("<p>{}</p>", "Not scored yet: drift is measured by each run.")
        return format_html(
            "<p>Run {} as of {}.</p>{}",
            run.run_key,
            f"{run.as_of:%Y-%m-%d}",
            drift_table(run.drift),
        )

    @admin.display(description="Threshold")
    def threshold_shown(self, model: ChurnModel) -> str:
        return (
            f"{model.threshold:.1%}: a probability at or above it counts as churn for precision,"
            " recall and F1 (chosen out-of-fold)"
        )

    @admin.display(description="Churn rate in training")
    def positive_rate_shown(self, model: ChurnModel) -> str:
        return f"{model.positive_rate:.1%}"

    @admin.display(description="Label")
    def label_shown(self, model: ChurnModel) -> str:
        label = model.label_definition or {}
        if label.get("kind") == "behaviour":
            return (
                f"Churned = no order in the {label.get('horizon_days')} days after the cutoff "
                f"(behaviour label; last cutoff {str(label.get('as_of', ''))[:10]})"
            )
        if label.get("kind") == "file":
            return f"Column {label.get('label', '?')} of a file (trained from a file)"
        if label.get("attribute"):
            return f"Customer attribute {label['attribute']}"
        return ", ".join(f"{k}: {v}" for k, v in label.items()) or "—"

    @admin.display(description="Training window")
    def window_shown(self, model: ChurnModel) -> str:
        window = model.training_window or {}
        parts = [f"{k.replace('_', ' ')} {str(v)[:10]}" for k, v in window.items()]
        return " · ".join(parts) or "—"

    @admin.display(description="Library versions")
    def libraries_shown(self, model: ChurnModel) -> str:
        return " · ".join(f"{k} {v}" for k, v in (model.library_versions or {}).items()) or "—"

    @admin.display(description="Charts")
    def charts(self, model: ChurnModel) -> SafeString:
        pr = model.metrics.get("pr_curve") or []
        calibration = model.metrics.get("calibration_curve") or []
        selected: dict[str, Any] = next(
            (c for c in model.candidates if c["name"] == model.candidate), {}
        )
        importances = selected.get("permutation_importance") or {}
        if isinstance(importances, dict):
            ranked = sorted(importances.items(), key=lambda kv: -_importance_value(kv[1]))[:12]
            bars = [(name, _importance_value(value)) for name, value in ranked]
        else:
            bars = []
        charts = [
            line_chart(
                [("precision-recall", [(r, p) for r, p in pr])],
                title="Precision–recall (out-of-fold)",
                x_label="recall",
                y_label="precision",
                x_range=(0.0, 1.0),
                y_range=(0.0, 1.0),
            ),
            line_chart(
                [
                    (
                        "calibrated model",
                        [
                            (b["mean_predicted"], b["fraction_positive"])
                            for b in calibration
                            if b.get("count")
                        ],
                    )
                ],
                title="Calibration (out-of-fold)",
                x_label="mean predicted probability",
                y_label="observed churn rate",
                x_range=(0.0, 1.0),
                y_range=(0.0, 1.0),
                diagonal=True,
            ),
            bar_chart(
                [Bar(name, value) for name, value in bars],
                title="Permutation importance",
                value_label="drop in PR-AUC",
            ),
        ]
        return format_html_join(
            "",
            '<div style="display:inline-block;margin:4px">{}</div>',
            ((mark_safe(c),) for c in charts),  # common.svg escapes every text it draws
        )

    @admin.action(description="Promote the selected model to active")
    def promote(self, request: HttpRequest, queryset: QuerySet[ChurnModel]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to promote.", messages.ERROR)
            return
        previous = churn_model_active()
        try:
            model = churn_model_activate(model=queryset.get())
        except TrainingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        retired = f" (retired {previous.version})" if previous and previous != model else ""
        self.log_change(request, model, f"Promoted to active: {model.version}{retired}.")
        self.message_user(request, f"Model {model.version} is now active.", messages.SUCCESS)

    @admin.action(description="Roll back to the previously active model")
    def roll_back(self, request: HttpRequest, queryset: QuerySet[ChurnModel]) -> None:
        try:
            model = churn_model_rollback()
        except TrainingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.log_change(request, model, f"Rolled back: {model.version} is active again.")
        self.message_user(
            request, f"Rolled back: {model.version} is active again.", messages.SUCCESS
        )


def _importance_value(value: Any) -> float:
    if isinstance(value, dict):
        return float(value.get("mean", 0.0))
    return float(value or 0.0)


def _count_shown(field: str, description: str) -> Any:
    """A read-only admin column of a count field, with thousands separators."""

    @admin.display(description=description)
    def shown(self: Any, obj: Any) -> str:
        value = getattr(obj, field)
        return "—" if value is None else f"{value:,}"

    return shown


@admin.register(ScoringRun)
class ScoringRunAdmin(admin.ModelAdmin):
    list_display = [
        "run_key",
        "model",
        "as_of",
        "status",
        "customers_scored_shown",
        "tiers",
        "drift_status",
        "started_at",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["run_key", "model__version"]
    readonly_fields = (
        "run_key",
        "kind",
        "model",
        "as_of",
        "status",
        "customers_total_shown",
        "customers_scored_shown",
        "customers_not_scorable_shown",
        "tiers",
        "reasons_policy",
        "drift_report",
        "chunks_total_shown",
        "chunks_done_shown",
        "duration",
        "error",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a run is a record: its page is for reading

    # Counts with thousands separators ("4,372 customers", not "4372").
    customers_total_shown = _count_shown("customers_total", "Customers total")
    customers_scored_shown = _count_shown("customers_scored", "Customers scored")
    customers_not_scorable_shown = _count_shown("customers_not_scorable", "Customers not scorable")
    chunks_total_shown = _count_shown("chunks_total", "Chunks total")
    chunks_done_shown = _count_shown("chunks_done", "Chunks done")

    @admin.display(description="Tiers")
    def tiers(self, run: ScoringRun) -> SafeString:
        return tier_counts_html(run.tier_counts, run.customers_not_scorable)

    @admin.display(description="Took")
    def duration(self, run: ScoringRun) -> str:
        seconds = run.timings.get("seconds")
        if seconds is None:
            return "still running" if run.status == RunStatus.RUNNING else "—"
        return f"{seconds:,.1f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"

    @admin.display(description="Who got reasons")
    def reasons_policy(self, run: ScoringRun) -> str:
        """In words: from which probability the chunks explained customers, how many the finish
        explained after them, and this run's at-risk bound (where the next run starts)."""
        chunks = (
            "the chunks explained customers at or above the second tier's probability bound"
            if run.reasons_from is None
            else f"the chunks explained customers with a churn risk of at least "
            f"{run.reasons_from:.1%} (just below the last run's at-risk bound)"
        )
        later = run.timings.get("explained_at_finish")
        finish = "" if later is None else f"; the finish explained {later:,} more"
        bound = (
            ""
            if run.at_risk_from is None
            else f". Lowest risk above the least severe tier: {run.at_risk_from:.1%}"
        )
        return f"{chunks[0].upper()}{chunks[1:]}{finish}{bound}."

    @admin.display(description="Drift")
    def drift_status(self, run: ScoringRun) -> str:
        return STATUS_WORDS.get(run.drift.get("status", ""), "—") if run.drift else "—"

    @admin.display(description="Drift against training")
    def drift_report(self, run: ScoringRun) -> SafeString:
        return drift_table(run.drift)


class TierFilter(admin.SimpleListFilter):
    """Tiers by severity (most severe first), then "not scorable" — not alphabetically."""

    title = "tier"
    parameter_name = "tier"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, tier_label(name)) for name in tier_colors()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(tier=self.value()) if self.value() else queryset


@admin.register(CustomerScore)
class CustomerScoreAdmin(admin.ModelAdmin):
    # The run is a filter, not a column: the table fits a 1,280 px screen beside the filters.
    list_display = ["customer", "churn_risk", "tier_shown", "reasons_text", "scored_at"]
    list_filter = [TierFilter, "scorable", "run"]
    search_fields = ["customer__external_id", "customer__email"]
    raw_id_fields = ["customer", "run"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        self._colors = tier_colors()  # one query per page, not per row
        return super().changelist_view(request, extra_context)

    @admin.display(description="Churn risk", ordering="probability")
    def churn_risk(self, score: CustomerScore) -> str:
        return percent(score.probability) if score.scorable else "not scorable"

    @admin.display(description="Tier", ordering="tier")
    def tier_shown(self, score: CustomerScore) -> SafeString:
        return tier_swatch(score.tier, getattr(self, "_colors", None))

    @admin.display(description="Reasons")
    def reasons_text(self, score: CustomerScore) -> str | SafeString:
        if score.scorable:
            return "; ".join(score.reasons)
        # The list shows the first clause ("no completed order before …"); hover for the rest.
        reason = score.not_scorable_reason
        return format_html('<span title="{}">{}</span>', reason, reason.split(":")[0])


@admin.register(RecommendationRun)
class RecommendationRunAdmin(admin.ModelAdmin):
    """Read-only: each refresh of the product recommendations (the latest is in use)."""

    list_display = ["created_at", "version", "method", "customers", "products", "lines", "seconds"]
    readonly_fields = [
        "version",
        "method",
        "as_of",
        "customers",
        "products",
        "lines",
        "fallback_product_ids",
        "seconds",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
