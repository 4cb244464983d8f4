"""The plan of a campaign cycle: which customers a campaign's rules match and, per customer,
the arm, the suppression reason, send_after and the status to record. Reads only; writes nothing.

The bridge between the ORM and the pure modules: customers are read in id-range chunks into
pandas (campaigns.selectors), matched with campaigns.rules and decided with campaigns.suppression
(the one policy), so the dispatch and the admin preview decide alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings

from campaigns import selectors
from campaigns.models import (
    Campaign,
    InterventionStatus,
    Rule,
    Selection,
    SuppressionReason,
    Targeting,
    UpliftModel,
)
from campaigns.rules import (
    RuleSpec,
    RuleStep,
    first_matching_rule,
    needs_value,
    rule_mask,
    rule_spec,
    rule_steps,
    steps_mask,
)
from campaigns.services.uplift_models import UpliftTrainingError, action_cost, uplift_predict
from campaigns.suppression import (
    PolicyConfig,
    budget_exhausted,
    consent_columns,
    first_receivable_channel,
    global_control_mask,
    holdout_is_control,
    quiet_hours_send_after,
    suppression_reasons,
)
from campaigns.uplift.policy import EXPLORATION, POLICY, allocate


def policy_config() -> PolicyConfig:
    """The suppression policy's settings: frequency caps, quiet hours, consent defaults."""
    return PolicyConfig(
        frequency_caps=dict(settings.CAMPAIGN_FREQUENCY_CAPS),
        quiet_start_hour=settings.CAMPAIGN_QUIET_HOURS[0],
        quiet_end_hour=settings.CAMPAIGN_QUIET_HOURS[1],
        quiet_channels=frozenset(settings.CAMPAIGN_QUIET_HOURS_CHANNELS),
        consent_defaults=dict(settings.CONSENT_DEFAULTS),
    )


@dataclass(frozen=True)
class CampaignPlan:
    """Per matched customer: rule, channel, arm, reason, send_after and status. An uplift
    policy plan (`targeting` "uplift_policy") has one row per customer the policy chose, with
    `selection`, `predicted_uplift` and `expected_increment`, and says in `policy` what it
    expects against targeting as many customers by risk."""

    decisions: pd.DataFrame  # one row per matched customer
    rules: list[Rule]
    targeting: str = Targeting.RULES.value
    uplift_model: UpliftModel | None = None
    policy: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _PlanInputs:
    """What every chunk of one campaign's plan is decided with."""

    campaign: Campaign
    specs: list[RuleSpec]  # one per rule, in the order rules are tried
    channel_of: np.ndarray  # rule index → contact channel
    fallback_of: np.ndarray  # rule index → fallback channel ("" for none)
    cost_of: np.ndarray  # rule index → offer unit cost
    need_value: bool
    config: PolicyConfig
    now: datetime
    cycle_start: datetime
    history_since: datetime  # contact history is read back to here (cooldown, caps, this cycle)
    only_ids: tuple[int, ...] | None = None  # a triggered campaign's batch of customers


def _plan_inputs(
    *,
    campaign: Campaign,
    rules: list[Rule],
    now: datetime,
    cycle_start: datetime,
    only_ids: tuple[int, ...] | None = None,
) -> _PlanInputs:
    config = policy_config()
    specs = [rule_spec(rule) for rule in rules]
    history_days = max(
        [campaign.cooldown_days, 1, *[days for _n, days in config.frequency_caps.values()]]
    )
    return _PlanInputs(
        campaign=campaign,
        specs=specs,
        channel_of=np.array([r.channel for r in rules], dtype=object),
        fallback_of=np.array([r.fallback_channel or "" for r in rules], dtype=object),
        cost_of=np.array([float(r.offer.unit_cost) if r.offer else 0.0 for r in rules]),
        need_value=needs_value(specs),
        config=config,
        now=now,
        cycle_start=cycle_start,
        history_since=min(now - timedelta(days=history_days), cycle_start),
        only_ids=only_ids,
    )


def _chunk_candidates(inputs: _PlanInputs, id_range: tuple[int, int]) -> pd.DataFrame:
    """A chunk's candidates with every column a rule reads: score, attributes, value, consent."""
    ids = inputs.only_ids
    frame = selectors.candidates_frame(specs=inputs.specs, id_range=id_range, ids=ids)
    if frame.empty:
        return frame
    if inputs.need_value:
        values = selectors.customer_value_frame(id_range=id_range, now=inputs.now, ids=ids)
        frame["value"] = frame["customer_id"].map(values).fillna(0.0)
    else:
        frame["value"] = 0.0
    consent = consent_columns(
        customer_ids=frame["customer_id"],
        consents=selectors.consents_frame(id_range=id_range, ids=ids),
        defaults=inputs.config.consent_defaults,
    )
    return frame.join(consent, on="customer_id")


