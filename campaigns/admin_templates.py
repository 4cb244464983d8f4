"""The message template admin: the change form with a live preview (a real customer of a
chosen rule, the rule's actual offer and a coupon code in the dispatch format) that updates
while staff type, the SMS length and segment count, a push notification's lengths against what
phones show, and a subject (title, for push and in-app) only where the channel has one.

The preview endpoint is a staff-only admin view that renders the posted, unsaved template
(campaigns.template_preview); the form calls it from a static script
(campaigns/static/campaigns/template_preview.js — the CSP allows no inline script).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from campaigns.models import ContactChannel, MessageTemplate, Rule
from campaigns.rendering import CHANNELS_WITH_SUBJECT, allowed_variable_names
from campaigns.template_preview import (
    PreviewInputError,
    TemplatePreview,
    TemplateRenderError,
    customer_by_reference,
    template_preview,
)


class MessageTemplateForm(forms.ModelForm):
    """The template's fields plus two that only choose what the preview shows."""

    preview_rule = forms.ModelChoiceField(
        queryset=Rule.objects.select_related("campaign").order_by("campaign__name", "position"),
        required=False,
        label="Preview with rule",
        help_text="The preview uses this rule's offer and one of its customers.",
    )
    image_url = forms.URLField(
        label="Image URL",
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text="Push and in-app: an optional image (https://).",
    )
    preview_customer = forms.CharField(
        required=False,
        label="Preview for customer",
        help_text="External id or id; empty: a customer of the rule's audience.",
    )

    class Meta:
        model = MessageTemplate
        fields = ["name", "channel", "subject", "body", "html_body", "deep_link", "image_url"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.initial.get("preview_rule"):
            self.initial["preview_rule"] = (
                Rule.objects.filter(template=self.instance).order_by("pk").first()
            )
        self.fields["body"].help_text += " Variables: " + ", ".join(allowed_variable_names())


def _preview_html(preview: TemplatePreview | None, error: str, url: str) -> SafeString:
    """The preview box; the script fills the same elements on every change."""
    subject = "" if preview is None or preview.subject is None else preview.subject
    sms = (preview.sms or {}) if preview is not None else {}
    push = (preview.push or {}) if preview is not None else {}
    link = preview.deep_link if preview is not None else ""
    warnings = " ".join(push.get("warnings", []))
    return format_html(
        '<div id="template-preview" data-url="{}">'
        '<p class="preview-meta" style="margin:0 0 .5em">{}</p>'
        '<p class="preview-subject"{}><strong class="preview-subject-label">{}</strong> '
        "<span>{}</span></p>"
        '<pre class="preview-text" style="white-space:pre-wrap;overflow-wrap:anywhere;'
        'margin:0 0 .5em">{}</pre>'
        '<p class="preview-link"{}><strong>Opens:</strong> <span>{}</span></p>'
        '<p class="preview-push"{}>{}</p>'
        '<p class="preview-push-warning errornote"{}>{}</p>'
        '<p class="preview-sms"{}>{}</p>'
        '<p class="preview-sms-warning errornote"{}>{}</p>'
        '<p class="preview-error errornote"{}>{}</p>'
        '<iframe class="preview-html" sandbox srcdoc="{}" '
        'style="width:100%;height:240px;border:1px solid #ccc"{}></iframe></div>',
        url,
        _meta(preview),
        "" if preview is not None and preview.subject is not None else " hidden",
        "Subject:" if preview is None or preview.channel == ContactChannel.EMAIL else "Title:",
        subject,
        preview.text if preview else "",
        "" if link else " hidden",
        link,
        "" if push else " hidden",
        push.get("describe", ""),
        "" if warnings else " hidden",
        warnings,
        "" if sms else " hidden",
        sms.get("describe", ""),
        "" if sms.get("warning") else " hidden",
        sms.get("warning", ""),
        "" if error else " hidden",
        error,
        preview.html if preview and preview.channel == ContactChannel.EMAIL else "",
        "" if preview and preview.channel == ContactChannel.EMAIL else " hidden",
    )


def _meta(preview: TemplatePreview | None) -> str:
    if preview is None:
        return ""
    text = f"For {preview.customer}, offer: {preview.offer}."
    return " ".join([text, *preview.notes])


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm
    list_display = ["name", "channel", "subject_line"]
    list_filter = ["channel"]
    search_fields = ["name", "subject", "body"]
    readonly_fields = ["preview"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "channel",
                    "subject",
                    "body",
                    "html_body",
                    "deep_link",
                    "image_url",
                ]
            },
        ),
        ("Preview", {"fields": ["preview_rule", "preview_customer", "preview"]}),
    ]

    class Media:
        js = ["campaigns/template_preview.js"]

    @admin.display(description="Subject")
    def subject_line(self, template: MessageTemplate) -> str:
        return template.subject if template.channel in CHANNELS_WITH_SUBJECT else "—"

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "preview/",
                self.admin_site.admin_view(require_POST(self.preview_view)),
                name="campaigns_messagetemplate_preview",
            )
        ]
        return own + super().get_urls()

    @admin.display(description="Preview (updates as you type)")
    def preview(self, template: MessageTemplate) -> SafeString:
        url = reverse("admin:campaigns_messagetemplate_preview")
        if not template.pk:
            return _preview_html(None, "", url)
        rule = Rule.objects.filter(template=template).order_by("pk").first()
        try:
            preview = template_preview(
                channel=template.channel,
                subject=template.subject,
                body=template.body,
                html_body=template.html_body,
                rule=rule,
                customer=None,
                now=timezone.now(),
                deep_link=template.deep_link,
                image_url=template.image_url,
            )
        except TemplateRenderError as exc:
            return _preview_html(None, str(exc), url)
        return _preview_html(preview, "", url)

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The posted (unsaved) template rendered for a real customer, as JSON."""
        if not self.has_view_or_change_permission(request):
            return _refusal("You do not have permission to preview message templates.", 403)
        data = request.POST
        channel = data.get("channel", "")
        if channel not in ContactChannel.values:
            return _refusal("Choose a channel to see a preview.", 400)
        try:
            rule = _posted_rule(data.get("preview_rule", ""))
            reference = data.get("preview_customer", "").strip()
            customer = customer_by_reference(reference=reference) if reference else None
            preview = template_preview(
                channel=channel,
                subject=data.get("subject", ""),
                body=data.get("body", ""),
                html_body=data.get("html_body", ""),
                rule=rule,
                customer=customer,
                now=timezone.now(),
                deep_link=data.get("deep_link", ""),
                image_url=data.get("image_url", ""),
            )
        except (PreviewInputError, TemplateRenderError) as exc:
            return _refusal(str(exc), 400)
        return JsonResponse(preview.to_json())


def _posted_rule(value: str) -> Rule | None:
    if not value:
        return None
    rule = (
        Rule.objects.select_related("campaign", "offer").filter(pk=int(value)).first()
        if value.isdigit()
        else None
    )
    if rule is None:
        raise PreviewInputError(f"Preview with rule: no rule with id {value!r}.")
    return rule


def _refusal(message: str, status: int) -> JsonResponse:
    return JsonResponse({"ok": False, "error": message}, status=status)
