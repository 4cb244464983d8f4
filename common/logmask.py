"""Email addresses and phone numbers masked in every log line: the message, its arguments and
the exception text (a database error quotes the row: `DETAIL: Key (email)=(jane@x.org)`).

`PersonalDataMaskFilter` sits on every handler of settings.LOGGING and on the Celery worker's
handlers (retention/celery.py), so whatever logger a line comes from, it is masked once, at the
handler, before it is written anywhere. See docs/privacy.md.
"""

from __future__ import annotations

import logging
import re

# Wider than the addresses we accept (a log line masks too much rather than too little), but the
# domain needs a dot: `celery@worker-1` (a Celery node name) is not an address.
EMAIL = re.compile(
    r"(?P<first>[A-Za-z0-9_%+\-])[A-Za-z0-9._%+\-]*@(?P<domain>[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)"
)

# Dates and times come first in the alternation, so `2026-11-29 23:44` and `2026-11-29` stay
# readable; a phone number is then a run of at least 7 digits, optionally led by `+`, its digits
# separated by at most two of space, dash and parentheses (`+33 6 12 34 56 78`,
# `+1 (555) 123-4567`, `0612345678`). Not after a letter, digit, `+` or `.` and not before a
# letter or `.digit`, so ids like `o123`, versions and fractions (0.12345678) are left alone.
DATE_OR_PHONE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)"
    r"|(?<![\w+.])(?P<phone>\+?\(?\d(?:[ \-()]{0,2}\d){6,})(?!\w|\.\d)"
)

KEPT_DIGITS = 2  # the last two digits, so a support person can still tell two numbers apart


def _mask_email(match: re.Match[str]) -> str:
    return f"{match['first']}***@{match['domain']}"


def _mask_phone(match: re.Match[str]) -> str:
    if match["date"]:
        return match["date"]
    phone = match["phone"]
    digits = sum(c.isdigit() for c in phone)
    out, seen = [], 0
    for char in phone:
        if char.isdigit():
            seen += 1
            char = char if seen > digits - KEPT_DIGITS else "*"
        out.append(char)
    return "".join(out)


def mask_personal_data(text: str) -> str:
    """`jane.doe@example.com` → `j***@example.com`; `+33 6 12 34 56 78` → `+** * ** ** ** 78`."""
    if not text:
        return text
    return DATE_OR_PHONE.sub(_mask_phone, EMAIL.sub(_mask_email, text))


class PersonalDataMaskFilter(logging.Filter):
    """Rewrites the record in place (never drops it): the merged message (msg % args), the
    formatted exception and the stack text are masked; args are emptied so no handler or
    formatter can merge the unmasked values back in."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: keep its parts, masked, readable
            message = f"{record.msg} {record.args}"
        record.msg, record.args = mask_personal_data(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_personal_data(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_personal_data(record.stack_info)
        return True


def handlers_mask(logger: logging.Logger) -> None:
    """Put the filter on each of `logger`'s handlers that lacks it (Celery's own handlers)."""
    for handler in logger.handlers:
        if not any(isinstance(f, PersonalDataMaskFilter) for f in handler.filters):
            handler.addFilter(PersonalDataMaskFilter())
