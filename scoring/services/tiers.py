"""Risk tier writes: re-tier a stored scoring run from its probabilities (no re-scoring) with
the rule of `scoring.ml.tiers`, write only the tiers that change, and report who moved."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from django.db import connection, transaction

from common.db.frames import frame_from_columns
from common.db.lookups import any_of_sql
from customers.models import Customer
from scoring.errors import ScoringError
from scoring.ml.tiers import TierRule, ranked_tier_codes
from scoring.models import CustomerScore, ScoringRun
from scoring.selectors import risk_tier_rules, scoring_run_latest


@dataclass(frozen=True)
class TierReassignment:
    """What a re-tiering changed: customers moved per (from tier, to tier), and the run's
    tier sizes afterwards (most severe first)."""

    run_key: str
    moved: dict[tuple[str, str], int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    # The lowest probability of a customer in a tier above the least severe (None: nobody).
    at_risk_from: float | None = None
    # Those customers (ids) and their probabilities (what the run's finish explains from).
    at_risk_customers: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False, compare=False
    )
    at_risk_probabilities: np.ndarray = field(
        default_factory=lambda: np.zeros(0), repr=False, compare=False
    )

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


# Changed rows per statement when the customers' tiers follow their scores' (parameters).
_CHANGED_PER_STATEMENT = 10_000


# The run's scorable scores as `tiers_reassign` ranks them, given its tier names: customer_id,
# probability and the stored tier as its position in the names (-1 for another name).
RankedRows = Callable[[list[str]], pd.DataFrame | None]


def tiers_reassign(
    *,
    run: ScoringRun | None = None,
    rules: Sequence[TierRule] | None = None,
    ranked_rows: RankedRows | None = None,
) -> TierReassignment:
    """Re-tier `run` (default: the latest completed run) from its stored probabilities with
    the configured tiers, and return who moved. Not-scorable scores keep their tier.

    The run's scorable probabilities are read (fixed-width, COPY BINARY on PostgreSQL: exact
    floats; or from `ranked_rows`, where it has them: a run's finish reads what its chunks
    kept) and ranked by `scoring.ml.tiers.ranked_tier_codes` — the rule every chunk applied,
    so ties never split; only the scores whose tier changes are written, and only their
    customers (those who still carry this run's score) follow. Every writer of a score's tier
    also writes its customer's, so an unchanged score's customer already has it. A scheduled
    run holds one score per customer, so a customer's id names its score. In SQL, ranking the
    run with a window function and joining every score to its customer took 8.8 s of the
    1M-customer run's finish (a serial step) on the 2026-11-30 machine."""
    run = run or scoring_run_latest()
    if run is None:
        raise ScoringError("there is no completed scoring run to re-tier yet")
    rules = list(rules or risk_tier_rules())
    quote = connection.ops.quote_name
    scores, customers = quote(CustomerScore._meta.db_table), quote(Customer._meta.db_table)
    ranked = "run_id = %s AND scorable AND probability IS NOT NULL"
    with transaction.atomic():
        scorable = CustomerScore.objects.filter(run=run, scorable=True, probability__isnull=False)
        # The stored tiers are read as numbers of the configured names; only a run holding
        # other names (a tier renamed or removed since) needs them looked up and read again
        # (looking them up first, a scan of the run's scores, took 0.9 s of a 1M-row finish).
        names = [rule.name for rule in rules]
        given = ranked_rows(names) if ranked_rows is not None else None
        rows = given if given is not None else _ranked_rows(run=run, names=names, where=ranked)
        if (rows["old"].to_numpy() < 0).any():
            names += list(
                scorable.exclude(tier__in=names).values_list("tier", flat=True).distinct()
            )
            rows = _ranked_rows(run=run, names=names, where=ranked)
        # Tiers as numbers into `every` (a million names took ~0.3 s to compare and count).
        every = [*names, ""]
        old = rows["old"].to_numpy(dtype=np.int64) % len(every)  # -1: the last, ""
        probabilities = rows["probability"].to_numpy(dtype=np.float64)
        codes, ranked_names = ranked_tier_codes(probabilities=probabilities, rules=rules)
        new = np.asarray([every.index(name) for name in ranked_names], dtype=np.int64)[codes]
        risky = new != every.index(ranked_names[-1])  # not the least severe tier
        at_risk = probabilities[risky]
        pairs: Counter[tuple[str, str]] = Counter()
        moves = np.bincount(old * len(every) + new, minlength=len(every) ** 2)
        for pair in np.flatnonzero(moves).tolist():
            pairs[(every[pair // len(every)], every[pair % len(every)])] += int(moves[pair])
        changed = np.flatnonzero(old != new)
        ids = rows["customer_id"].to_numpy()[changed].tolist()
        _scores_retier(scores, run.pk, ids, np.asarray(every, dtype=object)[new[changed]].tolist())
        with connection.cursor() as cursor:
            for start in range(0, len(ids), _CHANGED_PER_STATEMENT):
                among, params = any_of_sql(
                    "s.customer_id", ids[start : start + _CHANGED_PER_STATEMENT], connection.vendor
                )
                cursor.execute(
                    f"UPDATE {customers} SET risk_tier = s.tier FROM {scores} s "
                    f"WHERE s.run_id = %s AND {among} AND {customers}.id = s.customer_id "
                    f"AND {customers}.scored_at = s.scored_at AND {customers}.risk_tier <> s.tier",
                    [run.pk, *params],
                )
        counts = {r.name: 0 for r in rules}
        for (_old, tier), n in pairs.items():
            counts[tier] = counts.get(tier, 0) + n
        ScoringRun.objects.filter(pk=run.pk).update(tier_counts=counts)
    run.tier_counts = counts
    moved = {pair: n for pair, n in pairs.items() if pair[0] != pair[1]}
    return TierReassignment(
        run_key=run.run_key,
        moved=moved,
        counts=counts,
        at_risk_from=float(at_risk.min()) if len(at_risk) else None,
        at_risk_customers=rows["customer_id"].to_numpy(dtype=np.int64)[risky],
        at_risk_probabilities=at_risk,
    )


def _ranked_rows(*, run: ScoringRun, names: list[str], where: str) -> pd.DataFrame:
    """The run's scorable scores (`RankedRows`), read from the table."""
    case = " ".join("WHEN %s THEN " + str(i) for i in range(len(names)))
    return frame_from_columns(
        CustomerScore._meta.db_table,
        {
            "customer_id": ("customer_id", "int8"),
            "probability": ("probability", "float8"),
            "old": (f"CASE tier {case} ELSE -1 END" if names else "-1", "int4"),
        },
        where=where,
        params=[*names, run.pk],
    )


def _scores_retier(table: str, run_id: int, customers: list[int], tiers: list[str]) -> None:
    """Set the run's score of each customer of `customers` to its tier of `tiers`: two array
    parameters on PostgreSQL (common.db.lookups says why), a statement per row elsewhere."""
    if not customers:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} SET tier = v.tier FROM unnest(%s::bigint[], %s::text[]) "
                f"AS v(customer_id, tier) WHERE {table}.run_id = %s "
                f"AND {table}.customer_id = v.customer_id",
                [customers, tiers, run_id],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET tier = %s WHERE run_id = %s AND customer_id = %s",
                [(tier, run_id, customer) for tier, customer in zip(tiers, customers, strict=True)],
            )