def _chunk_decisions(
    inputs: _PlanInputs, id_range: tuple[int, int], frame: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The chunk's customers that match a rule, with their rule, channel, arm and the reason
    the policy gives not to send (budget aside: it needs every chunk). `frame`: the chunk's
    candidates when the caller has read them already."""
    if frame is None:
        frame = _chunk_candidates(inputs, id_range)
    if frame.empty:
        return frame
    matched = first_matching_rule(frame, inputs.specs)
    frame = frame.loc[matched >= 0].copy()
    if frame.empty:
        return frame
    frame["rule_index"] = matched[matched >= 0]
    frame["channel"] = inputs.channel_of[frame["rule_index"].to_numpy()]
    frame["fell_back"] = False
    fallback = pd.Series(inputs.fallback_of[frame["rule_index"].to_numpy()], index=frame.index)
    if fallback.ne("").any():  # "push, else email": the first channel the customer can receive
        frame["channel"], frame["fell_back"] = first_receivable_channel(frame, fallback=fallback)
    frame["offer_cost"] = inputs.cost_of[frame["rule_index"].to_numpy()]
    campaign = inputs.campaign
    # The arm is decided first, from the customer alone, and never looked at again until
    # the very end: rules and suppression below cannot depend on it.
    frame["is_control"] = holdout_is_control(
        salt=campaign.salt,
        customer_ids=frame["customer_id"].to_numpy(),
        control_percentage=float(campaign.control_percentage),
    )
    frame["global_control"] = global_control_mask(
        customer_ids=frame["customer_id"].to_numpy(),
        salt=settings.GLOBAL_CONTROL_SALT,
        percentage=float(settings.GLOBAL_CONTROL_PERCENT),
    )
    frame["reason"] = suppression_reasons(
        frame,
        history=selectors.contact_history_frame(
            id_range=id_range, since=inputs.history_since, ids=inputs.only_ids
        ),
        campaign_id=campaign.pk,
        campaign_rank=(campaign.priority, campaign.pk),
        cooldown_days=campaign.cooldown_days,
        cycle_start=inputs.cycle_start,
        now=inputs.now,
        config=inputs.config,
    )
    return frame


def _budget_left(campaign: Campaign) -> tuple[int | None, float | None]:
    """The tightest of the per-cycle and the remaining overall limits: (count, offer value);
    None where the campaign sets no limit."""
    used_n, used_cost = selectors.campaign_usage(campaign=campaign)
    counts = [
        campaign.max_interventions_per_cycle,
        None
        if campaign.max_interventions_total is None
        else max(campaign.max_interventions_total - used_n, 0),
    ]
    costs = [
        None
        if campaign.max_offer_value_per_cycle is None
        else float(campaign.max_offer_value_per_cycle),
        None
        if campaign.max_offer_value_total is None
        else max(float(campaign.max_offer_value_total) - used_cost, 0.0),
    ]
    limits_n = [v for v in counts if v is not None]
    limits_cost = [v for v in costs if v is not None]
    return (min(limits_n) if limits_n else None, min(limits_cost) if limits_cost else None)


def _budget_applied(campaign: Campaign, decisions: pd.DataFrame) -> pd.DataFrame:
    """The decisions in budget order, with the rows beyond the budget suppressed."""
    # Budget: highest-priority rule first, then highest risk; arm-blind (see budget_exhausted).
    decisions = decisions.sort_values(
        ["rule_index", "probability", "customer_id"], ascending=[True, False, True]
    ).reset_index(drop=True)
    open_rows = decisions["reason"].eq("")
    max_count, max_cost = _budget_left(campaign)
    over = budget_exhausted(decisions.loc[open_rows], max_count=max_count, max_cost=max_cost)
    decisions.loc[over.index[over.to_numpy()], "reason"] = SuppressionReason.BUDGET
    return decisions


def _with_status(decisions: pd.DataFrame, *, now: datetime, config: PolicyConfig) -> pd.DataFrame:
    """Add send_after (quiet hours) and the intervention status each row is recorded with."""
    # Quiet hours delay (never drop) the rows that may be sent; computed for both arms alike.
    open_rows = decisions["reason"].eq("")
    decisions["send_after"] = quiet_hours_send_after(decisions, now=now, config=config).where(
        open_rows
    )
    control = decisions["is_control"].to_numpy()
    status = np.where(
        ~open_rows.to_numpy(),
        InterventionStatus.SUPPRESSED,
        np.where(
            control,
            InterventionStatus.HELD_OUT,
            np.where(
                decisions["send_after"].notna().to_numpy(),
                InterventionStatus.SCHEDULED,
                InterventionStatus.PENDING,
            ),
        ),
    )
    decisions["status"] = status
    return decisions


def campaign_plan(
    *,
    campaign: Campaign,
    now: datetime,
    cycle_start: datetime,
    rules: list[Rule] | None = None,
    customer_ids: Sequence[int] | None = None,
) -> CampaignPlan:
    """Decide every matching customer's rule, arm, status and reason for the cycle starting
    at `cycle_start`; write nothing (the dispatch records it, the preview only counts it).
    `rules`: unsaved rules to plan with instead of the campaign's (the rule builder's counts).
    `customer_ids`: only these customers, as one chunk (a triggered campaign plans a batch of
    customers right after their rescore: campaigns.services.triggered)."""
    builder = rules is not None  # the rule builder counts what its rules would take
    if rules is None:
        rules = list(campaign.rules.select_related("offer", "template").order_by("position", "pk"))
    if not rules or (customer_ids is not None and not len(customer_ids)):
        return CampaignPlan(pd.DataFrame(), rules)
    only = tuple(sorted(int(i) for i in customer_ids)) if customer_ids is not None else None
    inputs = _plan_inputs(
        campaign=campaign, rules=rules, now=now, cycle_start=cycle_start, only_ids=only
    )
    fallback: dict[str, Any] = {}
    if campaign.targeting == Targeting.UPLIFT_POLICY and not builder:
        champion = selectors.uplift_model_champion(campaign=campaign)
        try:
            if champion is not None:
                return policy_plan(inputs=inputs, rules=rules, model=champion)
            fallback = {"fallback": NO_CHAMPION}
        except UpliftTrainingError as exc:  # a missing or altered artifact: never no cycle
            fallback = {"fallback": f"the champion uplift model cannot be used ({exc}): "
                        "targeted by rules this cycle"}  # fmt: skip
    chunks: list[pd.DataFrame] = []
    ranges = [(only[0], only[-1])] if only else selectors.candidate_id_ranges(specs=inputs.specs)
    for id_range in ranges:
        decided = _chunk_decisions(inputs, id_range)
        if not decided.empty:
            chunks.append(decided)
    if not chunks:
        return CampaignPlan(pd.DataFrame(), rules, policy=fallback)
    decisions = _budget_applied(campaign, pd.concat(chunks, ignore_index=True))
    return CampaignPlan(
        _with_status(decisions, now=now, config=inputs.config), rules, policy=fallback
    )


# --- uplift policy: the campaign's rules are the actions, one global allocation ---------------

NO_CHAMPION = (
    "uplift policy without a champion uplift model: targeted by rules this cycle "
    "(train one with manage.py uplift_train)"
)


@dataclass(frozen=True)
class _PolicyChunk:
    """One chunk's customers that may get at least one action, with per rule i the channel
    (`channel_i`, `fell_back_i`) and the reason not to send (`reason_i`, "" when it may), and
    the model's predicted uplift for them (customers × action keys)."""

    frame: pd.DataFrame  # index: customer id
    uplift: pd.DataFrame
    eligible: pd.DataFrame
    suppressed: dict[str, int]  # customers some rule matched but no action may reach, by reason


