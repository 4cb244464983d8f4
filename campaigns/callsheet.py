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
from campaigns.suppression import is_quiet_hour
from customers.models import Order
from scoring.selectors import customer_latest_reasons

LAST_ORDERS = 5  # what an agent can take in while dialling
TOP_REASONS = 3


@dataclass(frozen=True)
class CallSheet:
    name: str
    phone: str
    local_time: str  # e.g. "Tue 14:05 (Europe/Paris)"
    local_time_warning: str  # set inside the customer's quiet hours
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


def _local(time_zone: str, now: datetime) -> tuple[datetime | None, str]:
    try:
        zone = ZoneInfo(time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return None, f"{now:%a %H:%M} UTC (the customer's time zone {time_zone!r} is unknown)"
    local = now.astimezone(zone)
    return local, f"{local:%a %H:%M} ({zone.key})"


def customer_local_time(*, time_zone: str, now: datetime) -> str:
    """The customer's wall clock, e.g. "Tue 14:05 (Europe/Paris)"."""
    return _local(time_zone, now)[1]


def _quiet_warning(local: datetime | None) -> str:
    start, end = settings.CAMPAIGN_QUIET_HOURS
    if local is None or not is_quiet_hour(local.hour, start=start, end=end):
        return ""
    return (
        f"It is {local:%H:%M} there, inside quiet hours ({start}:00 to {end}:00): "
        f"better call after {end}:00 their time."
    )


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
    local, local_text = _local(customer.time_zone, now)
    return CallSheet(
        name=customer.name or customer.external_id,
        phone=customer.phone,
        local_time=local_text,
        local_time_warning=_quiet_warning(local),
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
