"""Callback pages: "My callbacks" for agents (their own tasks only, a call sheet on each, an
outcome per call, read-only once done with an explicit correction) and all callbacks for team
leads (reassign, reschedule; outcomes come from the agents)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.messages import SUCCESS
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from campaigns.admin_links import PermittedLinksAdmin, admin_link
from campaigns.callsheet import callback_call_sheet, customer_local_time
from campaigns.models import CallbackOutcome, CallbackStatus, CallbackTask, MyCallback
from campaigns.services.callbacks import (
    callback_task_correct_outcome,
    callback_task_record_outcome,
)
from campaigns.services.relay import reason_text
from scoring.selectors import customer_latest_reasons


def _is_done(task: CallbackTask | None) -> bool:
    return task is not None and task.status == CallbackStatus.DONE


@admin.register(CallbackTask)
class CallbackTaskAdmin(PermittedLinksAdmin):
    """All callbacks, for team leads: reassign and reschedule open ones. The outcome is the
    agent's to record (My callbacks), so it is shown, not edited, here; done tasks are read-only."""

    list_display = ["customer", "assigned_agent", "due_at", "attempts", "status", "outcome"]
    list_filter = ["status", "outcome", "assigned_agent"]
    list_select_related = ["customer", "assigned_agent"]
    search_fields = ["customer__external_id", "customer__name"]
    fields = [
        "customer_link",
        "intervention_link",
        "assigned_agent",
        "due_at",
        "status",
        "attempts",
        "outcome",
        "notes",
        "completed_at",
    ]
    readonly_fields = [
        "customer_link",
        "intervention_link",
        "status",
        "attempts",
        "outcome",
        "completed_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the relay creates callbacks

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _is_done(obj) and super().has_change_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        # Only a team lead (who may view every callback) sees everyone's; anyone else who
        # reaches this page sees their own tasks, never a colleague's.
        if request.user.has_perm("campaigns.view_callbacktask"):
            return queryset
        return queryset.filter(assigned_agent=request.user)

    @admin.display(description="Customer")
    def customer_link(self, task: CallbackTask) -> Any:
        return admin_link(task.customer)

    @admin.display(description="Intervention")
    def intervention_link(self, task: CallbackTask) -> Any:
        intervention = task.intervention
        return admin_link(intervention, f"{intervention.campaign} (#{intervention.pk})")


def _reasons_html(reasons: list[Any]) -> SafeString:
    if not reasons:
        return format_html("<em>{}</em>", "—")
    return format_html(
        "<ul style='margin:0;padding-left:1em'>{}</ul>",
        format_html_join("", "<li>{}</li>", ((reason_text(r),) for r in reasons)),
    )


class OutcomeForm(forms.ModelForm):
    """One call's outcome: left empty, only the notes are saved (e.g. while still dialling)."""

    outcome = forms.ChoiceField(
        choices=[("", "— not called yet —"), *CallbackOutcome.choices],
        required=False,
        label="Outcome of this call",
        help_text="“No answer” keeps the task open and schedules the next call.",
    )

    class Meta:
        model = MyCallback
        fields = ["outcome", "notes"]


class CorrectionForm(forms.Form):
    outcome = forms.ChoiceField(choices=CallbackOutcome.choices, label="Correct outcome")
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Why the recorded outcome was wrong",
        help_text="Kept in the log next to the original outcome.",
    )


