"""The uplift report, typed: outcome cells in, a frozen report out, and its JSON form.

`campaign_report` measures a campaign (or one of its cycles) from its cells — overall and per
rule, risk tier, channel and cycle through the one breakdown (campaigns.uplift.breakdown) —
plus the cumulative retention curves; `program_report` compares the global control group with
everyone else. `CampaignUpliftReport` and `ProgramUpliftReport` are what the admin, the API,
the cycle summary and the snapshots read; `to_json`/`from_json` give the shape stored in
UpliftReport.figures and served by the API. Pure pandas/numpy: no Django.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from campaigns.uplift.breakdown import (
    SUMMED,
    ArmSums,
    Estimate,
    GroupUplift,
    group_uplift,
    uplift_breakdown,
)
from campaigns.uplift.costs import with_costs

EMPTY_NOTE = "No intervention to measure yet (no cycle took anyone)."
# CampaignCycle.targeting values (campaigns.models.Targeting) and how the report names them.
RULES, UPLIFT_POLICY = "rules", "uplift_policy"
TARGETING_LABELS = {RULES: "rules", UPLIFT_POLICY: "uplift policy"}
Z_95 = 1.959964
PROGRAM_GROUPS = {"treatment": "everyone else (matched by a campaign)", "control": "global control"}

Status = Literal["interim", "final", "empty"]


# --- the curve, the reference effect ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RetentionCurve:
    """Cumulative share of each arm retained by day d of the window (d = 0 … window)."""

    days: tuple[int, ...] = ()
    treatment: tuple[float, ...] = ()
    control: tuple[float, ...] = ()

    def to_json(self) -> dict[str, list[Any]]:
        return {
            "days": list(self.days),
            "treatment": list(self.treatment),
            "control": list(self.control),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[Any]]) -> RetentionCurve:
        return cls(
            days=tuple(data["days"]),
            treatment=tuple(data["treatment"]),
            control=tuple(data["control"]),
        )


def retention_curve(
    *, curve: pd.DataFrame, sizes: Mapping[str, int], window_days: int
) -> RetentionCurve:
    """From rows (arm, day of the first order, n): the cumulative share retained per arm."""
    shares: dict[str, tuple[float, ...]] = {}
    for arm in ("treatment", "control"):
        rows = curve.loc[curve["arm"].eq(arm)]
        counts = np.zeros(window_days + 1)
        for day, n in zip(rows["day"].astype(int), rows["n"], strict=True):
            if 0 <= day < window_days:
                counts[day + 1] += n
        size = sizes.get(arm, 0)
        shares[arm] = tuple((np.cumsum(counts) / size).round(6).tolist()) if size else ()
    return RetentionCurve(
        days=tuple(range(window_days + 1)), treatment=shares["treatment"], control=shares["control"]
    )


@dataclass(frozen=True, kw_only=True)
class ReferenceEffect:
    """A retention effect known from outside the measurement, shown beside the estimate for
    comparison — e.g. the true effect of synthetic outcomes, which the demo attaches to the
    cycles it simulated. `label` names it in full, `short_label` beside each tier."""

    label: str
    short_label: str
    retention_effect: float
    by_tier: Mapping[str, float]
    treated_n: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"by_tier": dict(self.by_tier)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReferenceEffect:
        return cls(**{**data, "by_tier": dict(data["by_tier"])})

    @classmethod
    def combined(cls, effects: Sequence[ReferenceEffect]) -> ReferenceEffect | None:
        """Several cycles' effects as one: weighted by their treated customers; the tiers and
        labels of the last."""
        if not effects:
            return None
        weight = sum(e.treated_n for e in effects) or 1
        last = effects[-1]
        return cls(
            label=last.label,
            short_label=last.short_label,
            retention_effect=sum(e.retention_effect * e.treated_n for e in effects) / weight,
            by_tier=last.by_tier,
            treated_n=sum(e.treated_n for e in effects),
        )


# --- rules against the uplift policy ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TargetingComparison:
    """The uplift-policy-targeted cycles of a campaign against its rule-targeted cycles: the
    difference of their retention uplifts (policy − rules, as a rate) and of their revenue
    uplifts per treated customer, each with a 95% normal interval — the cycles are independent
    samples, so the variances add (a retention uplift's standard error is read off its 95%
    interval as half its width / 1.96). `roi_difference` is the point difference only."""

    policy: GroupUplift
    rules: GroupUplift
    uplift_difference: Estimate
    revenue_per_treated_difference: Estimate | None = None
    roi_difference: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_json(),
            "rules": self.rules.to_json(),
            "uplift_difference": asdict(self.uplift_difference),
            "revenue_per_treated_difference": None
            if self.revenue_per_treated_difference is None
            else asdict(self.revenue_per_treated_difference),
            "roi_difference": self.roi_difference,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetingComparison:
        revenue = data.get("revenue_per_treated_difference")
        return cls(
            policy=GroupUplift.from_json(data["policy"]),
            rules=GroupUplift.from_json(data["rules"]),
            uplift_difference=Estimate(**data["uplift_difference"]),
            revenue_per_treated_difference=None if revenue is None else Estimate(**revenue),
            roi_difference=data.get("roi_difference"),
        )


def _difference(a: float, a_se: float, b: float, b_se: float) -> Estimate:
    half = Z_95 * math.sqrt(a_se**2 + b_se**2)
    return Estimate(estimate=a - b, ci_low=a - b - half, ci_high=a - b + half)


def targeting_comparison(groups: Sequence[GroupUplift]) -> TargetingComparison | None:
    """Policy against rules from the per-targeting groups (group = the targeting value); None
    unless both modes have a retention uplift."""
    by_mode = {g.group: g for g in groups if g.retention is not None}
    policy, rules = by_mode.get(UPLIFT_POLICY), by_mode.get(RULES)
    if policy is None or rules is None or policy.retention is None or rules.retention is None:
        return None
    p, r = policy.retention, rules.retention
    uplift = _difference(
        p.difference,
        (p.ci_high - p.ci_low) / (2 * Z_95),
        r.difference,
        (r.ci_high - r.ci_low) / (2 * Z_95),
    )
    revenue = None
    if policy.revenue is not None and rules.revenue is not None:
        revenue = _difference(
            policy.revenue.difference,
            policy.revenue.standard_error,
            rules.revenue.difference,
            rules.revenue.standard_error,
        )
    roi = None if policy.roi is None or rules.roi is None else policy.roi - rules.roi
    return TargetingComparison(
        policy=policy,
        rules=rules,
        uplift_difference=uplift,
        revenue_per_treated_difference=revenue,
        roi_difference=roi,
    )


@dataclass(frozen=True, kw_only=True)
class CampaignInfo:
    id: int
    name: str
    control_percentage: float
    attribution_window_days: int


@dataclass(frozen=True, kw_only=True)
class CycleInfo:
    id: int
    cycle_key: str


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, kw_only=True)
class CampaignUpliftReport:
    """What a campaign (or one of its cycles) changed: status (interim until every attribution
    window has closed), overall and per rule, tier, channel and cycle (campaign reports only),
    the retention curves, the rows left out of the comparison per arm and reason, and any
    reference effect attached to its cycles. `by_targeting` splits a campaign's cycles by how
    they chose their customers (rules, uplift policy) and `targeting` compares the two when both
    ran. `note` says why an empty report is empty."""

    campaign: CampaignInfo
    cycle: CycleInfo | None
    measured_at: datetime
    excluded: Mapping[str, int]
    reference_effect: ReferenceEffect | None
    status: Status
    window_closes_at: datetime | None = None
    conversion_source: str = "orders"
    overall: GroupUplift | None = None
    by_rule: tuple[GroupUplift, ...] = ()
    by_tier: tuple[GroupUplift, ...] = ()
    by_channel: tuple[GroupUplift, ...] = ()
    by_cycle: tuple[GroupUplift, ...] = ()
    by_targeting: tuple[GroupUplift, ...] = ()
    targeting: TargetingComparison | None = None
    curve: RetentionCurve = RetentionCurve()
    seconds: float = 0.0
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "campaign": asdict(self.campaign),
            "cycle": None if self.cycle is None else asdict(self.cycle),
            "measured_at": self.measured_at.isoformat(),
            "excluded": dict(self.excluded),
            "reference_effect": None
            if self.reference_effect is None
            else self.reference_effect.to_json(),
            "status": self.status,
            "window_closes_at": _iso(self.window_closes_at),
            "conversion_source": self.conversion_source,
            "overall": None if self.overall is None else self.overall.to_json(),
        }
        for name in ("by_rule", "by_tier", "by_channel", "by_cycle", "by_targeting"):
            data[name] = [group.to_json() for group in getattr(self, name)]
        data["targeting"] = None if self.targeting is None else self.targeting.to_json()
        data["curve"] = self.curve.to_json()
        data["seconds"] = self.seconds
        if self.note is not None:
            data["note"] = self.note
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CampaignUpliftReport:
        # Snapshots stored before reference effects were generic carry "simulation" instead
        # (demo databases only; the next refresh rewrites them): it is not read.
        reference = data.get("reference_effect")
        return cls(
            campaign=CampaignInfo(**data["campaign"]),
            cycle=None if data["cycle"] is None else CycleInfo(**data["cycle"]),
            measured_at=datetime.fromisoformat(data["measured_at"]),
            excluded=dict(data["excluded"]),
            reference_effect=None if reference is None else ReferenceEffect.from_json(reference),
            status=data["status"],
            window_closes_at=_time(data["window_closes_at"]),
            conversion_source=data["conversion_source"],
            overall=None if data["overall"] is None else GroupUplift.from_json(data["overall"]),
            by_rule=tuple(GroupUplift.from_json(g) for g in data["by_rule"]),
            by_tier=tuple(GroupUplift.from_json(g) for g in data["by_tier"]),
            by_channel=tuple(GroupUplift.from_json(g) for g in data["by_channel"]),
            by_cycle=tuple(GroupUplift.from_json(g) for g in data["by_cycle"]),
            # Snapshots stored before targeting modes existed have neither key.
            by_targeting=tuple(GroupUplift.from_json(g) for g in data.get("by_targeting", [])),
            targeting=None
            if data.get("targeting") is None
            else TargetingComparison.from_json(data["targeting"]),
            curve=RetentionCurve.from_json(data["curve"]),
            seconds=data.get("seconds", 0.0),
            note=data.get("note"),
        )


def campaign_report(
    *,
    frame: pd.DataFrame,
    campaign: CampaignInfo,
    cycle: CycleInfo | None,
    measured_at: datetime,
    excluded: Mapping[str, int],
    reference_effect: ReferenceEffect | None,
    rule_labels: Mapping[int, str],
    cycle_labels: Mapping[int, str],
    message_costs: Mapping[str, float],
    cycle_targeting: Mapping[int, str] | None = None,
) -> CampaignUpliftReport:
    """The report from the outcome frame (part "cell": the cells; part "curve": arm, day of the
    first order, n). Conversion counts `converted` responses only when both arms have some (a
    client logging them for treated customers only would bias it); a message costs
    `message_costs[channel]` per contacted customer; by_cycle only for a whole campaign, and
    by_targeting too, from `cycle_targeting` (cycle id → "rules" | "uplift_policy"; a cycle
    not named counts as rules)."""
    report = CampaignUpliftReport(
        campaign=campaign,
        cycle=cycle,
        measured_at=measured_at,
        excluded=excluded,
        reference_effect=reference_effect,
        status="empty",
        note=EMPTY_NOTE,
    )
    cells = frame.loc[frame["part"].eq("cell")].copy()
    if cells.empty:
        return report
    cells = with_costs(cells, message_costs)
    response_arms = set(cells.loc[cells["converted_response"] > 0, "arm"])
    both = {"treatment", "control"} <= response_arms
    converted = "retained_or_converted" if both else "retained"
    window = campaign.attribution_window_days
    closes = cells["last_assigned"].max() + timedelta(days=window)
    by_arm = cells.groupby("arm")[SUMMED].sum()
    cells["risk_tier"] = cells["risk_tier"].replace("", "unscored")

    def breakdown(by: str, labels: Mapping[int, str] | None = None) -> tuple[GroupUplift, ...]:
        return uplift_breakdown(cells=cells, by=by, labels=labels, converted_column=converted)

    by_targeting: tuple[GroupUplift, ...] = ()
    if cycle is None:
        modes = cells["cycle_id"].map(dict(cycle_targeting or {})).astype(object)
        cells["targeting"] = modes.where(modes.notna(), RULES)
        by_targeting = breakdown("targeting")

    return replace(
        report,
        status="final" if measured_at >= closes else "interim",
        note=None,
        window_closes_at=closes.to_pydatetime(),
        conversion_source="orders and converted responses" if both else "orders",
        overall=group_uplift(
            label="all", arms={str(a): ArmSums.of(by_arm.loc[a], converted) for a in by_arm.index}
        ),
        by_rule=breakdown("rule_id", rule_labels),
        by_tier=breakdown("risk_tier"),
        by_channel=breakdown("channel"),
        by_cycle=breakdown("cycle_id", cycle_labels) if cycle is None else (),
        by_targeting=by_targeting,
        targeting=targeting_comparison(by_targeting),
        curve=retention_curve(
            curve=frame.loc[frame["part"].eq("curve")],
            sizes={str(arm): int(by_arm.loc[arm, "n"]) for arm in by_arm.index},
            window_days=window,
        ),
    )


# --- the program report: global control vs everyone else -------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProgramUpliftReport:
    """The global control group ("control") against everyone else a campaign matched
    ("treatment"), each customer once from their first intervention."""

    global_control_percent: float
    window_days: int
    measured_at: datetime
    since: datetime | None
    status: Status
    window_closes_at: datetime | None = None
    groups: Mapping[str, str] = field(default_factory=lambda: dict(PROGRAM_GROUPS))
    overall: GroupUplift | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "global_control_percent": self.global_control_percent,
            "window_days": self.window_days,
            "measured_at": self.measured_at.isoformat(),
            "since": _iso(self.since),
            "status": self.status,
        }
        if self.status == "empty":  # the stored shape of an empty program report
            return data | {"overall": None}
        return data | {
            "window_closes_at": _iso(self.window_closes_at),
            "groups": dict(self.groups),
            "overall": None if self.overall is None else self.overall.to_json(),
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProgramUpliftReport:
        return cls(
            global_control_percent=data["global_control_percent"],
            window_days=data["window_days"],
            measured_at=datetime.fromisoformat(data["measured_at"]),
            since=_time(data["since"]),
            status=data["status"],
            window_closes_at=_time(data.get("window_closes_at")),
            groups=dict(data.get("groups", PROGRAM_GROUPS)),
            overall=None if data["overall"] is None else GroupUplift.from_json(data["overall"]),
            seconds=data.get("seconds", 0.0),
        )


def program_report(
    *,
    groups: pd.DataFrame,
    global_control_percent: float,
    window_days: int,
    measured_at: datetime,
    since: datetime | None,
) -> ProgramUpliftReport:
    """From one row per group (global_control 0/1, n, retained, orders, revenue, revenue_sq,
    last: the latest first intervention): retention and revenue of the global control group
    against everyone else. Nothing is sent to the global control, so there is no cost."""
    report = ProgramUpliftReport(
        global_control_percent=global_control_percent,
        window_days=window_days,
        measured_at=measured_at,
        since=since,
        status="empty",
    )
    if groups.empty:
        return report
    arms = {
        ("control" if int(row["global_control"]) else "treatment"): ArmSums(
            n=float(row["n"]),
            retained=float(row["retained"]),
            converted=float(row["retained"]),
            revenue=float(row["revenue"]),
            revenue_sq=float(row["revenue_sq"]),
            orders=float(row["orders"]),
            contacted=0.0,
            redeemed=0.0,
            offer_cost=0.0,
            message_cost=0.0,
        )
        for _index, row in groups.iterrows()  # at most two rows: the two groups
    }
    closes = groups["last"].max() + timedelta(days=window_days)
    return replace(
        report,
        status="final" if measured_at >= closes else "interim",
        window_closes_at=closes.to_pydatetime(),
        overall=group_uplift(label="program", arms=arms),
    )
