"""Amounts as people read them: every amount in RETENTION_CURRENCY, formatted by Babel
("€1,234.56", "£0.05", "¥1,235"), so the admin, the cycle summary and the API agree on the
currency and its decimals. What a campaign *costs* is defined once in campaigns.uplift.costs."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import format_currency
from django.conf import settings

# Babel's English (UK) formats: symbol first, comma thousands, the currency's own decimals.
MONEY_LOCALE = "en_GB"


def currency() -> str:
    """The ISO 4217 code of every amount (settings.RETENTION_CURRENCY)."""
    return str(settings.RETENTION_CURRENCY)


def money(amount: Any, *, signed: bool = False) -> str:
    """An amount with its currency, "€1,234.56"; "—" for no amount (None, "", not a number).
    `signed`: a leading + on positive amounts (differences)."""
    if amount is None or amount == "":
        return "—"
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return "—"
    if not value.is_finite():
        return "—"
    text = format_currency(value, currency(), locale=MONEY_LOCALE)
    return f"+{text}" if signed and value > 0 else text
