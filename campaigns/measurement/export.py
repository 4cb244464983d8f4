"""The campaign's assignment log with outcomes as CSV: every intervention of both arms, the rows
left out of the analysis flagged, streamed in chunks (the admin's "CSV export").

Text cells come from customers' and operators' input (external ids, rule names): they pass
through common.tables.spreadsheet_safe so none runs as a formula when the file is opened."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pandas as pd
from django.conf import settings

from campaigns.measurement.outcomes import intervention_outcomes
from campaigns.models import Campaign, Intervention
from campaigns.money import currency
from campaigns.uplift.costs import with_costs
from common.tables import spreadsheet_safe

# Rows per chunk of the CSV export: one keyset-paginated query each (an index probe of the
# orders per intervention), ~2 MB of CSV — the browser gets bytes at once, memory stays flat.
CSV_CHUNK = 10_000

CSV_HEADER = [
    "intervention_id",
    "customer",
    "cycle",
    "rule",
    "arm",
    "channel",
    "status",
    "reason",
    "risk_tier",
    "churn_probability",
    "assigned_at",
    "window_days",
    "in_analysis",
    "retained",
    "orders",
    "revenue",
    "first_order_day",
    "converted_response",
    "redeemed",
    "discount",
    "offer_cost",
    "message_cost",
    "cost",
    "currency",
]
# Costs per row keep six decimals: an email costs a fraction of a cent, and the rows in the
# analysis must add up to the uplift report's cost (campaigns.uplift.costs).
COST_DECIMALS = 6


def _csv_rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame = with_costs(frame, settings.CAMPAIGN_MESSAGE_COST)
    rows = pd.DataFrame(
        {
            "intervention_id": frame["intervention_id"],
            "customer": frame["customer"],
            "cycle": frame["cycle_key"],
            "rule": frame["rule_name"],
            "arm": frame["arm"],
            "channel": frame["channel"],
            "status": frame["status"],
            "reason": frame["reason"],
            "risk_tier": frame["risk_tier"],
            "churn_probability": frame["churn_probability"].astype(float).round(4),
            "assigned_at": pd.to_datetime(frame["created_at"], utc=True, format="ISO8601"),
            "window_days": frame["window_days"],
            "in_analysis": frame["in_analysis"],
            "retained": (frame["orders"].astype(int) > 0).astype(int),
            "orders": frame["orders"],
            "revenue": frame["revenue"].round(2),
            "first_order_day": frame["first_day"].round(3),
            "converted_response": frame["converted_response"],
            "redeemed": frame["redeemed"],
            "discount": frame["discount"].round(2),
            "offer_cost": frame["offer_cost"].round(COST_DECIMALS),
            "message_cost": frame["message_cost"].round(COST_DECIMALS),
            "cost": frame["cost"].round(COST_DECIMALS),
            "currency": currency(),
        }
    )
    return spreadsheet_safe(rows)


def interventions_outcomes_csv(*, campaign: Campaign, chunk: int = CSV_CHUNK) -> Iterator[str]:
    """The campaign's assignment log (every intervention, both arms, excluded rows flagged)
    with its outcome, as CSV text in chunks (keyset pagination on the intervention id)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(CSV_HEADER)
    yield buffer.getvalue()
    ids = Intervention.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True)
    last = 0
    while True:
        # The id bounds of the next chunk, so each chunk's inner aggregates read only its rows.
        rest = ids.filter(pk__gt=last)
        bound: int | None = (
            next(iter(rest[chunk - 1 : chunk]), None) or rest.order_by("-pk").first()
        )
        if bound is None:
            return
        frame = intervention_outcomes(campaign=campaign, after_id=last, up_to_id=bound)
        if frame.empty:
            return
        buffer = io.StringIO()
        _csv_rows(frame).to_csv(buffer, header=False, index=False)
        yield buffer.getvalue()
        last = int(frame["intervention_id"].iloc[-1])