def _policy_chunk(
    inputs: _PlanInputs, id_range: tuple[int, int], rules: list[Rule], model: UpliftModel
) -> _PolicyChunk | None:
    frame = _chunk_candidates(inputs, id_range)
    if frame.empty:
        return None
    masks = np.column_stack([rule_mask(frame, spec).to_numpy() for spec in inputs.specs])
    frame = frame.loc[masks.any(axis=1)].copy()
    masks = masks[masks.any(axis=1)]
    if frame.empty:
        return None
    campaign = inputs.campaign
    ids = frame["customer_id"].to_numpy()
    frame["is_control"] = holdout_is_control(
        salt=campaign.salt, customer_ids=ids, control_percentage=float(campaign.control_percentage)
    )
    frame["global_control"] = global_control_mask(
        customer_ids=ids,
        salt=settings.GLOBAL_CONTROL_SALT,
        percentage=float(settings.GLOBAL_CONTROL_PERCENT),
    )
    history = selectors.contact_history_frame(
        id_range=id_range, since=inputs.history_since, ids=inputs.only_ids
    )
    # The global control takes part like everyone (and is recorded, never contacted).
    blind = frame.assign(global_control=False)
    for i in range(len(rules)):
        per_rule = blind.assign(channel=inputs.channel_of[i], fell_back=False)
        if inputs.fallback_of[i]:
            fallback = pd.Series(inputs.fallback_of[i], index=per_rule.index)
            per_rule["channel"], per_rule["fell_back"] = first_receivable_channel(
                per_rule, fallback=fallback
            )
        reason = suppression_reasons(
            per_rule,
            history=history,
            campaign_id=campaign.pk,
            campaign_rank=(campaign.priority, campaign.pk),
            cooldown_days=campaign.cooldown_days,
            cycle_start=inputs.cycle_start,
            now=inputs.now,
            config=inputs.config,
        )
        frame[f"channel_{i}"] = per_rule["channel"]
        frame[f"fell_back_{i}"] = per_rule["fell_back"].astype(bool)
        frame[f"reason_{i}"] = reason.where(masks[:, i], "no_match")
    frame.index = pd.Index(frame["customer_id"].to_numpy())
    keys = {f"rule-{r.pk}": i for i, r in enumerate(rules)}
    actions = [a["key"] for a in model.actions if a["key"] in keys]
    eligible = pd.DataFrame(
        {a: frame[f"reason_{keys[a]}"].eq("").to_numpy() for a in actions}, index=frame.index
    )
    reachable = eligible.any(axis=1) if actions else pd.Series(False, index=frame.index)
    first_reason = pd.Series(
        _per_row(frame, "reason", np.argmax(masks, axis=1), len(rules)), index=frame.index
    )
    suppressed = first_reason.loc[~reachable & first_reason.ne("")].value_counts()
    frame, eligible = frame.loc[reachable], eligible.loc[reachable]
    if frame.empty:
        return _PolicyChunk(frame, pd.DataFrame(), eligible, dict(suppressed))
    known = pd.DataFrame(
        {"churn_probability": frame["probability"], "customer_value": frame["value"]}
    )
    uplift = uplift_predict(
        model=model, customer_ids=frame.index.tolist(), as_of=inputs.now, known=known
    )[actions]
    return _PolicyChunk(frame, uplift, eligible, {str(k): int(v) for k, v in suppressed.items()})


