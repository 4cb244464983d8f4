"""What an agent reads before and during a callback: who, their local time, why they are at
risk, the offer and the coupon code to read out, the call script (the rule's template rendered
for this customer) and their last orders. A read: it writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone

from campaigns.models import CallbackTask, Coupon, Response
from campaigns.rendering import TemplateRenderError
from campaigns.services.callbacks import callback_outcomes_logged
from campaigns.services.relay import intervention_message, reason_text
from customers.models import Order
from scoring.selectors import customer_latest_reasons

LAST_ORDERS = 5  # what an agent can take in while dialling
TOP_REASONS = 3


@dataclass(frozen=True)
class CallSheet:
    name: str
    phone: str
    local_time: str  # e.g. "Tue 14:05 (Europe/Paris)"
    risk: str  # e.g. "82% (critical)"
    reasons: list[str]
    offer: str
    coupon_code: str
    coupon_expires: str
    script_subject: str
    script: str
    script_problem: str  # why there is no script, when there is none
    orders: list[Order]
    attempts_text: str  # e.g. "Call 2 of 3"
    log: list[Response]


def customer_local_time(*, time_zone: str, now: datetime) -> str:
    try:
        zone = ZoneInfo(time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return f"{now:%a %H:%M} UTC (the customer's time zone {time_zone!r} is unknown)"
    return f"{now.astimezone(zone):%a %H:%M} ({zone.key})"


def _script(task: CallbackTask, reasons: list[str]) -> tuple[str, str, str]:
    """(subject, text, problem) of the call script."""
    if task.intervention.template is None:
        return "", "", "The rule has no call script template: make the offer in your own words."
    try:
        message = intervention_message(intervention=task.intervention, reasons=reasons)
    except TemplateRenderError as exc:
        return "", "", f"The call script template cannot be rendered: {exc}"
    return message.subject, message.text, ""


def _attempts_text(task: CallbackTask) -> str:
    allowed = settings.CALLBACK_RETRY_ATTEMPTS
    if task.status == "done":
        return f"{task.attempts} call{'s' if task.attempts != 1 else ''} made; done"
    return f"Call {task.attempts + 1} of {allowed}"


def callback_call_sheet(*, task: CallbackTask, now: datetime | None = None) -> CallSheet:
    now = now or timezone.now()
    intervention = task.intervention
    customer = task.customer
    reasons = [
        reason_text(r)
        for r in customer_latest_reasons(customer_ids=[customer.pk]).get(customer.pk, [])
    ][:TOP_REASONS]
    offer = intervention.offer
    coupon = Coupon.objects.filter(intervention=intervention).first()
    subject, script, problem = _script(task, reasons)
    return CallSheet(
        name=customer.name or customer.external_id,
        phone=customer.phone,
        local_time=customer_local_time(time_zone=customer.time_zone, now=now),
        risk=f"{intervention.churn_probability:.0%} ({intervention.risk_tier or 'no tier'})",
        reasons=reasons,
        offer=f"{offer.name} — {offer.describe()}" if offer else "",
        coupon_code=coupon.code if coupon else "",
        coupon_expires=f"{coupon.expires_at:%Y-%m-%d}" if coupon else "",
        script_subject=subject,
        script=script,
        script_problem=problem,
        orders=list(Order.objects.filter(customer=customer).order_by("-placed_at")[:LAST_ORDERS]),
        attempts_text=_attempts_text(task),
        log=callback_outcomes_logged(task=task),
    )