@admin.register(MyCallback)
class MyCallbackAdmin(admin.ModelAdmin):
    """An agent's own callbacks, open ones first, then due first and riskiest first. Each page
    is a call sheet (campaigns.callsheet); an outcome is logged per call
    (campaigns.services.callbacks), and a done task changes only by a logged correction."""

    change_form_template = "admin/campaigns/mycallback/change_form.html"
    form = OutcomeForm
    list_display = [
        "customer_name",
        "phone",
        "local_time",
        "due_at",
        "risk",
        "offer",
        "reasons",
        "attempts",
        "status",
        "outcome",
    ]
    list_display_links = ["customer_name"]
    list_filter = ["status"]
    fields = ["outcome", "notes"]
    # Open tasks (never completed) first, then due first and riskiest first.
    ordering = [
        F("completed_at").asc(nulls_first=True),
        "due_at",
        "-intervention__churn_probability",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .filter(assigned_agent=request.user)
            .select_related("customer", "intervention__offer")
        )

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        found = customer_latest_reasons(
            customer_ids=[t.customer_id for t in changelist.result_list]
        )
        for task in changelist.result_list:
            task.latest_reasons = found.get(task.customer_id, [])
        return changelist

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _is_done(obj) and super().has_change_permission(request, obj)

    @admin.display(description="Customer")
    def customer_name(self, task: CallbackTask) -> str:
        return str(task.customer)

    @admin.display(description="Phone")
    def phone(self, task: CallbackTask) -> str:
        return task.customer.phone

    @admin.display(description="Their local time")
    def local_time(self, task: CallbackTask) -> str:
        return customer_local_time(time_zone=task.customer.time_zone, now=timezone.now())

    @admin.display(description="Risk", ordering="intervention__churn_probability")
    def risk(self, task: CallbackTask) -> str:
        return f"{task.intervention.churn_probability:.0%} ({task.intervention.risk_tier})"

    @admin.display(description="Offer to make")
    def offer(self, task: CallbackTask) -> str:
        offer = task.intervention.offer
        return f"{offer.name} — {offer.describe()}" if offer else "—"

    @admin.display(description="Why at risk")
    def reasons(self, task: CallbackTask) -> SafeString:
        return _reasons_html(getattr(task, "latest_reasons", []))

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/correct/",
                self.admin_site.admin_view(self.correct_view),
                name="campaigns_mycallback_correct",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        task = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if task is not None:
            extra["title"], extra["subtitle"] = f"Call {task.customer}", ""
            extra["sheet"] = callback_call_sheet(task=task)
            extra["task_done"] = _is_done(task)
            extra["may_correct"] = _is_done(task) and super().has_change_permission(request, task)
        return super().change_view(request, object_id, form_url, extra)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        outcome = form.cleaned_data.get("outcome")
        if not outcome:
            obj.save(update_fields=["notes"])
            return
        callback_task_record_outcome(task=obj, outcome=outcome, notes=obj.notes, agent=request.user)
        if obj.status == CallbackStatus.DONE:
            self.message_user(
                request, f"{obj.customer}: {obj.get_outcome_display()}. Task done.", SUCCESS
            )
        else:
            due = obj.due_at.astimezone(timezone.get_current_timezone())
            self.message_user(
                request,
                f"{obj.customer}: no answer (call {obj.attempts} of "
                f"{settings.CALLBACK_RETRY_ATTEMPTS}). Rescheduled: call again at "
                f"{due:%Y-%m-%d %H:%M} {due.tzname()}.",
                SUCCESS,
            )

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        # Our own message says what happened to the task; skip the generic "was changed".
        if "_continue" in request.POST:
            return HttpResponseRedirect(request.path)
        return HttpResponseRedirect(reverse("admin:campaigns_mycallback_changelist"))

    def correct_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        task = self.get_object(request, object_id)
        if task is None:  # not one of this user's callbacks
            raise PermissionDenied
        if not _is_done(task) or not super().has_change_permission(request, task):
            raise PermissionDenied
        form = CorrectionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                callback_task_correct_outcome(
                    task=task,
                    outcome=form.cleaned_data["outcome"],
                    reason=form.cleaned_data["reason"],
                    agent=request.user,
                )
            except ValueError as exc:
                form.add_error("outcome", str(exc))
            else:
                self.message_user(
                    request,
                    f"Outcome corrected to “{task.get_outcome_display()}”; logged.",
                    SUCCESS,
                )
                change = reverse("admin:campaigns_mycallback_change", args=[task.pk])
                return HttpResponseRedirect(change)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": task,
            "title": f"Correct the outcome: {task.customer}",
            "form": form,
        }
        return TemplateResponse(request, "admin/campaigns/mycallback/correct.html", context)