def _per_row(frame: pd.DataFrame, name: str, index: np.ndarray, rules: int) -> np.ndarray:
    """Per row n, the value of column f"{name}_{index[n]}" (vectorised)."""
    stacked = np.column_stack([frame[f"{name}_{i}"].to_numpy(dtype=object) for i in range(rules)])
    return stacked[np.arange(len(frame)), np.asarray(index, dtype=np.int64)]


def _policy_seed(campaign: Campaign, cycle_start: datetime) -> int:
    key = f"{campaign.salt}:{cycle_start:%Y%m%dT%H%M}".encode()
    return int(hashlib.sha256(key).hexdigest()[:8], 16)


def policy_plan(*, inputs: _PlanInputs, rules: list[Rule], model: UpliftModel) -> CampaignPlan:
    """The uplift policy's plan: every chunk's eligible customers and predictions, then ONE
    allocation over all of them (budget, exploration), then the campaign's count and offer
    limits in the policy's order, quiet hours and statuses as in rules mode."""
    inputs = replace(inputs, need_value=True)  # what a retained customer is worth
    campaign = inputs.campaign
    chunks: list[_PolicyChunk] = []
    ranges = (
        [(inputs.only_ids[0], inputs.only_ids[-1])]
        if inputs.only_ids
        else selectors.candidate_id_ranges(specs=inputs.specs)
    )
    for id_range in ranges:
        chunk = _policy_chunk(inputs, id_range, rules, model)
        if chunk is not None:
            chunks.append(chunk)
    suppressed: dict[str, int] = {}
    for chunk in chunks:
        for reason, n in chunk.suppressed.items():
            suppressed[reason] = suppressed.get(reason, 0) + n
    kept = [c for c in chunks if not c.frame.empty]
    keys = {f"rule-{r.pk}": i for i, r in enumerate(rules)}
    costs = {k: action_cost(rules[i]) for k, i in keys.items()}
    info: dict[str, Any] = {
        "model": model.version,
        "budget": None if campaign.policy_budget is None else float(campaign.policy_budget),
        "exploration_share": float(campaign.exploration_percentage) / 100,
        "unreachable": suppressed,
        "actions_without_model": [
            rules[i].name for k, i in keys.items() if k not in {a["key"] for a in model.actions}
        ],
    }
    if not kept:
        return CampaignPlan(pd.DataFrame(), rules, Targeting.UPLIFT_POLICY.value, model, info)
    frame = pd.concat([c.frame for c in kept])
    uplift = pd.concat([c.uplift for c in kept])
    eligible = pd.concat([c.eligible for c in kept])
    result = allocate(
        uplift=uplift,
        value=frame["value"].astype(float),
        costs=costs,
        control=frame["is_control"] | frame["global_control"],
        budget=info["budget"],
        exploration_share=info["exploration_share"],
        eligible=eligible,
        seed=_policy_seed(campaign, inputs.cycle_start),
    )
    info.update(
        candidates=result.candidates,
        negative=result.negative,
        spent=round(result.spent, 2),
        expected=_expected_against_risk(
            frame=frame, uplift=uplift, eligible=eligible, costs=costs, chosen=result.decisions
        ),
    )
    decisions = _policy_decisions(frame, result.decisions, keys, inputs)
    return CampaignPlan(decisions, rules, Targeting.UPLIFT_POLICY.value, model, info)


