"""The `dispatch` and `uplift` stages of retention_cycle: seed the campaigns a sources file
names (if none exist yet), run the current cycle of every active campaign, deliver, and report
the counts; then measure every campaign's uplift (the demo simulates outcomes before: demo/)."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from campaigns.models import CampaignMode, Intervention, InterventionStatus
from campaigns.money import currency
from campaigns.money import money as money_text
from campaigns.selectors import campaigns_active
from campaigns.services.dispatch import DispatchSummary, campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.setup import campaigns_seed
from campaigns.uplift.breakdown import GroupUplift
from campaigns.uplift.report import (
    TARGETING_LABELS,
    CampaignUpliftReport,
    ProgramUpliftReport,
)


def dispatch_stage(*, campaigns_spec: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Seed the campaigns of `campaigns_spec` (the sources file's campaigns file) when none
    exist, run the current cycle of every active campaign, deliver (embedded mode) and count:
    `dispatch_start`, `dispatch_chunk` for each campaign in priority order, `dispatch_finish`."""
    chunks, context = dispatch_start(campaigns_spec=campaigns_spec)
    summaries = [dispatch_chunk(context=context, chunk=c)[1] for c in chunks]
    return dispatch_finish(context=context, summaries=summaries)


def dispatch_start(
    *, campaigns_spec: dict[str, Any] | None, now: datetime | None = None
) -> tuple[list[int], dict[str, Any]]:
    """Seed (when none exist) and list the active campaigns, highest priority first: the
    stage's chunks, one campaign each, run one after the other (a lower-priority campaign sees
    what a higher one took this cycle). The context carries the cycle's moment: `now`, else
    the current time (the demo dispatches on its data's date: demo/cycle.py)."""
    seeded = [c.name for c in campaigns_seed(spec=campaigns_spec)] if campaigns_spec else []
    now = now or timezone.now()
    # Triggered campaigns have no nightly cycle: they decide per customer after each rescore.
    active = campaigns_active(now=now).exclude(mode=CampaignMode.TRIGGERED)
    chunks = [c.pk for c in active]
    return chunks, {"seeded": seeded, "now": now.isoformat(), "started": time.time()}


def dispatch_chunk(*, context: dict[str, Any], chunk: int) -> tuple[int, dict[str, Any]]:
    """One campaign's cycle (idempotent: a second call for the same cycle writes nothing).
    Returns the interventions written and the summary (JSON-safe)."""
    from campaigns.models import Campaign

    now = datetime.fromisoformat(context["now"])
    summary = campaign_dispatch(campaign=Campaign.objects.get(pk=chunk), now=now)
    return summary.interventions_created if summary.written else 0, asdict(summary)


def relay_chunk(*, context: dict[str, Any]) -> int:
    """One relay pass over the outbox at the per-minute rates (several may run at once: each
    row is leased); returns the messages sent."""
    summary = interventions_relay(
        now=datetime.fromisoformat(context["now"]) if context.get("now") else None,
        max_per_channel=dict(settings.CAMPAIGN_RATE_PER_MINUTE),
    )
    return sum(summary.sent.values())


def dispatch_finish(
    *, context: dict[str, Any], summaries: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[str]]:
    """Deliver in embedded mode (no workers: nothing else would), then count per campaign."""
    now = datetime.fromisoformat(context["now"])
    seeded = context["seeded"]
    summaries_ = [DispatchSummary.from_dict(s) for s in summaries]
    # Embedded mode delivers here; with a broker the cycle's relay stage (and beat) does it.
    from campaigns.tasks import tasks_run_in_process

    eager = tasks_run_in_process()
    relay = asdict(interventions_relay(now=now)) if eager else {"by": "the relay stage"}
    campaigns = []
    lines = [f"Seeded campaign(s): {', '.join(seeded)}"] if seeded else []
    for s in summaries_:
        sent = dict(
            Intervention.objects.filter(
                campaign_id=s.campaign_id,
                cycle__cycle_key=s.cycle_key,
                status__in=[InterventionStatus.SENT, InterventionStatus.DELIVERED],
            )
            .values_list("channel")
            .annotate(n=Count("pk"))
            .order_by()
        )
        campaigns.append(
            {
                "campaign": s.campaign,
                "cycle_key": s.cycle_key,
                "already_ran": s.already_ran,
                "eligible": s.eligible,
                "treatment": s.treatment,
                "control": s.control,
                "scheduled": s.scheduled,
                "sent": sent,
                "suppressed": s.suppressed,
                "coupons": s.coupons,
                "offer_cost": s.offer_cost,
                "per_rule": s.per_rule,
                "targeting": s.targeting,
                "policy": s.policy,
            }
        )
        note = " (this cycle had already run)" if s.already_ran else ""
        lines.append(
            f"{s.campaign} · cycle {s.cycle_key}{note}: {s.eligible:,} eligible · "
            f"{s.treatment:,} treatment · {s.control:,} control · {s.scheduled:,} scheduled"
        )
        if s.targeting == "uplift_policy":
            budget = s.policy.get("budget")
            lines.append(
                f"  uplift policy, model {s.policy.get('model')}: expected cost "
                f"{money_text(s.policy.get('spent', 0))} of a budget of "
                f"{money_text(budget) if budget is not None else 'no limit'}"
            )
        elif s.policy.get("fallback"):
            lines.append(f"  {s.policy['fallback']}")
        for rule in s.per_rule:
            t, c = rule["treatment"], rule["control"]
            lines.append(
                f"  {rule['rule']} [{rule['channel']}]: treatment {t['taken']:,} taken / "
                f"{t['matched']:,} · control {c['taken']:,} held out / {c['matched']:,}"
            )
        lines.append(
            "  sent: "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(sent.items())) or "none")
            + " · suppressed: "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(s.suppressed.items())) or "none")
        )
    if any(s.scheduled for s in summaries_):
        lines.append(
            "Scheduled messages wait for the end of quiet hours in each customer's time zone "
            f"(CAMPAIGN_QUIET_HOURS={settings.CAMPAIGN_QUIET_HOURS[0]}-"
            f"{settings.CAMPAIGN_QUIET_HOURS[1]}); the relay (beat, or the next cycle) sends them."
        )
    if not summaries_:
        lines.append("No active campaign: nothing dispatched.")
    if summaries_ and not any(s.eligible for s in summaries_):
        if any(s.targeting == "uplift_policy" for s in summaries_):
            lines.append(
                "The uplift policy found no customer worth contacting: no action's expected "
                "increment (uplift × customer value) exceeds its cost."
            )
        else:
            lines.append(
                "No customer matched a rule (has the scoring stage run? customers without a "
                "churn score are never chosen)."
            )
    data = {
        "campaigns": campaigns,
        "relay": relay,
        "seconds": round(time.time() - context["started"], 3),
    }
    return data, lines


