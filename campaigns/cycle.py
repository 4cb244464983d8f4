"""The `dispatch` and `uplift` stages of retention_cycle: seed the campaigns a sources file
names (if none exist yet), run the current cycle of every active campaign, deliver, and report
the counts; then (demo: simulate outcomes and) measure every campaign's uplift."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Intervention, InterventionStatus
from campaigns.selectors import campaigns_active
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.setup import campaigns_seed


def campaigns_spec_from_sources(sources: Path | None) -> dict[str, Any] | None:
    """The campaigns file a sources file names under "campaigns" (relative to it), if any."""
    if sources is None:
        return None
    name = json.loads(sources.read_text()).get("campaigns")
    if not name:
        return None
    spec: dict[str, Any] = json.loads((sources.parent / name).read_text())
    return spec


def dispatch_stage(*, sources: Path | None) -> tuple[dict[str, Any], list[str]]:
    started = time.perf_counter()
    spec = campaigns_spec_from_sources(sources)
    seeded = [c.name for c in campaigns_seed(spec=spec)] if spec else []
    now = timezone.now()
    summaries = [campaign_dispatch(campaign=c, now=now) for c in campaigns_active(now=now)]
    # Embedded mode delivers here (no workers); with a broker the relay task does it.
    relay = (
        asdict(interventions_relay(now=now))
        if settings.CELERY_TASK_ALWAYS_EAGER
        else {"enqueued": True}
    )
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        from campaigns.tasks import interventions_relay_task

        interventions_relay_task.delay()
    campaigns = []
    lines = [f"Seeded campaign(s): {', '.join(seeded)}"] if seeded else []
    for s in summaries:
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
            }
        )
        note = " (this cycle had already run)" if s.already_ran else ""
        lines.append(
            f"{s.campaign} · cycle {s.cycle_key}{note}: {s.eligible:,} eligible · "
            f"{s.treatment:,} treatment · {s.control:,} control · {s.scheduled:,} scheduled"
        )
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
    if any(s.scheduled for s in summaries):
        lines.append(
            "Scheduled messages wait for the end of quiet hours in each customer's time zone "
            f"(CAMPAIGN_QUIET_HOURS={settings.CAMPAIGN_QUIET_HOURS[0]}-"
            f"{settings.CAMPAIGN_QUIET_HOURS[1]}); the relay (beat, or the next cycle) sends them."
        )
    if not summaries:
        lines.append("No active campaign: nothing dispatched.")
    if summaries and not any(s.eligible for s in summaries):
        lines.append("No customer has a churn score yet: run the scoring stage first.")
    data = {
        "campaigns": campaigns,
        "relay": relay,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return data, lines


def _as_of(sources: Path | None, extra: dict[str, Any]) -> datetime | None:
    """The cycle's as-of date: the cycle options' `as_of`, else the sources file's scoring one."""
    value = extra.get("as_of")
    if value is None and sources is not None:
        value = json.loads(sources.read_text()).get("scoring", {}).get("as_of")
    if not value:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _campaign_line(figures: dict[str, Any]) -> list[str]:
    name = figures["campaign"]["name"]
    overall = figures.get("overall")
    if not overall or not overall.get("retention"):
        reason = figures.get("note") or (overall or {}).get("note") or "nothing to measure"
        return [f"{name}: {reason}."]
    t, c, r = overall["treatment"], overall["control"], overall["retention"]
    truth = figures.get("simulation")
    lines = [
        f"{name} ({figures['status']}): retained {t['rate']:.1%} of {t['n']:,} treated vs "
        f"{c['rate']:.1%} of {c['n']:,} control → {r['difference'] * 100:+.2f} pp "
        f"(95% CI {r['ci_low'] * 100:+.2f} to {r['ci_high'] * 100:+.2f}), p = {r['p_value']:.3g}"
    ]
    if truth:
        lines.append(
            f"  true simulated effect (synthetic data): {truth['true_retention_effect'] * 100:+.2f}"
            " pp — "
            + (
                "inside"
                if r["ci_low"] <= truth["true_retention_effect"] <= r["ci_high"]
                else "OUTSIDE"
            )
            + " the interval"
        )
    money = overall.get("incremental_revenue")
    if money:
        roi = overall.get("roi")
        lines.append(
            f"  incremental revenue {money['estimate']:,.2f} (95% CI {money['ci_low']:,.2f} to "
            f"{money['ci_high']:,.2f}) · cost {overall['cost']['total']:,.2f} · ROI "
            + (f"{roi:+.0%}" if roi is not None else "n/a (no cost)")
        )
    for group in figures.get("by_tier") or []:
        g = group.get("retention")
        if g:
            lines.append(
                f"  tier {group['group']}: {g['difference'] * 100:+.2f} pp "
                f"({g['ci_low'] * 100:+.2f} to {g['ci_high'] * 100:+.2f})"
                + (
                    f" · true {truth['true_effect_by_tier'].get(group['group'], 0) * 100:+.1f} pp"
                    if truth
                    else ""
                )
            )
    return lines


