"""The one uplift breakdown: per group and arm from cells (the database's or a customer file's),
each group's figures equal a direct computation, and small arms give a note, not a crash."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from campaigns.uplift.breakdown import (
    SUMMED,
    ArmSums,
    GroupUplift,
    customer_cells,
    group_uplift,
    uplift_breakdown,
)
from campaigns.uplift.economics import campaign_economics
from campaigns.uplift.means import mean_difference
from campaigns.uplift.proportions import proportion_difference


def _campaign_frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 6000
    tier = rng.choice(["high", "critical", "medium"], size=n)
    arm = np.where(rng.random(n) < 0.2, "control", "treatment")
    base = np.select([tier == "critical", tier == "high"], [0.4, 0.6], 0.8)
    effect = np.where(arm == "treatment", 0.08, 0.0)
    outcome = (rng.random(n) < base + effect).astype(int)
    revenue = outcome * rng.gamma(2.0, 25.0, n)
    frame = pd.DataFrame({"arm": arm, "outcome": outcome, "revenue": revenue, "tier": tier})
    # A tier that only exists on the treatment side (e.g. a rule with a 0% holdout).
    extra = pd.DataFrame(
        {"arm": ["treatment"] * 3, "outcome": [1, 0, 1], "revenue": [5.0, 0, 7], "tier": "vip"}
    )
    return pd.concat([frame, extra], ignore_index=True)


def arm(n: float, retained: float, revenue: float = 0.0, revenue_sq: float = 0.0) -> ArmSums:
    return ArmSums(
        n=n,
        retained=retained,
        converted=retained,
        revenue=revenue,
        revenue_sq=revenue_sq,
        orders=retained,
        contacted=n,
        redeemed=0.0,
        offer_cost=2.0,
        message_cost=0.5,
    )


def test_breakdown_matches_per_group_direct_computation() -> None:
    frame = _campaign_frame()
    groups = uplift_breakdown(cells=customer_cells(frame, group_column="tier"), by="tier")
    assert [group.group for group in groups] == ["critical", "high", "medium", "vip"]
    for group in groups[:3]:
        rows = frame[frame["tier"] == group.group]
        treated = rows[rows["arm"] == "treatment"]
        control = rows[rows["arm"] == "control"]
        expected = proportion_difference(
            treated_successes=int(treated["outcome"].sum()),
            treated_n=len(treated),
            control_successes=int(control["outcome"].sum()),
            control_n=len(control),
        )
        expected_revenue = mean_difference(
            treated=treated["revenue"].to_numpy(), control=control["revenue"].to_numpy()
        )
        assert group.retention == expected
        assert group.revenue is not None
        assert group.revenue.difference == pytest.approx(expected_revenue.difference)
        assert group.revenue.ci_low == pytest.approx(expected_revenue.ci_low)
        assert group.revenue.p_value == pytest.approx(expected_revenue.p_value)
    vip = groups[3]
    assert (vip.treatment.n, vip.control.n, vip.retention, vip.note) == (
        3,
        0,
        None,
        "no control customers",
    )
    json.dumps([group.to_json() for group in groups])


def test_breakdown_names_missing_columns_and_unknown_arms() -> None:
    frame = _campaign_frame()
    with pytest.raises(ValueError, match="channel"):
        customer_cells(frame, group_column="channel")
    frame.loc[0, "arm"] = "holdout"
    with pytest.raises(ValueError, match="holdout"):
        customer_cells(frame, group_column="tier")
    frame.loc[0, "arm"], frame.loc[1, "outcome"] = "control", 2
    with pytest.raises(ValueError, match="0/1"):
        customer_cells(frame, group_column="tier")


def test_breakdown_keeps_rows_with_missing_group_value_as_a_last_group() -> None:
    frame = _campaign_frame()
    frame["tier"] = frame["tier"].astype(object)
    frame.loc[frame.index[:300], "tier"] = None
    cells = customer_cells(frame, group_column="tier", revenue_column=None)
    groups = uplift_breakdown(cells=cells, by="tier")
    assert sum(g.treatment.n + g.control.n for g in groups) == len(frame)
    assert groups[-1].group is None


def test_breakdown_labels_its_groups_and_sorts_them_by_value() -> None:
    cells = pd.DataFrame(
        [
            {"rule_id": rule, "arm": a, **dict.fromkeys(SUMMED, 0.0), "n": n, "retained": r}
            for rule, a, n, r in [
                (2, "treatment", 40, 12),
                (2, "control", 10, 2),
                (1, "treatment", 30, 9),
                (1, "control", 10, 3),
            ]
        ]
    )
    groups = uplift_breakdown(cells=cells, by="rule_id", labels={1: "1. Critical"})
    assert [g.group for g in groups] == ["1. Critical", 2]  # no label: the value itself
    assert (groups[1].treatment.retained, groups[1].control.n) == (12, 10)


def test_a_group_counts_costs_and_money_from_its_arms() -> None:
    treated = arm(50, 20, revenue=1000.0, revenue_sq=60_000.0)
    control = arm(20, 4, revenue=200.0, revenue_sq=12_000.0)
    group = group_uplift(label="all", arms={"treatment": treated, "control": control})
    assert (group.treatment.rate, group.control.rate) == (0.4, 0.2)
    assert group.treatment.revenue_per_customer == 20.0
    assert (group.cost.offers, group.cost.messages, group.cost.total) == (4.0, 1.0, 5.0)
    # Variance from the sum and the sum of squares: (60000 - 1000^2 / 50) / 49.
    assert group.revenue is not None
    assert group.revenue.treated_std == pytest.approx(math.sqrt((60_000 - 20_000) / 49))
    economics = campaign_economics(
        revenue_uplift=group.revenue,
        treated_n=50,
        offer_cost_total=4.0,
        message_cost_total=1.0,
        retention_uplift=group.retention,
    )
    assert group.incremental_revenue is not None
    assert group.incremental_revenue.estimate == economics.incremental_revenue
    assert group.roi == economics.roi and group.roi is not None
    assert group.net_incremental_revenue == economics.net_incremental_revenue
    assert group.incremental_customers is not None
    assert group.incremental_customers.estimate == pytest.approx((0.4 - 0.2) * 50)
    assert group.note is None


@pytest.mark.parametrize(
    ("arms", "note"),
    [
        ({"treatment": arm(5, 1)}, "no control customers"),
        ({"control": arm(5, 1)}, "no treated customers"),
        (
            {"treatment": arm(5, 1), "control": arm(1, 0)},
            "revenue needs at least 2 customers per arm",
        ),
    ],
)
def test_small_arms_give_a_note_instead_of_statistics(arms: dict[str, ArmSums], note: str) -> None:
    group = group_uplift(label="tier x", arms=arms)
    assert group.note == note and group.revenue is None and group.roi is None
    assert (group.retention is not None) == (len(arms) == 2)
    assert group.cost.total == pytest.approx(2.5 * len(arms))


def test_the_json_of_a_group_reads_back_and_has_money_keys_only_with_revenue() -> None:
    full = group_uplift(
        label="all",
        arms={"treatment": arm(50, 20, 1000.0, 60_000.0), "control": arm(20, 4, 200.0, 12_000.0)},
    )
    small = group_uplift(label="small", arms={"treatment": arm(5, 1)})
    for group in (full, small):
        data = json.loads(json.dumps(group.to_json()))
        assert GroupUplift.from_json(data) == group
    assert {"net_incremental_revenue", "cost_per_incremental_customer"} <= set(full.to_json())
    assert "net_incremental_revenue" not in small.to_json()
    assert list(small.to_json())[:3] == ["group", "treatment", "control"]
