"""The suppression policy and the holdout assignment: the one place that decides, per customer
and message, whether it may be sent — for both arms alike — and records why not.

Pure pandas/numpy over frames the services read in chunks; no ORM here (no Django import at
all), so the policy is the same for the dispatch, the admin preview and the relay's last check
before sending.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

CONSENT_CHANNELS = ("email", "sms", "call", "push", "in_app")
# The consent channel (customers.Consent.channel) each contact channel needs; None: none needed.
CONSENT_FOR_CHANNEL: dict[str, str | None] = {
    "email": "email",
    "sms": "sms",
    "callback": "call",
    "coupon": None,
    "push": "push",
    "in_app": "in_app",
}


class Reason(StrEnum):
    """The reasons this policy records; the same values as campaigns.models.SuppressionReason
    (which adds the labels and the budget reason the dispatch records)."""

    GLOBAL_CONTROL = "global_control"
    ERASED = "erased"
    NO_ADDRESS = "no_address"
    NO_CONSENT = "no_consent"
    HIGHER_PRIORITY = "higher_priority_campaign"
    COOLDOWN = "cooldown"
    FREQUENCY_CAP = "frequency_cap"


def consent_column(channel: str) -> str:
    """The frame column saying whether a customer consents to a consent channel."""
    return f"consent_{channel}"


def holdout_is_control(
    *, salt: str, customer_ids: np.ndarray | list[int], control_percentage: float
) -> np.ndarray:
    """Deterministic arm per customer: sha256(salt:id) as a number in [0, 100) vs the control
    percentage. The same customer gets the same arm in every cycle of a campaign."""
    ids = np.asarray(customer_ids, dtype=np.int64)
    # sha256 rather than Python's hash(): stable across processes, versions and machines.
    draws = np.fromiter(
        (
            int.from_bytes(hashlib.sha256(f"{salt}:{cid}".encode()).digest()[:8], "big")
            for cid in ids.tolist()
        ),
        dtype=np.float64,
        count=len(ids),
    )
    return draws / 2.0**64 * 100.0 < float(control_percentage)


def global_control_mask(
    *, customer_ids: np.ndarray | list[int], salt: str, percentage: float
) -> np.ndarray:
    """Customers in the program-wide holdout: the same sha256 draw as a campaign's arm, with
    the global salt, so membership depends on the customer alone and never changes."""
    if percentage <= 0:
        return np.zeros(len(customer_ids), dtype=bool)
    return holdout_is_control(
        salt=f"global:{salt}", customer_ids=customer_ids, control_percentage=percentage
    )


@dataclass(frozen=True)
class PolicyConfig:
    """Settings of the policy (from settings.CAMPAIGN_*)."""

    # channel → (most contacts, within days); counted across all campaigns, both arms.
    frequency_caps: dict[str, tuple[int, int]] = field(default_factory=dict)
    quiet_start_hour: int = 21
    quiet_end_hour: int = 8
    quiet_channels: frozenset[str] = frozenset({"email", "sms", "callback"})
    consent_defaults: dict[str, bool] = field(default_factory=dict)


def consent_columns(
    *, customer_ids: pd.Series, consents: pd.DataFrame, defaults: dict[str, bool]
) -> pd.DataFrame:
    """Per customer, one boolean column per consent channel (`consent_email`, ...): the recorded
    status, or the configured default when the customer has no record for that channel.

    `consents` has columns customer_id, channel, status.
    """
    out = pd.DataFrame({"customer_id": customer_ids.to_numpy()})
    for channel in CONSENT_CHANNELS:
        rows = consents.loc[consents["channel"].eq(channel)]
        granted = out["customer_id"].isin(rows.loc[rows["status"].eq("granted"), "customer_id"])
        recorded = out["customer_id"].isin(rows["customer_id"])
        default = bool(defaults.get(channel, False))
        out[consent_column(channel)] = np.where(recorded, granted, default)
    return out.set_index("customer_id")


def consent_for_channel(frame: pd.DataFrame) -> pd.Series:
    """Whether each row's customer consents to the row's contact channel (coupon: always)."""
    result = pd.Series(True, index=frame.index)
    for channel, consent in CONSENT_FOR_CHANNEL.items():
        if consent is None:
            continue
        mask = frame["channel"].eq(channel)
        if mask.any():  # a frame needs the consent columns of the channels it has only
            result[mask] = frame.loc[mask, consent_column(consent)].astype(bool)
    return result


def has_address(frame: pd.DataFrame) -> pd.Series:
    """Whether each row's channel can reach the customer: an email address, a phone number, an
    active push device (`has_device`; a frame without it has none). Coupons and in-app messages
    need no address: the customer's app or the shop fetches them."""
    result = pd.Series(True, index=frame.index)
    result[frame["channel"].eq("email")] = frame["has_email"]
    result[frame["channel"].isin(["sms", "callback"])] = frame["has_phone"]
    push = frame["channel"].eq("push")
    if push.any():
        result[push] = frame.loc[push, "has_device"] if "has_device" in frame else False
    return result.astype(bool)


