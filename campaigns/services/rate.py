"""The relay's per-channel rate (CAMPAIGN_RATE_<CHANNEL> per minute), shared by every relay
process: a fixed one-minute window counted in a database row per channel and minute.

The database rather than Redis: every relay already holds a database connection, SQLite and
PostgreSQL both serialise the one UPDATE below, and the limit keeps holding while Redis is down.
A fixed window lets a burst of twice the rate straddle a minute boundary; providers' own limits
are per minute too, so that is the trade-off taken for one row and one statement per take.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest, Least

from campaigns.models import RelayRateWindow

# Windows older than this are deleted as new ones are taken (the table stays a few rows).
WINDOW_KEEP = timedelta(days=1)


def _window(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def relay_rate_take(*, channel: str, limit: int, wanted: int, now: datetime) -> int:
    """Reserve up to `wanted` sends of `channel` in the minute of `now`; returns how many the
    window still allowed (0 when `limit` is spent). Concurrent callers never together get more
    than `limit`: one UPDATE computes the grant and raises the count from the same old row (both
    SET expressions read the row before the update), and the row stays locked until commit."""
    if wanted <= 0 or limit <= 0:
        return 0
    window = _window(now)
    with transaction.atomic():
        old = RelayRateWindow.objects.filter(channel=channel, window_start__lt=window - WINDOW_KEEP)
        old.delete()
        RelayRateWindow.objects.bulk_create(
            [RelayRateWindow(channel=channel, window_start=window)], ignore_conflicts=True
        )
        row = RelayRateWindow.objects.filter(channel=channel, window_start=window)
        row.update(
            last_grant=Greatest(Least(Value(wanted), Value(limit) - F("used")), Value(0)),
            used=Greatest(Least(Value(limit), F("used") + Value(wanted)), F("used")),
        )
        return int(row.values_list("last_grant", flat=True).get())


def relay_rate_return(*, channel: str, count: int, now: datetime) -> None:
    """Give back reserved sends that did not reach the provider (nothing was due, the message
    was suppressed, or the channel was down), so other relays may use them this minute."""
    if count <= 0:
        return
    RelayRateWindow.objects.filter(channel=channel, window_start=_window(now)).update(
        used=Greatest(F("used") - Value(count), Value(0))
    )