def _policy_decisions(
    frame: pd.DataFrame, chosen: pd.DataFrame, keys: dict[str, int], inputs: _PlanInputs
) -> pd.DataFrame:
    """The chosen customers as plan rows (the columns `_chunk_decisions` gives), with the
    campaign's count and offer limits applied in the policy's order, then statuses."""
    if chosen.empty:
        return pd.DataFrame()
    rows = frame.loc[chosen.index].reset_index(drop=True)
    index = chosen["action"].map(keys).to_numpy(dtype=np.int64)
    rows["rule_index"] = index
    rows["channel"] = _per_row(rows, "channel", index, len(inputs.specs))
    rows["fell_back"] = _per_row(rows, "fell_back", index, len(inputs.specs)).astype(bool)
    rows["offer_cost"] = inputs.cost_of[index]
    rows["selection"] = (
        chosen["selection"]
        .map({POLICY: Selection.POLICY.value, EXPLORATION: Selection.EXPLORATION.value})
        .to_numpy()
    )
    rows["predicted_uplift"] = chosen["predicted_uplift"].to_numpy(dtype=float)
    rows["expected_increment"] = chosen["expected_increment"].to_numpy(dtype=float)
    rows["reason"] = np.where(rows["global_control"], SuppressionReason.GLOBAL_CONTROL, "")
    per_rule = [f"{name}_{i}" for i in keys.values() for name in ("channel", "fell_back", "reason")]
    rows = rows.drop(columns=per_rule)
    open_rows = rows["reason"].eq("")
    max_count, max_cost = _budget_left(inputs.campaign)
    over = budget_exhausted(rows.loc[open_rows], max_count=max_count, max_cost=max_cost)
    rows.loc[over.index[over.to_numpy()], "reason"] = SuppressionReason.BUDGET
    return _with_status(rows, now=inputs.now, config=inputs.config)


def _expected_against_risk(
    *,
    frame: pd.DataFrame,
    uplift: pd.DataFrame,
    eligible: pd.DataFrame,
    costs: dict[str, float],
    chosen: pd.DataFrame,
) -> dict[str, Any]:
    """What the policy's treated customers are expected to bring — incremental retained
    customers (sum of predicted uplift), incremental value (uplift × customer value) and
    expected cost — beside targeting as many customers by risk instead, each with the first
    rule it may get (what rules targeting would send)."""
    treated = chosen.loc[~chosen["control"]] if not chosen.empty else chosen
    value = frame["value"].astype(float)
    policy = {
        "customers": len(treated),
        "retained": float(treated["predicted_uplift"].sum()) if len(treated) else 0.0,
        "value": float((treated["predicted_uplift"] * value.reindex(treated.index)).sum())
        if len(treated)
        else 0.0,
        "cost": float(treated["cost"].sum()) if len(treated) else 0.0,
    }
    pool = frame.loc[~(frame["is_control"] | frame["global_control"])]
    top = pool.sort_values(["probability", "customer_id"], ascending=[False, True]).head(
        len(treated)
    )
    first_action = eligible.loc[top.index].idxmax(axis=1)
    columns = uplift.columns.get_indexer(first_action.to_numpy())
    lift = uplift.loc[top.index].to_numpy(dtype=float)[np.arange(len(top)), columns]
    risk = {
        "customers": len(top),
        "retained": float(lift.sum()),
        "value": float((lift * value.reindex(top.index).to_numpy()).sum()),
        "cost": float(first_action.map(costs).sum()) if len(top) else 0.0,
    }
    rounded = {
        k: {n: round(v, 2) for n, v in d.items()} for k, d in (("policy", policy), ("risk", risk))
    }
    return rounded


