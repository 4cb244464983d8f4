"""A synthetic customer population whose true effects we know, to test the uplift policy.
Pure numpy/pandas: no Django. Synthetic data only — nothing here describes real customers.

Each customer has observable features, a churn risk without contact, a value (what keeping
them is worth) and, per action, a true P(retained | action) that depends on the features:

* **persuadables** — mid-risk customers whose effect peaks where risk × (1 − risk) does; the
  discount works best on customers who often buy on discount, the SMS only on recent buyers,
  the call on customers with support tickets;
* **sure things** — low risk (under 15%): little left to gain;
* **lost causes** — nothing ordered for 150 days or more: very high risk, almost no effect;
* **sleeping dogs** (harmed) — members on automatic renewal (`auto_renew`) who have drifted
  away: high risk, and any contact reminds them to cancel, so every action *lowers*
  P(retained) (by 6 to 12 points, the call most).

Risk is correlated with the effect but not equal to it: the riskiest customers are lost causes
and sleeping dogs, so targeting by risk spends the budget where it does least or harms.
`randomised_history` draws a past campaign with random arms and outcomes from the truth, the
way our holdouts produce training data for `campaigns.uplift.models.fit_multi_action`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from campaigns.uplift.models import CONTROL_ARM

# Default actions (keys as the product names them: one rule of a campaign each) and their
# expected cost per contacted customer, in currency units.
DEFAULT_COSTS: dict[str, float] = {
    "rule-1": 4.0,  # 15% discount by e-mail: the expected discount granted
    "rule-2": 0.5,  # SMS reminder: the message
    "rule-3": 12.0,  # call from the service team: agent time
}
SEGMENTS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")


@dataclass(frozen=True)
class Population:
    """`features`: observable columns (index: customer id); `risk`: P(churn) without contact;
    `value`: what a retained customer is worth (currency); `retained`: true P(retained) per
    arm (columns CONTROL_ARM and every action); `segment`: the generating segment;
    `costs`: expected cost per action."""

    features: pd.DataFrame
    risk: pd.Series
    value: pd.Series
    retained: pd.DataFrame
    segment: pd.Series
    costs: dict[str, float]

    @property
    def actions(self) -> list[str]:
        return [c for c in self.retained.columns if c != CONTROL_ARM]

    def true_uplift(self) -> pd.DataFrame:
        """True change in P(retained) per action (customers × actions)."""
        return self.retained[self.actions].sub(self.retained[CONTROL_ARM], axis=0)

    def harmed(self) -> pd.DataFrame:
        """True where the action lowers the customer's P(retained)."""
        return self.true_uplift() < 0