def _report_url(campaign_id: int) -> str:
    return settings.PUBLIC_BASE_URL + reverse("admin:campaigns_campaign_uplift", args=[campaign_id])


def _points(value: float, digits: int = 2) -> str:
    """A difference of two rates in percentage points, signed: 0.0123 → "+1.23"."""
    return f"{value * 100:+.{digits}f}"


def _campaign_line(report: CampaignUpliftReport) -> list[str]:
    """The campaign's estimate with its interval, beside any reference effect attached to its
    cycles (the demo's true simulated effect), its money, and its tiers."""
    name = report.campaign.name
    overall = report.overall
    if overall is None or overall.retention is None:
        reason = report.note or (overall.note if overall else None) or "nothing to measure"
        return [f"{name}: {reason}."]
    t, c, r = overall.treatment, overall.control, overall.retention
    reference = report.reference_effect
    lines = [
        f"{name} ({report.status}): retained {t.rate:.1%} of {t.n:,} treated vs "
        f"{c.rate:.1%} of {c.n:,} control → {_points(r.difference)} pp "
        f"(95% CI {_points(r.ci_low)} to {_points(r.ci_high)}), p = {r.p_value:.3g}"
    ]
    if reference is not None:
        inside = r.ci_low <= reference.retention_effect <= r.ci_high
        lines.append(
            f"  {reference.label}: {_points(reference.retention_effect)} pp — "
            f"{'inside' if inside else 'OUTSIDE'} the interval"
        )
    money = overall.incremental_revenue
    if money is not None:
        roi = f"{overall.roi:+.0%}" if overall.roi is not None else "n/a (no cost)"
        lines.append(
            f"  incremental revenue {money_text(money.estimate)} (95% CI "
            f"{money_text(money.ci_low)} to {money_text(money.ci_high)}) · cost "
            f"{money_text(overall.cost.total)} · ROI {roi}"
        )
    for group in report.by_tier:
        g = group.retention
        if g is None:
            continue
        true = ""
        if reference is not None:
            effect = reference.by_tier.get(str(group.group), 0)
            true = f" · {reference.short_label} {_points(effect, 1)} pp"
        lines.append(
            f"  tier {group.group}: {_points(g.difference)} pp "
            f"({_points(g.ci_low)} to {_points(g.ci_high)}){true}"
        )
    return lines + targeting_lines(report)


def _targeting_group_line(group: GroupUplift) -> str:
    mode = TARGETING_LABELS.get(str(group.group), str(group.group))
    r = group.retention
    if r is None:
        return f"  {mode}: {group.note or 'nothing to measure'}"
    line = (
        f"  {mode}: {group.treatment.n:,} treated vs {group.control.n:,} control → "
        f"{_points(r.difference)} pp (95% CI {_points(r.ci_low)} to {_points(r.ci_high)})"
    )
    money = group.incremental_revenue
    if money is not None:
        roi = f"{group.roi:+.0%}" if group.roi is not None else "n/a (no cost)"
        line += (
            f" · incremental revenue {money_text(money.estimate)} ({money_text(money.ci_low)} "
            f"to {money_text(money.ci_high)}) · cost {money_text(group.cost.total)} · ROI {roi}"
        )
    return line


