"""Number formats of the campaign pages (uplift, summary, preview): rates, differences,
p-values, money with its currency."""

from __future__ import annotations

from typing import Any

from django import template

from campaigns.money import currency
from campaigns.money import money as money_text
from campaigns.uplift.costs import ROI_BASIS

register = template.Library()


def _number(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


@register.filter
def pct(value: Any) -> str:
    """0.1234 → 12.3%"""
    number = _number(value)
    return "—" if number is None else f"{number * 100:.1f}%"


@register.filter
def pp(value: Any) -> str:
    """0.0123 → +1.23 pp (a difference of two rates, in percentage points)"""
    number = _number(value)
    return "—" if number is None else f"{number * 100:+.2f} pp"


@register.filter
def signed_pct(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{number * 100:+.1f}%"


@register.filter
def money(value: Any) -> str:
    """1234.5 → €1,234.50 (settings.RETENTION_CURRENCY; campaigns.money)"""
    return money_text(value)


@register.filter
def signed_money(value: Any) -> str:
    """A difference of amounts: 3.5 → +€3.50"""
    return money_text(value, signed=True)


@register.filter
def pvalue(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "—"
    return "< 0.001" if number < 0.001 else f"{number:.3f}"


@register.filter
def count(value: Any) -> str:
    """30613 → 30,613"""
    number = _number(value)
    return "—" if number is None else f"{int(number):,}"


@register.filter
def seconds(value: Any) -> str:
    """12.345 → 12.3 s; 125 → 2 min 5 s"""
    number = _number(value)
    if number is None:
        return "—"
    if number < 60:
        return f"{number:.1f} s"
    minutes, rest = divmod(round(number), 60)
    return f"{minutes} min {rest} s"


@register.simple_tag
def currency_code() -> str:
    """The ISO code of every amount: EUR"""
    return currency()


@register.simple_tag
def roi_basis() -> str:
    """The ROI line's definition: ROI = (incremental revenue − cost) / cost, where cost = …"""
    return ROI_BASIS


@register.filter
def label(code: Any) -> str:
    """A stored code in words: held_out → "Held out (control: nothing sent)", no_address → "No
    address for the channel" (arms, statuses, suppression and failure reasons, channels)."""
    from campaigns.models import (
        Arm,
        ContactChannel,
        FailureReason,
        InterventionStatus,
        SuppressionReason,
    )

    for choices in (Arm, InterventionStatus, SuppressionReason, FailureReason, ContactChannel):
        if code in choices.values:
            return str(choices(code).label)
    return str(code).replace("_", " ").capitalize()
