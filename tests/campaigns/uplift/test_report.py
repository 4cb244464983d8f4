"""The typed uplift report: built from outcome cells without a database, its status, conversion
source, breakdowns and curve; its JSON reads back to the same report; reference effects of
several cycles combine by their treated customers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from campaigns.uplift.breakdown import SUMMED
from campaigns.uplift.report import (
    EMPTY_NOTE,
    CampaignInfo,
    CampaignUpliftReport,
    CycleInfo,
    ProgramUpliftReport,
    ReferenceEffect,
    campaign_report,
    program_report,
    retention_curve,
)

ASSIGNED = datetime(2026, 3, 1, 9, tzinfo=UTC)
CAMPAIGN = CampaignInfo(id=7, name="Win-back", control_percentage=20.0, attribution_window_days=10)
REFERENCE = ReferenceEffect(
    label="true simulated effect (synthetic data)",
    short_label="true",
    retention_effect=0.05,
    by_tier={"critical": 0.08},
    treated_n=100,
)


def cell(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "part": "cell",
        "arm": "treatment",
        "rule_id": 1,
        "risk_tier": "critical",
        "channel": "email",
        "cycle_id": 11,
        "day": -1.0,
        **dict.fromkeys(SUMMED, 0.0),
        "first_assigned": ASSIGNED,
        "last_assigned": ASSIGNED,
        "window_days": 10.0,
    }
    del row["message_cost"]  # the report prices the messages itself
    row |= values
    # Retained or converted: the retained, plus those with a converted response and no order.
    if "retained_or_converted" not in values:
        row["retained_or_converted"] = row["retained"]
    return row


def frame(*, responses_in_both_arms: bool = False) -> pd.DataFrame:
    rows = [
        cell(n=80, retained=24, revenue=960.0, revenue_sq=48_000.0, contacted=80, orders=30),
        cell(arm="control", n=20, retained=3, revenue=90.0, revenue_sq=3_000.0, orders=3),
        cell(risk_tier="", n=10, retained=2, revenue=40.0, revenue_sq=900.0, contacted=10),
        cell(arm="control", risk_tier="", n=4, retained=0),
        cell(cycle_id=12, n=6, retained=1, converted_response=1, retained_or_converted=2),
        {"part": "curve", "arm": "treatment", "day": 0.0, "n": 10.0},
        {"part": "curve", "arm": "treatment", "day": 4.0, "n": 17.0},
        {"part": "curve", "arm": "control", "day": 9.0, "n": 3.0},
    ]
    if responses_in_both_arms:
        rows.append(
            cell(arm="control", cycle_id=12, n=2, converted_response=1, retained_or_converted=1)
        )
    return pd.DataFrame(rows)


def report(measured_at: datetime, **options: Any) -> CampaignUpliftReport:
    arguments: dict[str, Any] = {
        "frame": frame(),
        "campaign": CAMPAIGN,
        "cycle": None,
        "measured_at": measured_at,
        "excluded": {"treatment:no_address": 3},
        "reference_effect": REFERENCE,
        "rule_labels": {1: "1. Critical by email"},
        "cycle_labels": {11: "20260301T0000", 12: "20260302T0000"},
        "message_costs": {"email": 0.5},
    }
    return campaign_report(**(arguments | options))


def test_a_campaign_report_from_cells() -> None:
    r = report(ASSIGNED + timedelta(days=3))
    assert r.status == "interim" and r.note is None
    assert r.window_closes_at == ASSIGNED + timedelta(days=10)
    assert r.overall is not None and r.overall.group == "all"
    assert (r.overall.treatment.n, r.overall.control.n) == (96, 24)
    assert r.overall.treatment.retained == 27
    # Each contacted treated customer's message costs 0.50.
    assert r.overall.cost.messages == 45.0
    assert [g.group for g in r.by_rule] == ["1. Critical by email"]
    assert [g.group for g in r.by_tier] == ["critical", "unscored"]
    assert [g.group for g in r.by_cycle] == ["20260301T0000", "20260302T0000"]
    assert r.by_cycle[1].note == "no control customers"
    assert r.conversion_source == "orders"  # converted responses in one arm only: ignored
    assert r.overall.treatment.converted == r.overall.treatment.retained
    assert r.reference_effect == REFERENCE
    assert report(ASSIGNED + timedelta(days=10)).status == "final"


def test_converted_responses_count_when_both_arms_have_them() -> None:
    r = report(ASSIGNED, frame=frame(responses_in_both_arms=True))
    assert r.conversion_source == "orders and converted responses"
    assert r.overall is not None
    assert r.overall.treatment.converted == r.overall.treatment.retained + 1


def test_a_cycle_report_has_no_breakdown_by_cycle() -> None:
    cycle = CycleInfo(id=11, cycle_key="20260301T0000")
    assert report(ASSIGNED, cycle=cycle).by_cycle == ()


def test_an_empty_report_says_why_and_keeps_the_empty_shape() -> None:
    r = report(ASSIGNED, frame=frame().iloc[0:0])
    assert (r.status, r.note, r.overall, r.by_rule) == ("empty", EMPTY_NOTE, None, ())
    data = r.to_json()
    assert data["note"] == EMPTY_NOTE and data["window_closes_at"] is None
    assert data["curve"] == {"days": [], "treatment": [], "control": []}


def test_the_json_reads_back_to_the_same_report() -> None:
    for r in (report(ASSIGNED), report(ASSIGNED, frame=frame().iloc[0:0])):
        data = json.loads(json.dumps(r.to_json()))
        assert CampaignUpliftReport.from_json(data) == r
        assert CampaignUpliftReport.from_json(data).to_json() == data
    assert "note" not in report(ASSIGNED).to_json()


def test_a_legacy_simulation_key_is_not_read() -> None:
    data = report(ASSIGNED).to_json()
    del data["reference_effect"]
    data["simulation"] = {"synthetic": True, "true_retention_effect": 0.1}
    assert CampaignUpliftReport.from_json(data).reference_effect is None


def test_the_curve_is_the_cumulative_share_retained_by_day() -> None:
    curve = retention_curve(
        curve=frame().query("part == 'curve'"),
        sizes={"treatment": 100, "control": 20},
        window_days=10,
    )
    assert curve.days == tuple(range(11))
    # First orders on day 0 count from day 1 on (by the end of day 0); day 4 from day 5.
    assert curve.treatment[:6] == (0.0, 0.1, 0.1, 0.1, 0.1, 0.27)
    assert curve.control[-1] == 0.15 and curve.control[-2] == 0.0
    empty = retention_curve(curve=frame().iloc[0:0], sizes={}, window_days=3)
    assert (empty.treatment, empty.control) == ((), ())


def test_reference_effects_of_several_cycles_combine_by_treated_customers() -> None:
    later = ReferenceEffect(
        label="true simulated effect (synthetic data)",
        short_label="true",
        retention_effect=0.10,
        by_tier={"critical": 0.12, "high": 0.07},
        treated_n=300,
    )
    both = ReferenceEffect.combined([REFERENCE, later])
    assert both is not None
    assert both.retention_effect == pytest.approx((0.05 * 100 + 0.10 * 300) / 400)
    assert (both.by_tier, both.treated_n) == (later.by_tier, 400)
    assert ReferenceEffect.combined([]) is None
    assert ReferenceEffect.from_json(json.loads(json.dumps(both.to_json()))) == both


def program_groups() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "global_control": [0, 1],
            "n": [900.0, 100.0],
            "retained": [270.0, 20.0],
            "orders": [300.0, 22.0],
            "revenue": [9000.0, 500.0],
            "revenue_sq": [400_000.0, 20_000.0],
            "last": [ASSIGNED, ASSIGNED - timedelta(days=1)],
        }
    )


def test_the_program_report_compares_the_global_control_with_everyone_else() -> None:
    r = program_report(
        groups=program_groups(),
        global_control_percent=10.0,
        window_days=30,
        measured_at=ASSIGNED + timedelta(days=31),
        since=None,
    )
    assert r.status == "final" and r.overall is not None and r.overall.group == "program"
    assert (r.overall.treatment.n, r.overall.control.n) == (900, 100)
    assert r.overall.retention is not None
    assert r.overall.retention.difference == pytest.approx(0.3 - 0.2)
    assert r.overall.cost.total == 0.0
    data = json.loads(json.dumps(r.to_json()))
    assert data["groups"]["control"] == "global control"
    assert ProgramUpliftReport.from_json(data) == r


def test_an_empty_program_report_keeps_its_short_shape() -> None:
    r = program_report(
        groups=program_groups().iloc[0:0],
        global_control_percent=5.0,
        window_days=30,
        measured_at=ASSIGNED,
        since=ASSIGNED,
    )
    assert set(r.to_json()) == {
        "global_control_percent",
        "window_days",
        "measured_at",
        "since",
        "status",
        "overall",
    }
    assert ProgramUpliftReport.from_json(r.to_json()) == r
