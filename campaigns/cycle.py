"""The `dispatch` stage of retention_cycle: seed the campaigns a sources file names (if none
exist yet), run the current cycle of every active campaign, deliver, and report the counts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from campaigns import services
from campaigns.models import Intervention, InterventionStatus
from campaigns.selectors import campaigns_active


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
    seeded = [c.name for c in services.campaigns_seed(spec=spec)] if spec else []
    now = timezone.now()
    summaries = [services.campaign_dispatch(campaign=c, now=now) for c in campaigns_active(now=now)]
    # Embedded mode delivers here (no workers); with a broker the relay task does it.
    relay = (
        services.interventions_relay(now=now).to_dict()
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
