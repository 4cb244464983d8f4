"""Risk tier writes: re-tier a stored scoring run from its probabilities (no re-scoring), in
set-based SQL that applies the same rule as `scoring.ml.tiers`, and report who moved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from customers.models import Customer
from scoring.errors import ScoringError
from scoring.ml.tiers import PPM, RANK, TierRule, tier_conditions
from scoring.models import CustomerScore, ScoringRun
from scoring.selectors import risk_tier_rules, scoring_run_latest


@dataclass(frozen=True)
class TierReassignment:
    """What a re-tiering changed: customers moved per (from tier, to tier), and the run's
    tier sizes afterwards (most severe first)."""

    run_key: str
    moved: dict[tuple[str, str], int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total_moved(self) -> int:
        return sum(self.moved.values())

    def describe(self) -> str:
        """E.g. "120 customers moved (critical → high 80, medium → high 40); tiers now …"."""
        sizes = ", ".join(f"{name} {n:,}" for name, n in self.counts.items())
        if not self.moved:
            return f"No customer changed tier in run {self.run_key}; tiers: {sizes}."
        rank = {name: i for i, name in enumerate(self.counts)}  # most severe first

        def order(kv: tuple[tuple[str, str], int]) -> tuple[int, int, int]:
            (source, target), n = kv
            return (-n, rank.get(target, len(rank)), rank.get(source, len(rank)))

        moves = ", ".join(f"{a} → {b} {n:,}" for (a, b), n in sorted(self.moved.items(), key=order))
        noun = "customer" if self.total_moved == 1 else "customers"
        return (
            f"{self.total_moved:,} {noun} moved in run {self.run_key} ({moves}); "
            f"tiers now: {sizes}."
        )


def _ranked_sql(table: str) -> str:
    """Each scorable score of a run with its position (how many are strictly more at risk,
    so ties share it) and the run's scorable count: the inputs of the tier rule."""
    return (
        "SELECT id, tier, probability, RANK() OVER (ORDER BY probability DESC) - 1 AS pos, "
        f"COUNT(*) OVER () AS n FROM {table} "
        "WHERE run_id = %s AND scorable AND probability IS NOT NULL"
    )


def _case_sql(rules: Sequence[TierRule]) -> tuple[str, list[Any]]:
    """The tier rule of `scoring.ml.tiers.assign_ranked_tiers` as one SQL CASE."""
    conditions, rest = tier_conditions(rules)
    parts: list[str] = []
    params: list[Any] = []
    for c in conditions:
        if c.mode == RANK:
            parts.append(f"WHEN pos * {PPM} < %s * n THEN %s")
            params += [c.cumulative_ppm, c.name]
        else:
            parts.append("WHEN probability >= %s THEN %s")
            params += [c.min_probability, c.name]
    return f"CASE {' '.join(parts)} ELSE %s END", [*params, rest]


def tiers_reassign(
    *, run: ScoringRun | None = None, rules: Sequence[TierRule] | None = None
) -> TierReassignment:
    """Re-tier `run` (default: the latest completed run) from its stored probabilities with
    the configured tiers: one set-based UPDATE of the scores, one of the customers who still
    carry this run's score. Not-scorable scores keep their tier. Returns who moved."""
    run = run or scoring_run_latest()
    if run is None:
        raise ScoringError("there is no completed scoring run to re-tier yet")
    rules = list(rules or risk_tier_rules())
    case, case_params = _case_sql(rules)
    quote = connection.ops.quote_name
    scores, customers = quote(CustomerScore._meta.db_table), quote(Customer._meta.db_table)
    ranked = _ranked_sql(scores)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One ranking (a sort of the whole run) serves both the count and the update.
            cursor.execute(
                f"WITH x AS (SELECT id, tier, {case} AS new_tier FROM ({ranked}) r), "
                f"changed AS (UPDATE {scores} SET tier = x.new_tier FROM x "
                f"WHERE {scores}.id = x.id AND {scores}.tier <> x.new_tier RETURNING 1) "
                "SELECT tier, new_tier, COUNT(*) FROM x GROUP BY 1, 2",
                [*case_params, run.pk],
            )
            pairs = {(old, new): int(n) for old, new, n in cursor.fetchall()}
        else:
            cursor.execute(
                f"SELECT tier, {case} AS new_tier, COUNT(*) FROM ({ranked}) r GROUP BY 1, 2",
                [*case_params, run.pk],
            )
            pairs = {(old, new): int(n) for old, new, n in cursor.fetchall()}
            cursor.execute(
                f"UPDATE {scores} SET tier = x.new_tier FROM "
                f"(SELECT id, {case} AS new_tier FROM ({ranked}) r) x "
                f"WHERE {scores}.id = x.id AND {scores}.tier <> x.new_tier",
                [*case_params, run.pk],
            )
        cursor.execute(
            f"UPDATE {customers} SET risk_tier = s.tier FROM {scores} s "
            f"WHERE s.run_id = %s AND {customers}.id = s.customer_id "
            f"AND {customers}.scored_at = s.scored_at AND {customers}.risk_tier <> s.tier",
            [run.pk],
        )
        counts = {r.name: 0 for r in rules}
        for (_old, new), n in pairs.items():
            counts[new] = counts.get(new, 0) + n
        ScoringRun.objects.filter(pk=run.pk).update(tier_counts=counts)
    run.tier_counts = counts
    moved = {pair: n for pair, n in pairs.items() if pair[0] != pair[1]}
    return TierReassignment(run_key=run.run_key, moved=moved, counts=counts)
