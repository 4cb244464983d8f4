"""The demo's cycle stage: before the uplift is measured, simulate synthetic outcomes of every
cycle not yet simulated (demo/simulate.py). retention_cycle runs it only when the sources file
has a "demo": {"simulate": {"seed": …}} entry, as demo/sources.json does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from campaigns.models import CampaignCycle
from demo.simulate import campaign_cycle_simulate, simulation_anchor_note

# The seed when the sources file's "simulate" entry names none.
DEFAULT_SEED = 7


def simulate_stage(
    *, config: Mapping[str, Any], as_of: datetime | None
) -> tuple[dict[str, Any], list[str]]:
    """Simulate each cycle with interventions that has no simulation yet (a rerun adds
    nothing); `config` is the sources file's "simulate" entry ({"seed": …}), `as_of` the
    cycle's date. Returns {"simulated": [summary, …]} and the lines to print."""
    seed = int(config.get("seed", DEFAULT_SEED))
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
    lines.append(f"Simulation: {simulation_anchor_note(as_of=as_of)}.")
    return {"simulated": simulated}, lines