def first_receivable_channel(
    frame: pd.DataFrame, *, fallback: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """ "X, else Y": per row, the row's `channel` when the customer can receive it (an address
    or device and consent), else the row's `fallback` channel when they can receive that, else
    still the first channel (then suppressed with its own reason). Decided from the customer
    alone, for both arms alike. Returns (channel, fell_back)."""
    first_ok = has_address(frame) & consent_for_channel(frame)
    wanted = fallback.fillna("").astype(str)
    alternative = frame.assign(channel=wanted)
    fall = ~first_ok & wanted.ne("") & has_address(alternative) & consent_for_channel(alternative)
    channel = frame["channel"].where(~fall, wanted)
    return channel, fall.astype(bool)


def suppression_reasons(
    frame: pd.DataFrame,
    *,
    history: pd.DataFrame,
    campaign_id: int,
    campaign_rank: tuple[int, int],
    cooldown_days: int,
    cycle_start: datetime,
    now: datetime,
    config: PolicyConfig,
) -> pd.Series:
    """The first reason each row may not be sent ("" where it may), budget aside.

    `frame`: one row per matched customer with customer_id, channel, erased, has_email,
    has_phone and consent_* columns. `history`: earlier counted interventions of these customers
    (customer_id, campaign_id, priority, channel, created_at) of every campaign and both arms.
    The order of the checks is the order of precedence of the recorded reason.
    """
    reason = pd.Series("", index=frame.index, dtype=object)

    def mark(mask: pd.Series, why: str) -> None:
        reason[mask & reason.eq("")] = why

    if "global_control" in frame:
        # First: a global-control customer is recorded whatever else applies, so the program
        # report compares all matched customers of both groups alike.
        mark(frame["global_control"].astype(bool), Reason.GLOBAL_CONTROL)
    mark(frame["erased"].astype(bool), Reason.ERASED)
    mark(~has_address(frame), Reason.NO_ADDRESS)
    mark(~consent_for_channel(frame), Reason.NO_CONSENT)
    if not history.empty:
        customer = frame["customer_id"]
        created = pd.to_datetime(history["created_at"], utc=True)
        higher = (history["priority"] < campaign_rank[0]) | (
            (history["priority"] == campaign_rank[0]) & (history["campaign_id"] < campaign_rank[1])
        )
        this_cycle = created >= pd.Timestamp(cycle_start)
        other = history["campaign_id"] != campaign_id
        taken = set(history.loc[higher & this_cycle & other, "customer_id"])
        mark(customer.isin(taken), Reason.HIGHER_PRIORITY)
        if cooldown_days > 0:
            recent = created >= pd.Timestamp(now - timedelta(days=cooldown_days))
            cooled = set(history.loc[recent & ~other, "customer_id"])
            mark(customer.isin(cooled), Reason.COOLDOWN)
        for channel, (most, days) in config.frequency_caps.items():
            window = (history["channel"] == channel) & (
                created >= pd.Timestamp(now - timedelta(days=days))
            )
            counts = history.loc[window, "customer_id"].value_counts()
            capped = set(counts.index[counts >= most])
            mark(
                frame["channel"].eq(channel) & customer.isin(capped),
                Reason.FREQUENCY_CAP,
            )
    return reason


def budget_exhausted(
    frame: pd.DataFrame,
    *,
    max_count: int | None,
    max_cost: float | None,
) -> pd.Series:
    """Rows beyond the budget, in the frame's order (callers sort highest priority first).

    Arm-blind on purpose: a control row consumes its share like a treated one, so both arms
    are cut at the same point and stay comparable. `frame` has an `offer_cost` column.
    """
    over = pd.Series(False, index=frame.index)
    if max_count is not None:
        over |= pd.Series(np.arange(1, len(frame) + 1) > max_count, index=frame.index)
    if max_cost is not None:
        over |= frame["offer_cost"].astype(float).cumsum() > max_cost + 1e-9
    return over


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_quiet_hour(hour: int, *, start: int, end: int) -> bool:
    """Whether a local hour falls in quiet hours [start, end), which may wrap midnight (21-8);
    start == end means no quiet hours."""
    if start == end:
        return False
    return (hour >= start or hour < end) if start > end else (start <= hour < end)


def quiet_hours_send_after(
    frame: pd.DataFrame, *, now: datetime, config: PolicyConfig
) -> pd.Series:
    """For rows whose customer's local time is inside quiet hours: the UTC time quiet hours
    end (deliver then); NaT elsewhere. Computed once per time zone, not per customer."""
    result = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    start, end = config.quiet_start_hour, config.quiet_end_hour
    if start == end:
        return result
    applies = frame["channel"].isin(config.quiet_channels)
    for tz_name, index in frame.loc[applies].groupby("time_zone").groups.items():
        local = now.astimezone(_zone(str(tz_name)))
        hour = local.hour
        if not is_quiet_hour(hour, start=start, end=end):
            continue
        resume = local.replace(hour=end, minute=0, second=0, microsecond=0)
        if resume <= local:
            resume += timedelta(days=1)
        # Re-localise after crossing midnight so a DST change lands on the right wall time.
        resume = resume.replace(tzinfo=None).replace(tzinfo=local.tzinfo)
        result[index] = pd.Timestamp(resume).tz_convert("UTC")
    return result