def targeting_lines(report: CampaignUpliftReport) -> list[str]:
    """Rule-targeted against uplift-policy-targeted cycles (CampaignCycle.targeting): each
    mode's uplift, incremental revenue and ROI, then policy − rules with its interval. Nothing
    while every cycle was targeted the same way."""
    if len(report.by_targeting) < 2:
        return []
    lines = ["  by targeting:"] + [_targeting_group_line(g) for g in report.by_targeting]
    compared = report.targeting
    if compared is not None:
        d = compared.uplift_difference
        line = (
            f"  uplift policy − rules: {_points(d.estimate)} pp "
            f"(95% CI {_points(d.ci_low)} to {_points(d.ci_high)})"
        )
        revenue = compared.revenue_per_treated_difference
        if revenue is not None:
            line += (
                f" · revenue per treated customer {money_text(revenue.estimate)} "
                f"({money_text(revenue.ci_low)} to {money_text(revenue.ci_high)})"
            )
        if compared.roi_difference is not None:
            line += f" · ROI {compared.roi_difference * 100:+.0f} points"
        lines.append(line)
    return lines


def _campaign_json(report: CampaignUpliftReport) -> dict[str, Any]:
    overall = report.overall
    r = overall.retention if overall else None
    money = overall.incremental_revenue if overall else None
    reference = report.reference_effect
    return {
        "campaign": report.campaign.name,
        "campaign_id": report.campaign.id,
        "status": report.status,
        "treatment": {
            "n": overall.treatment.n if overall else 0,
            "rate": overall.treatment.rate if overall else None,
        },
        "control": {
            "n": overall.control.n if overall else 0,
            "rate": overall.control.rate if overall else None,
        },
        "difference": r.difference if r else None,
        "ci_low": r.ci_low if r else None,
        "ci_high": r.ci_high if r else None,
        "p_value": r.p_value if r else None,
        "relative_lift": r.relative_lift if r else None,
        "incremental_revenue": money.estimate if money else None,
        "incremental_revenue_ci": [money.ci_low, money.ci_high] if money else None,
        "cost": overall.cost.total if overall else None,
        "currency": currency(),
        "roi": overall.roi if overall else None,
        "reference_effect": reference.retention_effect if reference else None,
        "reference_effect_by_tier": dict(reference.by_tier) if reference else None,
        "reference_label": reference.label if reference else None,
        "by_tier": {
            str(g.group): g.retention.difference if g.retention else None for g in report.by_tier
        },
        "by_targeting": {
            str(g.group): {
                "difference": g.retention.difference if g.retention else None,
                "ci": [g.retention.ci_low, g.retention.ci_high] if g.retention else None,
                "incremental_revenue": g.incremental_revenue.estimate
                if g.incremental_revenue
                else None,
                "roi": g.roi,
            }
            for g in report.by_targeting
        },
        "targeting_difference": asdict(report.targeting.uplift_difference)
        if report.targeting
        else None,
        "report_url": _report_url(report.campaign.id),
    }


def _program_line(program: ProgramUpliftReport | None) -> list[str]:
    overall = program.overall if program else None
    if overall is None or overall.retention is None:
        return []
    r = overall.retention
    return [
        f"Program: global control ({overall.control.n:,}) vs everyone else "
        f"({overall.treatment.n:,}): {_points(r.difference)} pp "
        f"(95% CI {_points(r.ci_low)} to {_points(r.ci_high)})"
    ]


def _program_json(program: ProgramUpliftReport | None) -> dict[str, Any]:
    overall = program.overall if program else None
    r = overall.retention if overall else None
    return {
        "status": program.status if program else None,
        "global_control_n": overall.control.n if overall else 0,
        "everyone_else_n": overall.treatment.n if overall else 0,
        "difference": r.difference if r else None,
        "ci_low": r.ci_low if r else None,
        "ci_high": r.ci_high if r else None,
    }


def uplift_stage(*, as_of: datetime | None) -> tuple[dict[str, Any], list[str]]:
    """Snapshot every campaign's uplift and the program report, and summarise them (with any
    reference effect a cycle carries: the demo's simulation attaches its true effect)."""
    from campaigns.measurement.snapshots import uplift_reports_refresh
    from campaigns.models import ReportKind

    started = time.perf_counter()
    rows = uplift_reports_refresh(now=timezone.now())
    campaigns = [
        CampaignUpliftReport.from_json(r.figures) for r in rows if r.kind == ReportKind.CAMPAIGN
    ]
    program = next(
        (ProgramUpliftReport.from_json(r.figures) for r in rows if r.kind == ReportKind.PROGRAM),
        None,
    )
    lines: list[str] = []
    for report in campaigns:
        lines += _campaign_line(report)
        lines.append(
            f"  report: {_report_url(report.campaign.id)} (make serve; log in as a staff user)"
        )
    if not campaigns:
        lines.append("No campaign has interventions yet: nothing to measure.")
    lines += _program_line(program)
    data = {
        "as_of": as_of.date().isoformat() if as_of else None,
        "campaigns": [_campaign_json(report) for report in campaigns],
        "program": _program_json(program),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return data, lines
