"""The demo's cycle stages: before the uplift is measured, simulate synthetic outcomes of every
cycle not yet simulated (demo/simulate.py) — retention_cycle runs it only when the sources file
has a "demo": {"simulate": {"seed": …}} entry, as demo/sources.json does; and, last, the demo's
second cycle (`second_cycle_stage`, only with a "demo": {"second_cycle": {…}} entry): once the
first cycle's attribution windows have closed, train the uplift model, switch the campaign to
uplift-policy targeting with a budget, rescore, dispatch, simulate, and compare the two cycles
beside the truth (docs/uplift.md, "The demo's two cycles")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from campaigns.cycle import dispatch_chunk, dispatch_finish, dispatch_start, targeting_lines
from campaigns.measurement.snapshots import (
    REFERENCE_EFFECT_KEY,
    campaign_uplift,
    uplift_reports_refresh,
)
from campaigns.models import Arm, Campaign, CampaignCycle, Intervention, Targeting
from campaigns.money import money as money_text
from campaigns.services.dispatch import campaign_cycle_key
from campaigns.services.relay import interventions_relay
from campaigns.services.uplift_models import uplift_model_train
from campaigns.uplift.report import TARGETING_LABELS
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
    truth = str(config.get("truth", "tiers"))
    simulated: list[dict[str, Any]] = []
    lines: list[str] = []
    for cycle in CampaignCycle.objects.filter(interventions__isnull=False).distinct():
        summary = campaign_cycle_simulate(cycle=cycle, seed=seed, truth=truth)
        if summary is None:
            continue
        simulated.append(asdict(summary))
        lines.append(
            f"Simulated (SYNTHETIC) {summary.campaign} cycle {summary.cycle_key}: "
            f"{summary.orders_created:,} orders, {summary.responses_created:,} responses "
            f"via the API, {summary.coupons_redeemed:,} coupons redeemed; true effect "
            f"{summary.true_retention_effect * 100:+.2f} pp"
            + (
                f" ({summary.harmed:,} treated customers harmed by the contact)"
                if summary.harmed
                else ""
            )
        )
    lines.append(f"Simulation: {simulation_anchor_note(as_of=as_of)}.")
    return {"simulated": simulated}, lines


# --- the second cycle: the uplift policy ---------------------------------------------------------

# The demo's clock: a cycle dispatches on its as-of date at this UTC time (the sources file's
# "demo": {"dispatch_time": "09:00"}), so the simulated orders follow the shop's history.
DEFAULT_DISPATCH_TIME = "09:00"


class DemoError(ValueError):
    """The demo's second cycle cannot run as configured; the message names the entry."""


def demo_dispatch_moment(*, config: Mapping[str, Any], as_of: datetime | None) -> datetime | None:
    """When the demo dispatches: its as-of date at the "dispatch_time" entry (UTC), or None
    (now) when the demo entry has no dispatch_time or the sources file no as-of date."""
    value = config.get("dispatch_time")
    if not value or as_of is None:
        return None
    try:
        moment = time.fromisoformat(str(value))
    except ValueError as exc:
        raise DemoError(f"demo: dispatch_time is {value!r}; expected HH:MM (UTC)") from exc
    return datetime.combine(as_of.date(), moment, tzinfo=UTC)


def _decimal(config: Mapping[str, Any], key: str, default: str | None) -> Decimal | None:
    value = config.get(key, default)
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise DemoError(f"demo: second_cycle.{key} is {value!r}; expected a number") from exc
    if number < 0:
        raise DemoError(f"demo: second_cycle.{key} is {value!r}; expected 0 or more")
    return number


def _campaign(config: Mapping[str, Any]) -> Campaign | None:
    name = config.get("campaign")
    campaigns = Campaign.objects.filter(cycles__targeting=Targeting.RULES).distinct()
    if name:
        campaigns = campaigns.filter(name=name)
    return campaigns.order_by("priority", "pk").first()


