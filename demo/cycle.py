"""The demo's cycle stage: before the uplift is measured, simulate synthetic outcomes of every
cycle not yet simulated (demo/simulate.py) — only when the sources file has an
"uplift": {"simulate": {"seed": …}} entry, as demo/sources.json does."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from campaigns.cycle import cycle_as_of
from campaigns.models import CampaignCycle
from demo.simulate import campaign_cycle_simulate, simulation_anchor_note

# The seed when the sources file's "simulate" entry names none.
DEFAULT_SEED = 7


def simulate_stage(
    *, sources: Path | None, extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Simulate each cycle with interventions that has no simulation yet (a rerun adds
    nothing); returns {"simulated": [summary, …]} and the lines to print."""
    config = json.loads(sources.read_text()).get("uplift", {}) if sources else {}
    if not config.get("simulate"):
        return {"simulated": []}, []
    seed = int(config["simulate"].get("seed", DEFAULT_SEED))
    simulated: list[dict[str, Any]] = []
    lines: list[str] = []
    for cycle in CampaignCycle.objects.filter(interventions__isnull=False).distinct():
        summary = campaign_cycle_simulate(cycle=cycle, seed=seed)
        if summary is None:
            continue
        simulated.append(asdict(summary))
        lines.append(
            f"Simulated (SYNTHETIC) {summary.campaign} cycle {summary.cycle_key}: "
            f"{summary.orders_created:,} orders, {summary.responses_created:,} responses "
            f"via the API, {summary.coupons_redeemed:,} coupons redeemed; true effect "
            f"{summary.true_retention_effect * 100:+.2f} pp"
        )
    as_of = cycle_as_of(sources=sources, extra=extra or {})
    lines.append(f"Simulation: {simulation_anchor_note(as_of=as_of)}.")
    return {"simulated": simulated}, lines