def _campaign_json(figures: dict[str, Any]) -> dict[str, Any]:
    overall = figures.get("overall") or {}
    r = overall.get("retention") or {}
    money = overall.get("incremental_revenue") or {}
    truth = figures.get("simulation")
    return {
        "campaign": figures["campaign"]["name"],
        "campaign_id": figures["campaign"]["id"],
        "status": figures["status"],
        "treatment": {
            "n": (overall.get("treatment") or {}).get("n", 0),
            "rate": (overall.get("treatment") or {}).get("rate"),
        },
        "control": {
            "n": (overall.get("control") or {}).get("n", 0),
            "rate": (overall.get("control") or {}).get("rate"),
        },
        "difference": r.get("difference"),
        "ci_low": r.get("ci_low"),
        "ci_high": r.get("ci_high"),
        "p_value": r.get("p_value"),
        "relative_lift": r.get("relative_lift"),
        "incremental_revenue": money.get("estimate"),
        "incremental_revenue_ci": [money.get("ci_low"), money.get("ci_high")] if money else None,
        "cost": (overall.get("cost") or {}).get("total"),
        "roi": overall.get("roi"),
        "true_effect": truth["true_retention_effect"] if truth else None,
        "true_effect_by_tier": truth["true_effect_by_tier"] if truth else None,
        "by_tier": {
            str(g["group"]): (g.get("retention") or {}).get("difference")
            for g in figures.get("by_tier") or []
        },
        "report_url": settings.PUBLIC_BASE_URL
        + reverse("admin:campaigns_campaign_uplift", args=[figures["campaign"]["id"]]),
    }


def uplift_stage(
    *, sources: Path | None, extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Simulate the demo's responses and orders when the sources file asks for it (synthetic,
    see campaigns/simulate.py), then snapshot every campaign's uplift and the program report."""
    from campaigns.measurement import uplift_reports_refresh
    from campaigns.models import CampaignCycle, ReportKind
    from campaigns.simulate import campaign_cycle_simulate, simulation_anchor_note

    started = time.perf_counter()
    config = json.loads(sources.read_text()).get("uplift", {}) if sources else {}
    as_of = _as_of(sources, extra or {})
    lines: list[str] = []
    simulated: list[dict[str, Any]] = []
    if config.get("simulate"):
        seed = int(config["simulate"].get("seed", 7))
        for cycle in CampaignCycle.objects.filter(interventions__isnull=False).distinct():
            summary = campaign_cycle_simulate(cycle=cycle, seed=seed)
            if summary is not None:
                simulated.append(summary.to_dict())
                lines.append(
                    f"Simulated (SYNTHETIC) {summary.campaign} cycle {summary.cycle_key}: "
                    f"{summary.orders_created:,} orders, {summary.responses_created:,} responses "
                    f"via the API, {summary.coupons_redeemed:,} coupons redeemed; true effect "
                    f"{summary.true_retention_effect * 100:+.2f} pp"
                )
        lines.append(f"Simulation: {simulation_anchor_note(as_of=as_of)}.")
    reports = uplift_reports_refresh(now=timezone.now())
    campaigns = [r.figures for r in reports if r.kind == ReportKind.CAMPAIGN]
    program: dict[str, Any] = next((r.figures for r in reports if r.kind == ReportKind.PROGRAM), {})
    for figures in campaigns:
        lines += _campaign_line(figures)
        lines.append(
            "  report: "
            + settings.PUBLIC_BASE_URL
            + reverse("admin:campaigns_campaign_uplift", args=[figures["campaign"]["id"]])
            + " (make serve; log in as a staff user)"
        )
    if not campaigns:
        lines.append("No campaign has interventions yet: nothing to measure.")
    overall = program.get("overall") or {}
    if overall.get("retention"):
        r = overall["retention"]
        lines.append(
            f"Program: global control ({overall['control']['n']:,}) vs everyone else "
            f"({overall['treatment']['n']:,}): {r['difference'] * 100:+.2f} pp "
            f"(95% CI {r['ci_low'] * 100:+.2f} to {r['ci_high'] * 100:+.2f})"
        )
    data = {
        "as_of": as_of.date().isoformat() if as_of else None,
        "simulated": simulated,
        "campaigns": [_campaign_json(f) for f in campaigns],
        "program": {
            "status": program.get("status"),
            "global_control_n": (overall.get("control") or {}).get("n", 0),
            "everyone_else_n": (overall.get("treatment") or {}).get("n", 0),
            "difference": (overall.get("retention") or {}).get("difference"),
            "ci_low": (overall.get("retention") or {}).get("ci_low"),
            "ci_high": (overall.get("retention") or {}).get("ci_high"),
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
    return data, lines