def second_cycle_stage(
    *,
    config: Mapping[str, Any],
    scoring: Mapping[str, Any],
    simulate: Mapping[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """The demo's cycle 2 (see the module docstring); `config` is the sources file's
    "demo": {"second_cycle": {"campaign": name, "budget": currency, "exploration_percentage":
    percent}} entry, `scoring` its scoring entry, `simulate` its simulate entry. A rerun finds
    the cycle done and only reports."""
    budget = _decimal(config, "budget", None)
    exploration = _decimal(config, "exploration_percentage", "5")
    campaign = _campaign(config)
    if campaign is None:
        return {"ran": False}, ["Second cycle: no campaign has a rule-targeted cycle yet."]
    first = campaign.cycles.filter(targeting=Targeting.RULES).order_by("started_at").first()
    assert first is not None  # _campaign found one
    window = timedelta(days=int(campaign.attribution_window_days))
    # The day after the first cycle's last attribution window closed.
    now = first.started_at + window + timedelta(days=1)
    as_of = datetime.combine(now.date(), time(), tzinfo=UTC)
    key, _start = campaign_cycle_key(campaign=campaign, now=now)
    lines = [
        f"Second cycle of {campaign.name} on {now:%Y-%m-%d %H:%M} UTC: the first cycle's "
        f"attribution windows ({window.days} days) have closed."
    ]
    data: dict[str, Any] = {"ran": True, "campaign": campaign.name, "now": now.isoformat()}
    # Done before when the cycle exists, or when its model was trained and the policy then
    # found nobody worth contacting (no cycle row is written for an empty cycle).
    done = (
        campaign.cycles.filter(cycle_key=key).exists()
        or campaign.uplift_models.filter(training_window__trained_at=now.isoformat()).exists()
    )
    if not done:
        training = uplift_model_train(campaign=campaign, now=now)
        lines.append(f"Uplift model: {training.message}.")
        data["model"] = training.model.version if training.model else None
        campaign.targeting = Targeting.UPLIFT_POLICY
        campaign.policy_budget = budget
        campaign.exploration_percentage = exploration or Decimal("0")
        campaign.save(update_fields=["targeting", "policy_budget", "exploration_percentage"])
        limit = "no budget limit" if budget is None else f"budget {money_text(float(budget))}"
        lines.append(
            f"{campaign.name} now targets by uplift policy ({limit}, {exploration}% exploration)."
        )
        lines += _rescore(scoring=scoring, as_of=as_of)
        lines += _dispatch(now=now)
    cycle = campaign.cycles.filter(cycle_key=key).first()
    if cycle is not None:
        summary = campaign_cycle_simulate(
            cycle=cycle,
            seed=int(simulate.get("seed", DEFAULT_SEED)),
            truth=str(simulate.get("truth", "tiers")),
        )
        if summary is not None:
            lines.append(
                f"Simulated (SYNTHETIC) cycle {summary.cycle_key}: {summary.orders_created:,} "
                f"orders, {summary.responses_created:,} responses; true effect "
                f"{summary.true_retention_effect * 100:+.2f} pp"
            )
    uplift_reports_refresh(now=timezone.now())
    compared, compare_lines = two_cycles_compare(campaign=campaign)
    return data | {"cycles": compared}, lines + compare_lines


def _rescore(*, scoring: Mapping[str, Any], as_of: datetime) -> list[str]:
    """Score every customer as of the second cycle's date (the first cycle's simulated orders
    are history by then); the active churn model, no retraining."""
    from scoring.cycle import scoring_chunk, scoring_finish, scoring_start

    config = {**dict(scoring), "as_of": as_of.date().isoformat(), "retrain": "if_none"}
    chunks, context = scoring_start(config=config)
    for chunk in chunks:
        scoring_chunk(context=context, chunk=chunk)
    _data, lines = scoring_finish(context=context)
    return [f"Rescored as of {as_of:%Y-%m-%d}:", *lines[-3:]]


def _dispatch(*, now: datetime) -> list[str]:
    chunks, context = dispatch_start(campaigns_spec=None, now=now)
    summaries = [dispatch_chunk(context=context, chunk=chunk)[1] for chunk in chunks]
    _data, lines = dispatch_finish(context=context, summaries=summaries)
    interventions_relay(now=now)  # with workers the dispatch left the outbox to the relay
    return lines


def _cycle_figures(campaign: Campaign, cycle: CampaignCycle) -> dict[str, Any]:
    report = campaign_uplift(campaign=campaign, cycle=cycle)
    overall = report.overall
    r = overall.retention if overall else None
    money = overall.incremental_revenue if overall else None
    truth = (cycle.summary or {}).get(REFERENCE_EFFECT_KEY)
    policy = Intervention.objects.filter(cycle=cycle, arm=Arm.TREATMENT).aggregate(
        chosen=Count("pk", filter=Q(predicted_uplift__isnull=False)),
        customers=Sum("predicted_uplift"),
        value=Sum("expected_increment"),
    )
    return {
        "cycle_key": cycle.cycle_key,
        "started_at": cycle.started_at.isoformat(),
        "targeting": cycle.targeting,
        "treated": overall.treatment.n if overall else 0,
        "control": overall.control.n if overall else 0,
        "difference": r.difference if r else None,
        "ci": [r.ci_low, r.ci_high] if r else None,
        "incremental_revenue": money.estimate if money else None,
        "incremental_revenue_ci": [money.ci_low, money.ci_high] if money else None,
        "roi": overall.roi if overall else None,
        "true_effect": truth["retention_effect"] if truth else None,
        "expected_customers": policy["customers"] if policy["chosen"] else None,
        "expected_chosen": policy["chosen"],
        "expected_value": policy["value"] if policy["chosen"] else None,
    }


def _cycle_line(number: int, figures: dict[str, Any]) -> list[str]:
    mode = TARGETING_LABELS.get(figures["targeting"], figures["targeting"])
    head = f"Cycle {number} ({mode}, {figures['started_at'][:10]}, {figures['treated']:,} "
    head += f"treated vs {figures['control']:,} control): "
    if figures["difference"] is None:
        return [head + "nothing to measure."]
    low, high = figures["ci"]
    line = (
        f"{head}{figures['difference'] * 100:+.2f} pp (95% CI {low * 100:+.2f} to "
        f"{high * 100:+.2f})"
    )
    if figures["true_effect"] is not None:
        inside = low <= figures["true_effect"] <= high
        line += (
            f" · true {figures['true_effect'] * 100:+.2f} pp "
            f"({'inside' if inside else 'OUTSIDE'} the interval)"
        )
    lines = [line]
    if figures["incremental_revenue"] is not None:
        low, high = figures["incremental_revenue_ci"]
        roi = "n/a" if figures["roi"] is None else f"{figures['roi']:+.0%}"
        lines.append(
            f"  incremental revenue {money_text(figures['incremental_revenue'])} (95% CI "
            f"{money_text(low)} to {money_text(high)}) · ROI {roi}"
        )
    if figures["expected_customers"] is not None:
        per_customer = figures["expected_customers"] / max(1, figures["expected_chosen"])
        lines.append(
            f"  the policy expected {figures['expected_customers']:+.1f} customers retained "
            f"over the {figures['expected_chosen']:,} it contacted ({per_customer * 100:+.2f} pp "
            f"each; net value {money_text(figures['expected_value'] or 0.0)})"
        )
    elif figures["targeting"] == Targeting.RULES and number > 1:
        lines.append(
            "  this cycle was targeted by rules: the uplift policy had no champion model (the "
            "training line above says why), so the comparison needs another cycle"
        )
    return lines


def _true_difference_line(figures: list[dict[str, Any]]) -> list[str]:
    """policy − rules in the simulator's truth, when one cycle of each has a true effect."""
    truths = {f["targeting"]: f["true_effect"] for f in figures if f["true_effect"] is not None}
    by_mode = [f["targeting"] for f in figures]
    if sorted(by_mode) != sorted({*by_mode}) or set(truths) != {
        Targeting.RULES.value,
        Targeting.UPLIFT_POLICY.value,
    }:
        return []
    true = truths[Targeting.UPLIFT_POLICY.value] - truths[Targeting.RULES.value]
    return [f"  true uplift policy − rules (synthetic truth): {true * 100:+.2f} pp"]


def two_cycles_compare(*, campaign: Campaign) -> tuple[list[dict[str, Any]], list[str]]:
    """Each cycle's uplift with its interval beside the true simulated effect (and what the
    policy expected), then the campaign report's policy − rules comparison."""
    cycles = list(campaign.cycles.order_by("started_at"))
    figures = [_cycle_figures(campaign, cycle) for cycle in cycles]
    lines: list[str] = []
    for number, item in enumerate(figures, start=1):
        lines += _cycle_line(number, item)
    report = campaign_uplift(campaign=campaign)
    lines += targeting_lines(report)
    lines += _true_difference_line(figures)
    return figures, lines
