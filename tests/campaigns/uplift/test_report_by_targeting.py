"""The uplift report by targeting mode: a campaign's rule-targeted and uplift-policy-targeted
cycles measured apart, each with its interval, money and ROI, and policy − rules with an
interval whose variance is the sum of the two; its JSON reads back, and an older snapshot
without these keys still reads."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from campaigns.uplift.report import (
    Z_95,
    CampaignUpliftReport,
    CycleInfo,
    campaign_report,
    targeting_comparison,
)
from tests.campaigns.uplift.test_report import ASSIGNED, CAMPAIGN, cell

RULES_CYCLE, POLICY_CYCLE = 11, 12


def two_cycles() -> pd.DataFrame:
    """Cycle 11 by rules: 30% vs 20% retained (+10 pp); cycle 12 by the policy: 45% vs 20%
    (+25 pp), with revenue spread in both arms."""
    rows = []
    for cycle_id, treated_retained in ((RULES_CYCLE, 60), (POLICY_CYCLE, 90)):
        rows += [
            cell(
                cycle_id=cycle_id,
                n=200,
                retained=treated_retained,
                revenue=treated_retained * 40.0,
                revenue_sq=treated_retained * 2_000.0,
                contacted=200,
                orders=treated_retained,
            ),
            cell(
                arm="control",
                cycle_id=cycle_id,
                n=100,
                retained=20,
                revenue=800.0,
                revenue_sq=40_000.0,
                orders=20,
            ),
        ]
    return pd.DataFrame(rows)


def build(frame: pd.DataFrame, **options: Any) -> CampaignUpliftReport:
    arguments: dict[str, Any] = {
        "frame": frame,
        "campaign": CAMPAIGN,
        "cycle": None,
        "measured_at": ASSIGNED + timedelta(days=30),
        "excluded": {},
        "reference_effect": None,
        "rule_labels": {1: "1. Critical by email"},
        "cycle_labels": {RULES_CYCLE: "20260301T0000", POLICY_CYCLE: "20260331T0000"},
        "message_costs": {"email": 0.5},
        "cycle_targeting": {RULES_CYCLE: "rules", POLICY_CYCLE: "uplift_policy"},
    }
    return campaign_report(**(arguments | options))


def test_each_targeting_mode_is_measured_against_its_own_control() -> None:
    report = build(two_cycles())
    assert [g.group for g in report.by_targeting] == ["rules", "uplift_policy"]
    rules, policy = report.by_targeting
    assert rules.retention is not None and policy.retention is not None
    assert rules.retention.difference == pytest.approx(0.10)
    assert policy.retention.difference == pytest.approx(0.25)
    for group in (rules, policy):
        assert (group.treatment.n, group.control.n) == (200, 100)
        assert group.incremental_revenue is not None and group.roi is not None
        assert group.cost.messages == 100.0  # 200 contacted at 0.50


def test_policy_minus_rules_adds_the_variances_of_the_two_cycles() -> None:
    report = build(two_cycles())
    compared = report.targeting
    assert compared is not None
    d = compared.uplift_difference
    assert d.estimate == pytest.approx(0.15)
    r, p = compared.rules.retention, compared.policy.retention
    assert r is not None and p is not None
    se = math.hypot((r.ci_high - r.ci_low) / (2 * Z_95), (p.ci_high - p.ci_low) / (2 * Z_95))
    assert (d.ci_low, d.ci_high) == pytest.approx((0.15 - Z_95 * se, 0.15 + Z_95 * se))
    # Wider than either cycle's own interval: two samples' noise.
    assert d.ci_high - d.ci_low > max(r.ci_high - r.ci_low, p.ci_high - p.ci_low)
    revenue = compared.revenue_per_treated_difference
    assert revenue is not None and compared.policy.revenue is not None
    assert revenue.estimate == pytest.approx(
        compared.policy.revenue.difference - compared.rules.revenue.difference  # type: ignore[union-attr]
    )
    assert compared.roi_difference == pytest.approx(compared.policy.roi - compared.rules.roi)  # type: ignore[operator]


def test_no_comparison_while_every_cycle_was_targeted_the_same_way() -> None:
    report = build(two_cycles(), cycle_targeting={RULES_CYCLE: "rules"})
    # A cycle the mapping does not name counts as rule-targeted.
    assert [g.group for g in report.by_targeting] == ["rules"]
    assert report.targeting is None
    assert targeting_comparison(report.by_targeting) is None
    # A cycle's own report has no breakdown by targeting.
    cycle = CycleInfo(id=RULES_CYCLE, cycle_key="20260301T0000")
    assert build(two_cycles(), cycle=cycle).by_targeting == ()


def test_the_comparison_reads_back_from_json_and_old_snapshots_still_read() -> None:
    report = build(two_cycles())
    again = CampaignUpliftReport.from_json(json.loads(json.dumps(report.to_json())))
    assert again == report
    old = report.to_json()
    del old["by_targeting"], old["targeting"]
    legacy = CampaignUpliftReport.from_json(old)
    assert legacy.by_targeting == () and legacy.targeting is None
