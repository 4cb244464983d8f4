"""A message template rendered for one real customer, as a rule would send it: the rule's
actual offer, a coupon code in the format dispatch issues, the customer's latest churn reasons,
their unsubscribe link. Reads only; nothing is written (no coupon, no intervention).

The context comes from campaigns.rendering.message_context, the builder the relay uses, so the
preview cannot show a variable the sent message would not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from campaigns.models import PUSH_LIKE_CHANNELS, ContactChannel, Intervention, Offer, Rule
from campaigns.push_text import push_length
from campaigns.rendering import (
    CHANNELS_WITH_SUBJECT,
    TemplateRenderError,
    message_context,
    message_render,
    product_context,
    template_validate,
)
from campaigns.rules import rule_spec
from campaigns.selectors import rules_prefilter
from campaigns.services.dispatch import coupon_code_example
from campaigns.services.relay import reason_text
from campaigns.services.responses import unsubscribe_url
from campaigns.sms import sms_length
from customers.models import Customer
from scoring.selectors import customer_latest_reasons, customer_recommended_products


class PreviewInputError(ValueError):
    """The customer or rule asked for does not exist; the message says which."""


def customer_by_reference(*, reference: str) -> Customer:
    """A customer by external id, else by database id ("C-1001" or "42")."""
    text = reference.strip()
    found = Customer.objects.filter(external_id=text).first()
    if found is None and text.isdigit():
        found = Customer.objects.filter(pk=int(text)).first()
    if found is None:
        raise PreviewInputError(f"No customer with external id or id {text!r}.")
    return found


def rule_audience_customer(*, rule: Rule) -> Customer | None:
    """A real customer of the rule's audience: the latest one it took (treated first), else
    the riskiest scored customer inside its tier and probability conditions."""
    taken = (
        Intervention.objects.filter(rule=rule)
        .order_by("-arm", "-created_at")  # "treatment" sorts after "control"
        .select_related("customer")
        .first()
    )
    if taken is not None:
        return taken.customer
    return (
        Customer.objects.filter(rules_prefilter([rule_spec(rule)]), erased=False)
        .order_by("-churn_probability", "pk")
        .first()
    )


@dataclass(frozen=True)
class TemplatePreview:
    channel: str
    subject: str | None  # None: the channel has no subject line
    text: str
    html: str
    customer: str
    offer: str
    notes: list[str] = field(default_factory=list)
    sms: dict[str, Any] | None = None
    # Push and in-app: the rendered deep link, and (push) lengths against the platforms' limits.
    deep_link: str = ""
    push: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "channel": self.channel,
            "subject": self.subject,
            "text": self.text,
            "html": self.html if self.channel == ContactChannel.EMAIL else "",
            "customer": self.customer,
            "offer": self.offer,
            "notes": self.notes,
            "sms": self.sms,
            "deep_link": self.deep_link,
            "push": self.push,
        }


def _offer_text(offer: Offer | None) -> str:
    if offer is None:
        return "no offer"
    description = offer.describe()
    return f"{offer.name} ({description})" if description else offer.name


def template_preview(
    *,
    channel: str,
    subject: str,
    body: str,
    html_body: str,
    rule: Rule | None,
    customer: Customer | None,
    now: datetime,
    deep_link: str = "",
    image_url: str = "",
) -> TemplatePreview:
    """Render the template parts for `customer` (else one of the rule's audience) with the
    rule's offer. Raises TemplateRenderError for a template that cannot render."""
    notes: list[str] = []
    if customer is None and rule is not None:
        customer = rule_audience_customer(rule=rule)
        if customer is None:
            notes.append("No customer matches this rule yet: showing an empty name.")
    offer = rule.offer if rule is not None else None
    if rule is None:
        notes.append("Choose a rule to see its offer and one of its customers.")
    coupon, expires = "", ""
    if offer is not None and offer.issues_coupon:
        coupon = coupon_code_example()
        expires = f"{now + timedelta(days=offer.validity_days):%Y-%m-%d}"
    reasons = customer_latest_reasons(customer_ids=[customer.pk]) if customer else {}
    context = message_context(
        customer_name=customer.name if customer else "",
        campaign=rule.campaign.name if rule is not None else "",
        offer=offer,
        coupon_code=coupon,
        coupon_expires=expires,
        unsubscribe_url=unsubscribe_url(customer_id=customer.pk) if customer else "",
        reasons=[reason_text(r) for r in reasons.get(customer.pk, [])] if customer else [],
        recommended_products=[
            product_context(p)
            for p in customer_recommended_products(
                customer_ids=[customer.pk], limit=settings.RECOMMENDATIONS_PER_MESSAGE
            ).get(customer.pk, [])
        ]
        if customer
        else [],
    )
    has_subject = channel in CHANNELS_WITH_SUBJECT
    push_like = channel in PUSH_LIKE_CHANNELS
    for source in (subject if has_subject else "", body, html_body, deep_link if push_like else ""):
        template_validate(source=source)  # what saving would refuse, the preview shows
    rendered = message_render(
        subject=subject if has_subject else "", body=body, html_body=html_body, context=context
    )
    length = sms_length(rendered.text) if channel == ContactChannel.SMS else None
    link = (
        message_render(subject="", body=deep_link, html_body="", context=context).text
        if push_like and deep_link
        else ""
    )
    push = None
    if channel == ContactChannel.PUSH:
        sized = push_length(
            title=rendered.subject, body=rendered.text, deep_link=link, image_url=image_url
        )
        push = {
            "title_characters": sized.title_characters,
            "body_characters": sized.body_characters,
            "payload_bytes": sized.payload_bytes,
            "describe": sized.describe(),
            "warnings": sized.warnings,
        }
    return TemplatePreview(
        channel=channel,
        subject=rendered.subject if has_subject else None,
        text=rendered.text,
        html=rendered.html,
        customer=f"{customer} ({customer.external_id})" if customer else "no customer",
        offer=_offer_text(offer),
        notes=notes,
        sms=None
        if length is None
        else {
            "encoding": length.encoding,
            "characters": length.characters,
            "segments": length.segments,
            "describe": length.describe(),
            "warning": length.warning,
        },
        deep_link=link,
        push=push,
    )


__all__ = [
    "PreviewInputError",
    "TemplatePreview",
    "TemplateRenderError",
    "customer_by_reference",
    "rule_audience_customer",
    "template_preview",
]
