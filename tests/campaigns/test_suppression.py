"""The suppression policy and the holdout (campaigns.suppression) on DataFrames alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from campaigns.suppression import (
    CONSENT_FOR_CHANNEL,
    PolicyConfig,
    Reason,
    budget_exhausted,
    consent_columns,
    consent_for_channel,
    global_control_mask,
    holdout_is_control,
    quiet_hours_send_after,
    suppression_reasons,
)
from tests.campaigns.conftest import modules_loaded_by

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CONFIG = PolicyConfig(frequency_caps={"email": (2, 7)}, consent_defaults={"email": True})


def matched(**columns: Any) -> pd.DataFrame:
    """Matched customers as the dispatch hands them to the policy; columns override defaults."""
    n = len(next(iter(columns.values()))) if columns else 1
    values: dict[str, Any] = {
        "customer_id": list(range(1, n + 1)),
        "channel": ["email"] * n,
        "erased": [False] * n,
        "has_email": [True] * n,
        "has_phone": [True] * n,
        "consent_email": [True] * n,
        "consent_sms": [False] * n,
        "consent_call": [False] * n,
        "time_zone": ["UTC"] * n,
    }
    values.update(columns)
    return pd.DataFrame(values)


def history(*rows: tuple[int, int, int, str, datetime]) -> pd.DataFrame:
    return pd.DataFrame(
        list(rows), columns=["customer_id", "campaign_id", "priority", "channel", "created_at"]
    )


def reasons(frame: pd.DataFrame, past: pd.DataFrame | None = None, **kwargs: Any) -> list[str]:
    settings: dict[str, Any] = {
        "campaign_id": 7,
        "campaign_rank": (100, 7),
        "cooldown_days": 14,
        "cycle_start": NOW - timedelta(hours=12),
        "now": NOW,
        "config": CONFIG,
    }
    settings.update(kwargs)
    empty = history()
    return suppression_reasons(frame, history=empty if past is None else past, **settings).tolist()


def test_the_holdout_is_a_stable_hash_of_salt_and_customer() -> None:
    ids = np.arange(1, 20_001)
    control = holdout_is_control(salt="s", customer_ids=ids, control_percentage=10)
    assert abs(control.mean() - 0.10) < 0.01  # 3 sigma of a binomial share is 0.0064
    again = holdout_is_control(salt="s", customer_ids=ids[::-1], control_percentage=10)
    assert (again[::-1] == control).all()  # per customer, not per position
    other = holdout_is_control(salt="t", customer_ids=ids, control_percentage=10)
    assert (other != control).any()
    assert not holdout_is_control(salt="s", customer_ids=ids, control_percentage=0).any()
    assert holdout_is_control(salt="s", customer_ids=ids, control_percentage=100).all()


def test_the_global_control_depends_on_the_customer_and_the_global_salt_only() -> None:
    ids = np.arange(1, 5_001)
    members = global_control_mask(customer_ids=ids, salt="g", percentage=5)
    assert abs(members.mean() - 0.05) < 0.01
    as_campaign = holdout_is_control(salt="global:g", customer_ids=ids, control_percentage=5)
    assert (members == as_campaign).all()
    assert not global_control_mask(customer_ids=ids, salt="g", percentage=0).any()


def test_a_recorded_consent_wins_over_the_default() -> None:
    consents = pd.DataFrame(
        {"customer_id": [1, 2, 2], "channel": ["email", "sms", "email"], "status": ["revoked"] * 3}
    )
    consents.loc[1, "status"] = "granted"
    columns = consent_columns(
        customer_ids=pd.Series([1, 2, 3]), consents=consents, defaults={"email": True}
    )
    assert columns.drop(columns=["consent_push", "consent_in_app"]).to_dict("index") == {
        1: {"consent_email": False, "consent_sms": False, "consent_call": False},
        2: {"consent_email": False, "consent_sms": True, "consent_call": False},
        3: {"consent_email": True, "consent_sms": False, "consent_call": False},
    }
    assert columns[["consent_push", "consent_in_app"]].to_numpy().tolist() == [[False, False]] * 3


def test_each_channel_needs_its_consent_and_coupons_need_none() -> None:
    frame = matched(
        channel=["email", "sms", "callback", "coupon"],
        consent_email=[False] * 4,
        consent_sms=[True, False, True, False],
        consent_call=[False, False, True, False],
    )
    assert consent_for_channel(frame).tolist() == [False, False, True, True]
    assert CONSENT_FOR_CHANNEL["callback"] == "call" and CONSENT_FOR_CHANNEL["coupon"] is None


def test_the_first_applicable_reason_is_recorded_in_order_of_precedence() -> None:
    frame = matched(
        customer_id=[1, 2, 3, 4, 5, 6],
        channel=["email", "email", "email", "sms", "email", "coupon"],
        global_control=[True, False, False, False, False, False],
        erased=[True, True, False, False, False, False],
        has_email=[False, False, False, True, True, False],
        consent_email=[True, True, True, True, False, False],
    )
    assert reasons(frame) == [
        Reason.GLOBAL_CONTROL,
        Reason.ERASED,
        Reason.NO_ADDRESS,
        Reason.NO_CONSENT,  # sms consent defaults to no
        Reason.NO_CONSENT,
        "",  # a coupon needs neither an address nor consent
    ]


def test_contact_history_suppresses_by_priority_cooldown_and_frequency_cap() -> None:
    frame = matched(customer_id=[1, 2, 3, 4, 5])
    past = history(
        (1, 3, 50, "email", NOW - timedelta(hours=1)),  # a higher-priority campaign, this cycle
        (2, 7, 100, "email", NOW - timedelta(days=3)),  # this campaign, inside its cooldown
        (3, 8, 200, "email", NOW - timedelta(days=1)),  # two emails in 7 days: the cap
        (3, 9, 200, "email", NOW - timedelta(days=2)),
        (4, 3, 50, "email", NOW - timedelta(days=2)),  # higher priority, but an earlier cycle
        (5, 8, 200, "sms", NOW - timedelta(days=1)),  # the cap counts per channel
        (5, 9, 200, "sms", NOW - timedelta(days=1)),
    )
    assert reasons(frame, past) == [
        Reason.HIGHER_PRIORITY,
        Reason.COOLDOWN,
        Reason.FREQUENCY_CAP,
        "",
        "",
    ]
    assert reasons(frame, past, cooldown_days=0)[1] == ""


def test_the_budget_cuts_rows_in_the_given_order_by_count_and_cost() -> None:
    frame = pd.DataFrame({"offer_cost": [5.0, 5.0, 0.0, 5.0, 5.0]})
    assert budget_exhausted(frame, max_count=3, max_cost=None).tolist() == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert budget_exhausted(frame, max_count=None, max_cost=10).tolist() == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert not budget_exhausted(frame, max_count=None, max_cost=None).any()


@pytest.mark.parametrize(
    ("zone", "channel", "expected"),
    [
        ("Asia/Tokyo", "email", datetime(2026, 11, 24, 23, 0, tzinfo=UTC)),  # 21:00 → 08:00
        ("Europe/Paris", "email", None),  # 13:00: send now
        ("Asia/Tokyo", "coupon", None),  # quiet hours do not hold coupons back
        ("Not/AZone", "email", None),  # an unknown zone counts as UTC (noon)
        ("America/Los_Angeles", "sms", datetime(2026, 11, 24, 16, 0, tzinfo=UTC)),  # 04:00
    ],
)
def test_quiet_hours_delay_until_they_end_in_the_customers_zone(
    zone: str, channel: str, expected: datetime | None
) -> None:
    frame = matched(time_zone=[zone], channel=[channel])
    send_after = quiet_hours_send_after(frame, now=NOW, config=PolicyConfig()).iloc[0]
    assert pd.isna(send_after) if expected is None else send_after == expected, send_after
    no_quiet = PolicyConfig(quiet_start_hour=0, quiet_end_hour=0)
    assert quiet_hours_send_after(frame, now=NOW, config=no_quiet).isna().all()


def test_the_policy_records_the_reasons_the_model_knows() -> None:
    from campaigns.models import ContactChannel, SuppressionReason

    assert {r.value for r in Reason} <= set(SuppressionReason.values)
    assert set(CONSENT_FOR_CHANNEL) == set(ContactChannel.values)


def test_the_policy_imports_no_django() -> None:
    loaded = modules_loaded_by("campaigns.suppression")
    assert "pandas" in loaded
    assert not loaded & {"django", "rest_framework", "celery", "retention", "customers", "scoring"}