def simulate_population(
    *, n: int, seed: int = 0, costs: dict[str, float] | None = None
) -> Population:
    """`n` customers with the four segments above (the mix comes from the features: about
    49% persuadable, 26% sure things, 12% lost causes, 13% sleeping dogs)."""
    if n <= 0:
        raise ValueError(f"n: expected a positive number of customers, got {n}")
    action_costs = dict(DEFAULT_COSTS if costs is None else costs)
    if list(action_costs) != list(DEFAULT_COSTS):
        raise ValueError(
            f"costs: expected the actions {list(DEFAULT_COSTS)}, got {list(action_costs)}"
        )
    rng = np.random.default_rng(seed)
    engagement = rng.normal(size=n)  # latent: drives orders and recency, not observed itself
    tenure = rng.gamma(2.0, 12.0, n).round(1)
    orders = rng.poisson(np.exp(0.6 + 0.6 * engagement))
    lapsed = rng.random(n) < 0.12
    recency = np.where(
        lapsed,
        rng.uniform(150, 365, n),
        rng.exponential(np.exp(3.3 - 0.5 * engagement)),
    ).round()
    orders = np.where(lapsed, 0, orders)
    discount_share = rng.beta(1.5, 3.0, n).round(3)
    tickets = rng.poisson(0.35, n)
    auto_renew = rng.random(n) < 0.15
    monthly_spend = rng.lognormal(3.4, 0.5, n).round(2)
    silent = auto_renew & ~lapsed

    logit = -1.2 - 0.7 * engagement + 0.35 * tickets - 0.015 * tenure + 1.6 * silent
    risk = 1.0 / (1.0 + np.exp(-logit))
    risk = np.where(lapsed, rng.uniform(0.75, 0.95, n), risk)
    # 4 r (1 - r): 1 at r = 0.5, small for sure things (r near 0) and the nearly lost.
    room = 4.0 * risk * (1.0 - risk)
    damp = np.where(lapsed, 0.1, 1.0)  # lost causes: no action brings them back
    effect = {
        "rule-1": 0.05 + 0.30 * discount_share,
        "rule-2": 0.08 * (recency < 45),
        "rule-3": 0.05 + 0.12 * np.minimum(tickets, 2),
    }
    harm = {"rule-1": 0.06, "rule-2": 0.08, "rule-3": 0.12}
    base = 1.0 - risk
    retained = {CONTROL_ARM: base}
    for action in action_costs:
        lift = np.where(silent, -harm[action], room * damp * effect[action])
        retained[action] = np.clip(base + lift, 0.005, 0.995)
    segment = np.select(
        [silent, lapsed, risk < 0.15],
        ["sleeping_dog", "lost_cause", "sure_thing"],
        default="persuadable",
    )
    # An auto-renewing membership pays its fee every year on top of the orders' margin.
    value = (12 * monthly_spend * 0.3 + 60.0 * auto_renew).round(2)
    index = pd.RangeIndex(n, name="customer")
    features = pd.DataFrame(
        {
            "tenure_months": tenure,
            "orders_90d": orders,
            "days_since_last_order": recency,
            "discount_share": discount_share,
            "support_tickets_90d": tickets,
            "auto_renew": auto_renew.astype(int),
            "monthly_spend": monthly_spend,
        },
        index=index,
    )
    return Population(
        features=features,
        risk=pd.Series(risk, index=index, name="risk"),
        value=pd.Series(value, index=index, name="value"),
        retained=pd.DataFrame(retained, index=index),
        segment=pd.Series(segment, index=index, name="segment"),
        costs=action_costs,
    )


def randomised_history(
    population: Population, *, control_share: float = 0.25, seed: int = 0
) -> pd.DataFrame:
    """A past randomised campaign: each customer in the control arm with `control_share`,
    else a uniformly random action; `retained` (0/1) drawn from the true probability.
    Columns `arm`, `retained` (index: customer id)."""
    if not 0.0 < control_share < 1.0:
        raise ValueError(
            f"control_share: expected a share strictly between 0 and 1, got {control_share}"
        )
    rng = np.random.default_rng(seed)
    n = len(population.features)
    actions = np.asarray(population.actions, dtype=object)
    arm = np.where(
        rng.random(n) < control_share, CONTROL_ARM, actions[rng.integers(0, actions.size, n)]
    )
    columns = {name: i for i, name in enumerate(population.retained.columns)}
    p = population.retained.to_numpy()[np.arange(n), [columns[a] for a in arm]]
    return pd.DataFrame(
        {"arm": arm, "retained": (rng.random(n) < p).astype(int)}, index=population.features.index
    )


@dataclass(frozen=True)
class TrueOutcome:
    """What a set of decisions truly achieves (from the simulator's truth, treated rows only:
    control rows are never contacted): `increment` = Σ (true uplift × value − cost),
    `retained` = Σ true uplift (extra customers kept), `cost`, `contacted`, `harmed` =
    contacted customers whose action lowers their P(retained)."""

    increment: float
    retained: float
    cost: float
    contacted: int
    harmed: int


def true_outcome(population: Population, decisions: pd.DataFrame) -> TrueOutcome:
    """Score `decisions` (the policy's frame: index customer, `action`, `control`) with the
    truth."""
    treated = decisions[~decisions["control"].astype(bool)]
    lift = population.true_uplift()
    columns = {name: i for i, name in enumerate(lift.columns)}
    rows = lift.index.get_indexer(treated.index)
    if (rows < 0).any():
        raise ValueError("decisions: some customers are not in the population")
    cols = np.array([columns[a] for a in treated["action"]], dtype=np.int64)
    true_lift = lift.to_numpy()[rows, cols]
    cost = np.array([population.costs[a] for a in treated["action"]], dtype=np.float64)
    value = population.value.to_numpy()[rows]
    return TrueOutcome(
        increment=float((true_lift * value - cost).sum()),
        retained=float(true_lift.sum()),
        cost=float(cost.sum()),
        contacted=len(treated),
        harmed=int((true_lift < 0).sum()),
    )
