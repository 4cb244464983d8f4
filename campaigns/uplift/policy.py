"""The uplift policy: which action, if any, each customer gets, by expected incremental value
net of cost, within a budget. Pure pandas/numpy: no Django. Decisions: docs/uplift.md "Policy".

    expected increment(customer, action) = uplift(customer, action) × value(customer)
                                           − expected cost(action)

(or `revenue_uplift(customer, action)` − cost when a revenue uplift is given). At most one
action per customer, total expected cost within the budget: a multiple-choice knapsack.

* **Greedy** (any size, vectorised): each customer's actions are reduced to the upper convex
  hull of (cost, increment) — the LP relaxation's only useful choices — and split into
  "upgrade" steps of decreasing increment per unit of cost; all steps of all customers are
  taken in order of increment per cost while they fit (Sinha & Zoltners 1979). It is at most
  the increment of the LP's split step below the optimum (`PolicyResult.gap_bound`), and it
  is replaced by the best single customer-action when that is worth more, so it is never
  below half the optimum (greedy + best single item ≥ OPT).
* **Exact** (small problems, `EXACT_MAX_CELLS`, `EXACT_MAX_CUSTOMERS`): dynamic programming
  over integer cost units (cents divided by their greatest common divisor).

Customers whose best increment is not positive are never chosen by the policy. Customers in
the control arm are decided by the same rule and recorded, never contacted; their cost does
not count. A share of the rows (`exploration_share`, epsilon-greedy with a fixed epsilon)
goes to customers the policy did not pick, each with a random eligible action, so the next
model learns where this one may be wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

# Selection values, as Intervention.selection stores them.
POLICY, EXPLORATION, RULE = "policy", "exploration", "rule"

# How the policy rows were chosen (PolicyResult.method).
BEST_ACTION = "best_action"  # no budget, or the budget pays for every customer's best action
GREEDY = "greedy"
EXACT = "exact"
Method = Literal["auto", "greedy", "exact"]

# The exact solver fills (treated candidates) × (budget units + 1) cells with one Python step
# per customer: 2 million cells take well under a second here; beyond that the greedy is used
# (and at that size its gap bound is a tiny share of the total).
EXACT_MAX_CELLS = 2_000_000
# ... and at most this many treated customers, whatever the budget (the Python step per
# customer costs ~20 µs even on a tiny table).
EXACT_MAX_CUSTOMERS = 5_000
# Costs are compared with this slack so that float sums such as 0.1 + 0.2 do not miss a budget.
_EPS = 1e-9
# With a budget, exploration reserves its cost and reruns the policy with the rest until the
# explored count matches the share of the policy's rows: at most this many extra passes.
EXPLORATION_PASSES = 10
# ... and stops early once the explored count is short of the share by at most this share of
# all rows (a tenth of the tolerance below), which saves passes on large campaigns.
EXPLORATION_SETTLED = 0.001
# The realised exploration count is within max(2 rows, 1% of all rows) of share × all rows,
# unless too few customers or too little budget are left (PolicyResult.exploration_limited_by).
# Not exact because one more explored row may cost what several policy rows cost, so the
# count that matches the share exactly may not exist.
EXPLORATION_TOLERANCE_ROWS = 2
EXPLORATION_TOLERANCE_SHARE = 0.01


def exploration_tolerance(rows: int) -> float:
    """How many explored rows the realised count may be off share × `rows` (all rows)."""
    return max(EXPLORATION_TOLERANCE_ROWS, EXPLORATION_TOLERANCE_SHARE * rows)


COLUMNS = [
    "action",
    "selection",
    "control",
    "predicted_uplift",
    "expected_increment",
    "cost",
    "expected_value",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PolicyResult:
    """`decisions`: one row per chosen customer (index: customer id) with `action`,
    `selection` (POLICY / EXPLORATION, or RULE for `risk_targeting`), `control` (bool),
    `predicted_uplift`, `expected_increment` (as if treated, net of the action's cost),
    `cost` (0 for control rows) and `expected_value` (incremental value before cost).
    `spent` counts treated rows only.

    Totals (`expected_*`) are over treated rows — the ones that will be contacted — of both
    selections. `gap_bound`: the optimum's expected increment is at most this much above the
    policy rows' (0 when exact or when the budget does not bind). `exploration_limited_by`:
    "" when the exploration share was met (within `exploration_tolerance`), else why not:
    "customers" (too few left that the policy did not pick) or "budget"."""

    decisions: pd.DataFrame
    spent: float
    budget: float | None
    candidates: int
    negative: int
    method: str = BEST_ACTION
    exploration_target: float = 0.0
    expected_increment: float = 0.0
    expected_retained: float = 0.0
    expected_value: float = 0.0
    gap_bound: float = 0.0
    exploration_limited_by: str = ""

    @property
    def treated(self) -> int:
        return int((~self.decisions["control"].astype(bool)).sum())

    @property
    def held_out(self) -> int:
        return int(self.decisions["control"].astype(bool).sum())

    @property
    def explored(self) -> int:
        return int((self.decisions["selection"] == EXPLORATION).sum())

    @property
    def exploration_realised(self) -> float:
        """Exploration rows / all rows (control rows included), 0 when nothing is chosen."""
        return self.explored / len(self.decisions) if len(self.decisions) else 0.0


# --- Inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    customers: pd.Index
    actions: list[str]
    increment: FloatArray  # n × m, -inf where the action is not eligible
    gain: FloatArray  # n × m incremental value before cost
    uplift: FloatArray  # n × m
    cost: FloatArray  # m
    control: BoolArray  # n
    cache: dict[str, Any] = field(default_factory=dict)


def _problem(
    *,
    uplift: pd.DataFrame,
    value: pd.Series | None,
    costs: Mapping[str, float],
    control: pd.Series,
    eligible: pd.DataFrame | None,
    revenue_uplift: pd.DataFrame | None,
) -> _Problem:
    actions = [str(a) for a in uplift.columns]
    missing_costs = [a for a in actions if a not in costs]
    if missing_costs:
        raise ValueError(f"costs: no expected cost for action(s) {missing_costs}")
    cost = np.array([float(costs[a]) for a in actions], dtype=np.float64)
    if not np.isfinite(cost).all() or (cost < 0).any():
        raise ValueError(f"costs: expected a non-negative amount per action, got {dict(costs)}")
    lift = uplift.to_numpy(dtype=np.float64)
    if np.isnan(lift).any():
        rows = uplift.index[np.isnan(lift).any(axis=1)]
        raise ValueError(
            f"uplift: {len(rows)} customer(s) have no prediction, e.g. {list(rows[:3])}"
        )
    if revenue_uplift is not None:
        revenue = revenue_uplift.reindex(index=uplift.index, columns=uplift.columns)
        gain = revenue.to_numpy(dtype=np.float64)
        if np.isnan(gain).any():
            rows = uplift.index[np.isnan(gain).any(axis=1)]
            raise ValueError(
                f"revenue_uplift: expected an amount per customer and action; missing for "
                f"{len(rows)} customer(s), e.g. {list(rows[:3])}"
            )
    else:
        if value is None:
            raise ValueError(
                "value: expected what a retained customer is worth (or revenue_uplift)"
            )
        worth = value.reindex(uplift.index).to_numpy(dtype=np.float64)
        if np.isnan(worth).any():
            rows = uplift.index[np.isnan(worth)]
            raise ValueError(
                f"value: expected a currency amount per customer; missing for {len(rows)} "
                f"customer(s), e.g. {list(rows[:3])}"
            )
        gain = lift * worth[:, None]
    increment = gain - cost[None, :]
    if eligible is not None:
        allowed = (
            eligible.reindex(index=uplift.index, columns=uplift.columns)
            .fillna(False)
            .to_numpy(dtype=bool)
        )
        increment = np.where(allowed, increment, -np.inf)
    held_out = control.reindex(uplift.index).fillna(False).to_numpy(dtype=bool)
    return _Problem(
        customers=uplift.index,
        actions=actions,
        increment=increment,
        gain=gain,
        uplift=lift,
        cost=cost,
        control=held_out,
    )


# --- Greedy: convex-hull steps taken by increment per unit of cost ------------------------------


@dataclass(frozen=True)
class _Steps:
    """Upgrade steps: customer `row` moves from its previous hull action to `action`."""

    row: IntArray
    step: IntArray
    action: IntArray
    cost: FloatArray  # extra cost of the step
    gain: FloatArray  # extra increment of the step

    def __len__(self) -> int:
        return int(self.row.size)


def _hull_steps(increment: FloatArray, cost: FloatArray, rows: IntArray) -> _Steps:
    """Each customer's upper convex hull of (cost, increment) from (0, 0) as steps of
    decreasing increment per cost; dominated and LP-dominated actions drop out. Vectorised:
    at most one step per action, each a pass over the customers still climbing × actions."""
    by_cost = np.argsort(cost, kind="stable")  # slope ties go to the cheaper action
    sorted_cost = cost[by_cost]
    inc = increment[rows][:, by_cost]
    n = inc.shape[0]
    cur_cost = np.zeros(n)
    cur_val = np.zeros(n)
    parts: list[tuple[IntArray, int, IntArray, FloatArray, FloatArray]] = []
    step = 0
    free = sorted_cost <= 0
    if free.any():  # a free action with a positive increment is a first step of infinite slope
        free_inc = np.where(free[None, :], inc, -np.inf)
        best = free_inc.argmax(axis=1)
        best_val = free_inc[np.arange(n), best]
        idx = np.flatnonzero(best_val > 0)
        parts.append((idx, step, best[idx], np.zeros(idx.size), best_val[idx]))
        cur_val[idx] = best_val[idx]
        step += 1
    active = np.arange(n)
    for _ in range(len(cost)):
        d_cost = sorted_cost[None, :] - cur_cost[active, None]
        d_val = inc[active] - cur_val[active, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = d_val / d_cost
        slope[(d_cost <= 0) | ~(d_val > 0)] = -np.inf
        best = slope.argmax(axis=1)
        climbing = slope[np.arange(active.size), best] > -np.inf
        idx, to = active[climbing], best[climbing]
        if idx.size == 0:
            break
        parts.append((idx, step, to, sorted_cost[to] - cur_cost[idx], inc[idx, to] - cur_val[idx]))
        cur_cost[idx] = sorted_cost[to]
        cur_val[idx] = inc[idx, to]
        active = idx
        step += 1
    if not parts:
        empty_i = np.zeros(0, dtype=np.int64)
        return _Steps(empty_i, empty_i, empty_i, np.zeros(0), np.zeros(0))
    return _Steps(
        row=np.concatenate([rows[p[0]] for p in parts]).astype(np.int64),
        step=np.concatenate([np.full(p[0].size, p[1]) for p in parts]).astype(np.int64),
        action=by_cost[np.concatenate([p[2] for p in parts])].astype(np.int64),
        cost=np.concatenate([p[3] for p in parts]),
        gain=np.concatenate([p[4] for p in parts]),
    )


def _walk(
    *,
    row: IntArray,
    step: IntArray,
    cost: FloatArray,
    control: BoolArray,
    budget: float,
    n_rows: int,
) -> BoolArray:
    """Take items in their order (the arrays' order; `control` per item) while each fits in
    what remains of the budget at its turn; an item that does not fit is skipped (and so are
    its customer's later steps), smaller ones after it may still fit. Control rows are tested
    alike (arm-blind) but spend nothing.

    Vectorised in rounds: a round takes the longest prefix that fits; the first misfit leaves
    less than its cost, so every item at least that costly drops out of the next round —
    there are at most as many rounds as distinct step costs."""
    taken = np.zeros(row.size, dtype=bool)
    blocked = np.full(n_rows, np.iinfo(np.int64).max)  # first step a customer may not take
    spend_all = np.where(control, 0.0, cost)
    remaining = budget
    pos = np.arange(row.size)
    first = True
    while pos.size:
        if not first:
            c, s = row[pos], step[pos]
            bad = (cost[pos] > remaining + _EPS) & (s < blocked[c])
            np.minimum.at(blocked, c[bad], s[bad])
            pos = pos[s < blocked[c]]
            if pos.size == 0:
                break
        first = False  # the first round: nothing is blocked yet, every item is live
        spend = spend_all[pos]
        need = np.cumsum(spend) - spend + cost[pos]
        over = need > remaining + _EPS
        if not over.any():
            taken[pos] = True
            break
        k = int(over.argmax())
        taken[pos[:k]] = True
        remaining -= float(spend[:k].sum())
        misfit = pos[k]
        blocked[row[misfit]] = min(blocked[row[misfit]], step[misfit])
        pos = pos[k + 1 :]
    return taken


# A plan: the chosen rows (positions in the problem) and the action (column) of each.
Plan = tuple[IntArray, IntArray]
_NO_PLAN: Plan = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def _final_actions(row: IntArray, step: IntArray, action: IntArray, n_rows: int) -> Plan:
    """The last (highest) step each customer took is its action."""
    if row.size == 0:
        return _NO_PLAN
    top = np.full(n_rows, -1)
    np.maximum.at(top, row, step)
    last = step == top[row]
    return row[last], action[last]


@dataclass(frozen=True)
class _Walk:
    """Every positive customer's hull steps in walk order (computed once per problem)."""

    row: IntArray
    step: IntArray
    action: IntArray
    cost: FloatArray
    gain: FloatArray
    control: BoolArray
    best_treated: float  # the largest single increment of a treated customer


def _prepared_walk(problem: _Problem) -> _Walk:
    if "walk" not in problem.cache:  # the same for every exploration pass
        positive = np.flatnonzero(problem.increment.max(axis=1) > 0)
        steps = _hull_steps(problem.increment, problem.cost, positive)
        ratio = np.where(
            steps.cost > 0, steps.gain / np.where(steps.cost > 0, steps.cost, 1.0), np.inf
        )
        # Steps are built step by step, customers in order within a step, so a stable sort
        # keeps each customer's steps in order when their ratios tie.
        order = np.argsort(-ratio, kind="stable")
        treated = positive[~problem.control[positive]]
        problem.cache["walk"] = _Walk(
            row=steps.row[order],
            step=steps.step[order],
            action=steps.action[order],
            cost=steps.cost[order],
            gain=steps.gain[order],
            control=problem.control[steps.row[order]],
            best_treated=float(problem.increment[treated].max()) if treated.size else 0.0,
        )
    walk: _Walk = problem.cache["walk"]
    return walk


def _greedy(problem: _Problem, rows: IntArray, budget: float) -> tuple[Plan, float, float]:
    """(the plan, the LP gap bound, the plan's treated increment)."""
    walk = _prepared_walk(problem)
    n_rows = len(problem.customers)
    wanted = np.zeros(n_rows, dtype=bool)
    wanted[rows] = True
    keep = wanted[walk.row]
    if keep.all():
        row, step, action, cost, gain, control = (
            walk.row,
            walk.step,
            walk.action,
            walk.cost,
            walk.gain,
            walk.control,
        )
    else:
        row, step, action = walk.row[keep], walk.step[keep], walk.action[keep]
        cost, gain, control = walk.cost[keep], walk.gain[keep], walk.control[keep]
    if row.size == 0:
        return _NO_PLAN, 0.0, 0.0
    taken = _walk(row=row, step=step, cost=cost, control=control, budget=budget, n_rows=n_rows)
    chosen = _final_actions(row[taken], step[taken], action[taken], n_rows)
    # The LP relaxation over treated rows takes steps in the same order until the first one
    # that does not fit, and a fraction of it: OPT <= LP <= greedy + that step's increment.
    treated_items = ~control
    split = np.flatnonzero(np.cumsum(cost[treated_items]) > budget + _EPS)
    gap = float(gain[treated_items][split[0]]) if split.size else 0.0
    chosen_rows, chosen_actions = chosen
    treated_chosen = ~problem.control[chosen_rows]
    value = float(
        problem.increment[chosen_rows[treated_chosen], chosen_actions[treated_chosen]].sum()
    )
    # Greedy + best single item >= OPT, so the better of the two is at least OPT / 2.
    treated_rows = rows[~problem.control[rows]]
    if treated_rows.size and value < walk.best_treated:
        inc = problem.increment[treated_rows]
        single = np.where(problem.cost[None, :] <= budget + _EPS, inc, -np.inf)
        flat = int(single.argmax())
        best_row, best_action = divmod(flat, single.shape[1])
        best_single = float(single.flat[flat])
        if best_single > value + _EPS:
            single_plan = (treated_rows[[best_row]], np.array([best_action], dtype=np.int64))
            return single_plan, gap, best_single
    return chosen, gap, value


# --- Exact: dynamic programming over integer cost units -----------------------------------------


def _units(problem: _Problem, budget: float) -> tuple[IntArray, int]:
    """Costs rounded up and the budget rounded down to cents (so the exact plan never goes
    over), both divided by their greatest common divisor to keep the table small."""
    cents = np.ceil(problem.cost * 100 - 1e-6).astype(np.int64)
    capacity = math.floor(budget * 100 + 1e-6)
    divisor = math.gcd(capacity, *[int(c) for c in cents if c > 0]) or 1
    return cents // divisor, capacity // divisor


def _exact_fits(problem: _Problem, rows: IntArray, budget: float) -> bool:
    if budget < 0:
        return False
    _, capacity = _units(problem, budget)
    treated = int((~problem.control[rows]).sum())
    return treated <= EXACT_MAX_CUSTOMERS and treated * (capacity + 1) <= EXACT_MAX_CELLS


def _exact(problem: _Problem, rows: IntArray, budget: float) -> tuple[Plan, float]:
    """Optimal over treated rows. A control row is chosen when it would be in the optimum if
    it were treated: max over its actions of (increment + best value of the rest with the
    budget left) beats the optimum without it — its action is that maximiser."""
    weight, capacity = _units(problem, budget)
    treated = rows[~problem.control[rows]]
    best = np.zeros(capacity + 1)  # best[b]: best increment with at most b units
    choice = np.zeros((treated.size, capacity + 1), dtype=np.int16)  # action + 1, 0 = none
    for i, r in enumerate(treated):
        new = best.copy()
        for a in np.flatnonzero(problem.increment[r] > 0):
            w = int(weight[a])
            if w > capacity:
                continue
            candidate = best[: capacity + 1 - w] + problem.increment[r, a]
            better = candidate > new[w:] + 1e-12
            new[w:] = np.where(better, candidate, new[w:])
            choice[i, w:] = np.where(better, a + 1, choice[i, w:])
        best = new
    chosen: dict[int, int] = {}
    b = capacity
    for i in range(treated.size - 1, -1, -1):
        pick = int(choice[i, b]) - 1
        if pick >= 0:
            chosen[int(treated[i])] = pick
            b -= int(weight[pick])
    for r in rows[problem.control[rows]]:
        values = [
            (problem.increment[r, a] + best[capacity - int(weight[a])], a)
            for a in np.flatnonzero(problem.increment[r] > 0)
            if weight[a] <= capacity
        ]
        if values:
            top, a = max(values, key=lambda pair: (pair[0], -pair[1]))
            if top > best[capacity] + 1e-12:
                chosen[int(r)] = int(a)
    plan_rows = np.fromiter(chosen.keys(), dtype=np.int64, count=len(chosen))
    plan_actions = np.fromiter(chosen.values(), dtype=np.int64, count=len(chosen))
    return (plan_rows, plan_actions), float(best[capacity])


# --- The policy ----------------------------------------------------------------------------------


def _choose(
    problem: _Problem, rows: IntArray, budget: float | None, method: Method
) -> tuple[Plan, str, float]:
    """Policy rows among `rows` (customers with a positive best increment): row → action,
    the method used and the gap bound."""
    inc = problem.increment[rows]
    best_action = inc.argmax(axis=1) if rows.size else np.zeros(0, dtype=np.int64)
    treated = ~problem.control[rows]
    full_cost = float(problem.cost[best_action][treated].sum())
    if budget is None or (method == "auto" and full_cost <= budget + _EPS):
        return (rows, best_action.astype(np.int64)), BEST_ACTION, 0.0
    use_exact = method == EXACT or (method == "auto" and _exact_fits(problem, rows, budget))
    if use_exact:
        chosen, _ = _exact(problem, rows, budget)
        return chosen, EXACT, 0.0
    chosen, gap, _ = _greedy(problem, rows, budget)
    return chosen, GREEDY, gap


def _frame(problem: _Problem, plan: Plan, selection: str) -> pd.DataFrame:
    rows, acts = plan
    held_out = problem.control[rows]
    return pd.DataFrame(
        {
            "action": np.asarray(problem.actions, dtype=object)[acts],
            "selection": selection,
            "control": held_out,
            "predicted_uplift": problem.uplift[rows, acts],
            "expected_increment": problem.increment[rows, acts],
            "cost": np.where(held_out, 0.0, problem.cost[acts]),
            "expected_value": problem.gain[rows, acts],
        },
        index=problem.customers[rows],
    )


def _result(decisions: pd.DataFrame, **fields: Any) -> PolicyResult:
    treated = decisions[~decisions["control"].astype(bool)]
    return PolicyResult(
        decisions=decisions[COLUMNS],
        spent=float(treated["cost"].sum()),
        expected_increment=float(treated["expected_increment"].sum()),
        expected_retained=float(treated["predicted_uplift"].sum()),
        expected_value=float(treated["expected_value"].sum()),
        **fields,
    )


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
    revenue_uplift: pd.DataFrame | None = None,
    method: Method = "auto",
) -> PolicyResult:
    """`uplift`: customers × actions, the predicted change in P(retained); `value`: what a
    retained customer is worth (currency); `costs`: expected cost per action; `control`: the
    customers held out; `eligible` (same shape as `uplift`, bool): which actions each customer
    may get (default: all); `revenue_uplift` (customers × actions, currency): when given, the
    incremental value instead of uplift × value. `method`: "auto" (exact when the table fits
    in EXACT_MAX_CELLS, else greedy), "greedy" or "exact".

    Exploration (`exploration_share` ε in [0, 0.5]): ε of all rows go to customers the policy
    did not pick, uniformly at random, each with a uniformly random eligible action; their
    cost is reserved out of the budget first, then the policy spends the rest. The realised
    count is within `exploration_tolerance(rows)` of ε × rows unless too few customers or too
    little budget are left (`PolicyResult.exploration_limited_by` says which)."""
    if not 0.0 <= exploration_share <= 0.5:
        raise ValueError(
            f"exploration_share: expected a share from 0 to 0.5, got {exploration_share}"
        )
    if budget is not None and budget < 0:
        raise ValueError(f"budget: expected a non-negative amount or None, got {budget}")
    if method not in ("auto", GREEDY, EXACT):
        raise ValueError(f"method: expected 'auto', 'greedy' or 'exact', got {method!r}")
    problem = _problem(
        uplift=uplift,
        value=value,
        costs=costs,
        control=control,
        eligible=eligible,
        revenue_uplift=revenue_uplift,
    )
    n = len(problem.customers)
    best = problem.increment.max(axis=1) if problem.actions else np.full(n, -np.inf)
    positive = np.flatnonzero(best > 0)
    common = {
        "budget": budget,
        "candidates": n,
        "negative": int(n - positive.size),
        "exploration_target": float(exploration_share),
    }
    chosen, used, gap = _choose(problem, positive, budget, method)
    explore = _NO_PLAN
    limited = ""
    if exploration_share > 0 and chosen[0].size:
        rng = np.random.default_rng(seed)
        # The pool: customers with an eligible action the policy did not pick, in random order,
        # each with a uniformly random eligible action, drawn once (deterministic for a seed).
        in_pool = np.isfinite(best)
        in_pool[chosen[0]] = False
        pool = rng.permutation(np.flatnonzero(in_pool))
        allowed = np.isfinite(problem.increment[pool])
        random_action = (rng.random(allowed.shape) * allowed).argmax(axis=1).astype(np.int64)
        ratio = exploration_share / (1 - exploration_share)
        k = min(pool.size, round(ratio * chosen[0].size))
        if budget is not None and k > 0:
            # The explored rows' cost is reserved and the policy spends the rest, so the more
            # rows are explored the fewer the policy picks: find the largest k with
            # k <= ratio × policy rows(k) by regula falsi on that monotone gap.
            draw_cost = np.where(problem.control[pool], 0.0, problem.cost[random_action])
            affordable = int(np.searchsorted(np.cumsum(draw_cost), budget + _EPS, side="right"))

            def policy_for(explored: int) -> tuple[tuple[Plan, str, float], float]:
                rest = np.ones(len(problem.customers), dtype=bool)
                rest[pool[:explored]] = False
                run = _choose(
                    problem,
                    positive[rest[positive]],
                    budget - float(draw_cost[:explored].sum()),
                    method,
                )
                return run, ratio * run[0][0].size - explored + 0.5

            low, low_run, low_gap = 0, (chosen, used, gap), ratio * chosen[0].size + 0.5
            high = min(k, affordable)
            high_run, high_gap = policy_for(high)
            if high_gap >= 0:
                low, low_run = high, high_run
            else:
                # Illinois variant: when one end stays put twice its gap is halved, so the
                # bracket shrinks from both sides.
                kept = ""
                for _ in range(EXPLORATION_PASSES):
                    rows_now = low + low_run[0][0].size
                    if high - low <= 1 or low_gap <= 0.5 + EXPLORATION_SETTLED * rows_now:
                        break
                    step = int((high - low) * low_gap / (low_gap - high_gap))
                    middle = min(high - 1, max(low + 1, low + step))
                    middle_run, middle_gap = policy_for(middle)
                    if middle_gap >= 0:
                        low, low_run, low_gap = middle, middle_run, middle_gap
                        high_gap = high_gap / 2 if kept == "high" else high_gap
                        kept = "high"
                    else:
                        high, high_gap = middle, middle_gap
                        low_gap = low_gap / 2 if kept == "low" else low_gap
                        kept = "low"
            k = low
            chosen, used, gap = low_run
        short = exploration_share * (k + chosen[0].size) - k > exploration_tolerance(
            k + chosen[0].size
        )
        if short and k == pool.size:
            limited = "customers"
        elif short and budget is not None:
            limited = "budget"
        explore = (pool[:k], random_action[:k])
    decisions = pd.concat([_frame(problem, chosen, POLICY), _frame(problem, explore, EXPLORATION)])
    return _result(decisions, method=used, gap_bound=gap, exploration_limited_by=limited, **common)


def risk_targeting(
    *,
    risk: pd.Series,
    action: str | pd.Series,
    costs: Mapping[str, float],
    control: pd.Series,
    budget: float | None = None,
    count: int | None = None,
    uplift: pd.DataFrame | None = None,
    value: pd.Series | None = None,
) -> PolicyResult:
    """The comparison the product shows beside the policy: customers by churn risk (highest
    first), each with the rule's `action` (one key, or one per customer), until `count` rows
    (control rows included, as `len(allocate(...).decisions)`) or the `budget` is reached
    (same arm-blind rule as the policy: a row is taken when its cost fits in what is left;
    only treated rows spend). `uplift`/`value` (optional) fill the predicted columns."""
    if count is not None and count < 0:
        raise ValueError(f"count: expected a non-negative number of customers, got {count}")
    customers = risk.index
    acts = (
        pd.Series(action, index=customers) if isinstance(action, str) else action.reindex(customers)
    )
    known = acts.notna()
    customers, acts = customers[known.to_numpy()], acts[known]
    names = sorted({str(a) for a in acts})
    frame = (
        uplift.reindex(index=customers, columns=names).fillna(0.0)
        if uplift is not None
        else pd.DataFrame(0.0, index=customers, columns=names)
    )
    problem = _problem(
        uplift=frame,
        value=value if value is not None else pd.Series(0.0, index=customers),
        costs=costs,
        control=control,
        eligible=None,
        revenue_uplift=None,
    )
    column = {name: i for i, name in enumerate(names)}
    act_index = np.array([column[str(a)] for a in acts], dtype=np.int64)
    rows = np.arange(len(customers), dtype=np.int64)
    order = np.argsort(-risk.reindex(customers).to_numpy(dtype=np.float64), kind="mergesort")
    step_cost = problem.cost[act_index]
    if budget is not None:
        taken = _walk(
            row=order.astype(np.int64),
            step=np.zeros_like(rows),
            cost=step_cost[order],
            control=problem.control[order],
            budget=budget,
            n_rows=len(rows),
        )
        picked = order[taken]
    else:
        picked = order
    if count is not None:
        picked = picked[:count]
    chosen = (picked.astype(np.int64), act_index[picked])
    if uplift is None or value is None:
        problem = _Problem(
            customers=problem.customers,
            actions=problem.actions,
            increment=np.full_like(problem.increment, np.nan),
            gain=np.full_like(problem.gain, np.nan),
            uplift=np.full_like(problem.uplift, np.nan),
            cost=problem.cost,
            control=problem.control,
        )
    return _result(
        _frame(problem, chosen, RULE),
        budget=budget,
        candidates=len(risk),
        negative=0,
        method="risk",
    )


# --- How much of a model's ranking the policy trusts -----------------------------------------


@dataclass(frozen=True)
class ActionEvidence:
    """What an uplift model has shown for one action on rows it did not train on: whether its
    ranking beats random targeting beyond noise (the 95% lower bound of the validation Qini is
    above 0), and the action's average effect measured on the randomised rows (treated rate −
    control rate, every finished row of the action and of the control arm)."""

    ranking_validated: bool
    average_effect: float


def evidence_adjusted(uplift: pd.DataFrame, evidence: Mapping[str, ActionEvidence]) -> pd.DataFrame:
    """The predictions the policy may act on. An action whose model ranking is validated keeps
    its per-customer predictions; for any other action every customer gets the action's average
    effect instead: a randomised holdout measures that average without bias, while a ranking that
    does not beat random on held-out rows is noise the policy would otherwise pick the top of
    (the "winner's curse"). An action without evidence keeps its predictions."""
    adjusted = uplift.copy()
    for action in adjusted.columns:
        known = evidence.get(str(action))
        if known is not None and not known.ranking_validated:
            adjusted[action] = float(known.average_effect)
    return adjusted