# --- what each rule would take now (the rule builder's live counts) ---------------------------


@dataclass(frozen=True)
class RuleAudience:
    """One rule's customers now: `steps` narrow cumulatively (what the rule asks, customers
    still in), `matching` meet all of it, `taken` are not taken by an earlier rule (both arms:
    the preview's "eligible"), `sendable` are treatment customers the policy lets through, and
    `nobody_because` says, when none is sendable, at which step everyone was lost."""

    name: str
    steps: tuple[tuple[str, int], ...]
    matching: int
    taken: int
    control: int
    sendable: int
    suppressed: dict[str, int]
    nobody_because: str


def rules_audience(
    *, campaign: Campaign, rules: list[Rule], now: datetime, cycle_start: datetime
) -> list[RuleAudience]:
    """Per rule (in the order given), how many customers it matches, takes and may send to now,
    decided exactly as the dispatch decides (same chunks, policy and budget)."""
    if not rules:
        return []
    inputs = _plan_inputs(campaign=campaign, rules=rules, now=now, cycle_start=cycle_start)
    steps = [rule_steps(spec) for spec in inputs.specs]
    step_counts = [np.zeros(len(s), dtype=np.int64) for s in steps]
    decided: list[pd.DataFrame] = []
    for id_range in selectors.candidate_id_ranges(specs=inputs.specs):
        frame = _chunk_candidates(inputs, id_range)
        if frame.empty:
            continue
        for counts, rule_steps_ in zip(step_counts, steps, strict=True):
            mask = np.ones(len(frame), dtype=bool)
            for index, step in enumerate(rule_steps_):
                mask &= steps_mask(frame, step)
                counts[index] += int(mask.sum())
        decided.append(_chunk_decisions(inputs, id_range, frame))
    decisions = pd.concat([d for d in decided if not d.empty] or [pd.DataFrame()])
    if not decisions.empty:
        decisions = _budget_applied(campaign, decisions.reset_index(drop=True))
    return [
        _rule_audience(rule, index, steps[index], step_counts[index], decisions, rules)
        for index, rule in enumerate(rules)
    ]


def _rule_audience(
    rule: Rule,
    index: int,
    steps: list[RuleStep],
    counts: np.ndarray,
    decisions: pd.DataFrame,
    rules: list[Rule],
) -> RuleAudience:
    mine = decisions.loc[decisions["rule_index"].eq(index)] if not decisions.empty else decisions
    taken = len(mine)
    control = int(mine["is_control"].sum()) if taken else 0
    treatment = mine.loc[~mine["is_control"]] if taken else mine
    open_ = treatment["reason"].eq("") if len(treatment) else pd.Series(dtype=bool)
    suppressed = (
        {
            SuppressionReason(reason).label: int(n)
            for reason, n in treatment.loc[~open_, "reason"].value_counts().items()
        }
        if len(treatment)
        else {}
    )
    sendable = int(open_.sum()) if len(treatment) else 0
    matching = int(counts[-1])
    because = ""
    if sendable == 0:
        empty = next((s.label for s, n in zip(steps, counts, strict=True) if n == 0), None)
        if empty is not None:
            because = f"no customer meets “{empty}”"
        elif taken == 0:
            earlier = ", ".join(r.name for r in rules[:index]) or "an earlier rule"
            because = f"all {matching:,} matching customers are taken by {earlier}"
        elif len(treatment) == 0:
            because = f"all {taken:,} customers fall in the control group"
        else:
            because = "every treatment customer is suppressed: " + ", ".join(
                f"{label} {n:,}" for label, n in suppressed.items()
            )
    return RuleAudience(
        name=rule.name,
        steps=tuple((s.label, int(n)) for s, n in zip(steps, counts, strict=True)),
        matching=matching,
        taken=taken,
        control=control,
        sendable=sendable,
        suppressed=suppressed,
        nobody_because=because,
    )
