"""The one definition of what a campaign costs. Pure pandas: no Django.

    cost = offers + messages
    offers   = the discount granted on redeemed coupons
               + the offer's unit cost for each treated customer contacted with an offer that
                 issues no coupon (loyalty points …)
    messages = each message sent × its channel's cost per message (CAMPAIGN_MESSAGE_COST)

Only the treatment arm costs anything: control customers are never contacted. Coupons that are
never redeemed cost nothing, which is why the cost is the realised one and not the offers' unit
costs (those are the *expected* cost the budget caps and the preview use: before sending,
nobody knows which coupons will be redeemed). The uplift report, the campaign summary, the API,
the cycle summary and the CSV export all compute it here, from the same columns:
`contacted`, `offer_made`, `discount` and `channel`, per cell or per intervention.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

COST_BASIS = (
    "cost = offers + messages; offers = discounts granted on redeemed coupons plus the unit "
    "cost of offers without a coupon made to contacted customers; messages = messages sent "
    "× the channel's cost per message"
)
ROI_BASIS = f"ROI = (incremental revenue − cost) / cost, where {COST_BASIS}"
EXPECTED_COST_BASIS = (
    "expected cost = offers × their unit cost (every offer assumed used) + messages to send "
    "× the channel's cost per message"
)


def with_costs(frame: pd.DataFrame, message_costs: Mapping[str, float]) -> pd.DataFrame:
    """`frame` (cells or interventions with contacted, offer_made, discount, channel) with its
    `offer_cost`, `message_cost` and `cost` columns (unrounded: an email costs fractions of a
    cent, so rounding per row would lose it)."""
    out = frame.copy()
    per_message = out["channel"].map(dict(message_costs)).fillna(0.0).astype(float)
    out["message_cost"] = out["contacted"].astype(float) * per_message
    out["offer_cost"] = out["discount"].astype(float) + out["offer_made"].astype(float)
    out["cost"] = out["offer_cost"] + out["message_cost"]
    return out


def expected_message_cost(
    per_channel: Mapping[str, int], message_costs: Mapping[str, float]
) -> float:
    """What sending `per_channel` messages costs (the preview's messages part)."""
    return float(sum(n * float(message_costs.get(ch, 0.0)) for ch, n in per_channel.items()))
