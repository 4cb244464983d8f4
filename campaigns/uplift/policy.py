"""The uplift policy: which action, if any, each customer gets, by expected incremental value
net of cost, within a budget. Pure pandas/numpy: no Django.

    expected increment(customer, action) = uplift(customer, action) × value(customer)
                                           − expected cost(action)

Greedy by increment per unit of cost until the budget is spent; customers whose best increment
is not positive are not contacted. Customers in the control arm are chosen exactly like the
others and recorded, never contacted (their cost does not count), so the policy's own effect
stays measurable. A small random exploration share of the contacts goes to a random eligible
action for customers the policy did not choose, so the next model learns where this one is
unsure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Selection values, as Intervention.selection stores them.
POLICY, EXPLORATION = "policy", "exploration"


@dataclass(frozen=True)
class PolicyResult:
    """`decisions`: one row per chosen customer (index: customer id) with `action`,
    `selection` (POLICY / EXPLORATION), `control` (bool), `predicted_uplift`,
    `expected_increment` and `cost` (0 for control rows). `spent` counts treated rows only."""

    decisions: pd.DataFrame
    spent: float
    budget: float | None
    candidates: int
    negative: int


def allocate(
    *,
    uplift: pd.DataFrame,
    value: pd.Series,
    costs: Mapping[str, float],
    control: pd.Series,
    budget: float | None,
    exploration_share: float = 0.0,
    eligible: pd.DataFrame | None = None,
    seed: int = 0,
) -> PolicyResult:
    """`uplift`: customers × actions, the predicted change in P(retained); `value`: what a
    retained customer is worth (currency); `costs`: expected cost per action; `control`: the
    customers held out; `eligible` (same shape as `uplift`, bool): which actions each customer
    may get (default: all)."""
    if uplift.empty:
        empty = pd.DataFrame(
            columns=[
                "action",
                "selection",
                "control",
                "predicted_uplift",
                "expected_increment",
                "cost",
            ]
        )
        return PolicyResult(decisions=empty, spent=0.0, budget=budget, candidates=0, negative=0)
    cost = pd.Series({a: float(costs.get(a, 0.0)) for a in uplift.columns})
    increment = uplift.mul(value.reindex(uplift.index).fillna(0.0), axis=0) - cost
    if eligible is not None:
        increment = increment.where(eligible.reindex_like(increment).fillna(False).astype(bool))
    best_action = increment.idxmax(axis=1, skipna=True)
    best = increment.max(axis=1, skipna=True)
    worth = best > 0
    chosen = pd.DataFrame({"action": best_action[worth], "expected_increment": best[worth]})
    chosen["cost"] = chosen["action"].map(cost).astype(float)
    chosen["predicted_uplift"] = [
        float(uplift.at[c, a]) for c, a in zip(chosen.index, chosen["action"], strict=True)
    ]
    chosen["control"] = control.reindex(chosen.index).fillna(False).astype(bool)
    ratio = chosen["expected_increment"] / chosen["cost"].where(chosen["cost"] > 0, 1e-9)
    chosen = chosen.loc[ratio.sort_values(ascending=False, kind="mergesort").index]
    treated_cost = chosen["cost"].where(~chosen["control"], 0.0)
    if budget is not None:
        keep = treated_cost.cumsum() <= budget
        chosen = chosen[keep]
    chosen["cost"] = chosen["cost"].where(~chosen["control"], 0.0)
    chosen["selection"] = POLICY
    spent = float(chosen["cost"].sum())
    decisions = chosen
    if exploration_share > 0:
        rng = np.random.default_rng(seed)
        pool = increment.index.difference(chosen.index)
        n_explore = round(exploration_share * len(chosen) / max(1e-9, 1 - exploration_share))
        picks = rng.permutation(pool.to_numpy())[:n_explore]
        rows = []
        for customer in picks:
            options = increment.loc[customer].dropna()
            if options.empty:
                continue
            action = str(rng.choice(options.index.to_numpy()))
            is_control = bool(control.get(customer, False))
            action_cost = 0.0 if is_control else float(cost[action])
            if budget is not None and spent + action_cost > budget:
                break
            spent += action_cost
            rows.append(
                (
                    customer,
                    action,
                    float(increment.at[customer, action]),
                    action_cost,
                    float(uplift.at[customer, action]),
                    is_control,
                )
            )
        if rows:
            explore = pd.DataFrame(
                rows,
                columns=[
                    "customer",
                    "action",
                    "expected_increment",
                    "cost",
                    "predicted_uplift",
                    "control",
                ],
            ).set_index("customer")
            explore["selection"] = EXPLORATION
            decisions = pd.concat([chosen, explore])
    decisions = decisions[
        ["action", "selection", "control", "predicted_uplift", "expected_increment", "cost"]
    ]
    return PolicyResult(
        decisions=decisions,
        spent=spent,
        budget=budget,
        candidates=len(increment),
        negative=int((~worth).sum()),
    )
