"""Every computation and state change of campaign measurement: outcomes of both arms (SQL
aggregates), uplift figures per campaign, cycle, rule, tier and channel, the global-control
program report, UpliftReport snapshots and the CSV export of the assignment log.

The ORM-to-arrays bridge: the database aggregates per intervention and then per cell (arm x
rule x tier x channel x cycle), pandas rolls the few cells up into breakdowns, and the pure
statistics in campaigns.uplift do the inference. No per-intervention Python loop anywhere.

Definitions (docs/uplift.md):
- Analysis population: intention to treat among the customers the dispatch took — control
  rows `held_out`, treatment rows not suppressed at dispatch (sent, failed, bounced, still
  pending, or suppressed later by the relay's last check all stay in). Global-control rows are
  excluded here and measured by the program report.
- retained: a completed order placed in [assignment, assignment + attribution window).
- converted: retained, or a `converted` response in the window — responses only when both
  arms have some (a client logging conversions for treated customers only would bias it).
- revenue: completed-order amount in the window (0 for no order).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignCycle,
    Intervention,
    ReportKind,
    ReportStatus,
    Rule,
    SuppressionReason,
    UpliftReport,
)
from campaigns.uplift import (
    MeanUplift,
    ProportionUplift,
    campaign_economics,
    incremental_customers,
    mean_difference_from_summary,
    proportion_difference,
)

# Rows per chunk of the CSV export: one keyset-paginated query each (an index probe of the
# orders per intervention), ~2 MB of CSV — the browser gets bytes at once, memory stays flat.
CSV_CHUNK = 10_000
# PostgreSQL work_mem of the report query (SET LOCAL, this transaction only).
REPORT_WORK_MEM = "256MB"
# Program report: orders counted this many days after a customer's first intervention.
PROGRAM_WINDOW_DAYS = 30

ANALYSIS_POPULATION = Q(arm="control", status="held_out") | (
    Q(arm="treatment") & (~Q(status="suppressed") | Q(claimed_at__isnull=False))
)
_POPULATION_SQL = (
    "((i.arm = 'control' AND i.status = 'held_out') OR "
    "(i.arm = 'treatment' AND (i.status <> 'suppressed' OR i.claimed_at IS NOT NULL)))"
)
_CONTACTED_SQL = "(i.arm = 'treatment' AND i.status IN ('sent', 'delivered'))"


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _window(column: str, start: str, days: str) -> str:
    """SQL: `column` lies in [start, start + days)."""
    if _postgres():
        return f"{column} >= {start} AND {column} < {start} + {days} * INTERVAL '1 day'"
    return (
        f"julianday({column}) >= julianday({start}) "
        f"AND julianday({column}) < julianday({start}) + {days}"
    )


def _days_between(later: str, earlier: str) -> str:
    if _postgres():
        return f"EXTRACT(EPOCH FROM ({later} - {earlier})) / 86400.0"
    return f"(julianday({later}) - julianday({earlier}))"


def _floor(expression: str) -> str:
    # PostgreSQL's CAST(float AS int) rounds; days are never negative, so truncation is floor.
    return (
        f"CAST(FLOOR({expression}) AS INTEGER)" if _postgres() else f"CAST({expression} AS INTEGER)"
    )


def _per_intervention_sql(where: str, extra_columns: str = "") -> str:
    """One row per intervention with its outcome inside its attribution window. The orders are
    aggregated per intervention in a narrow subquery (id, count, sum, first time) so the large
    join's GROUP BY carries no wide rows; `where` (on alias i) is used three times."""
    window = "c.attribution_window_days"
    return f"""
        SELECT i.id AS intervention_id, i.arm, i.rule_id, i.risk_tier, i.channel, i.cycle_id,
               i.created_at, {window} AS window_days,
               CASE WHEN {_CONTACTED_SQL} THEN 1 ELSE 0 END AS contacted,
               CASE WHEN {_CONTACTED_SQL} AND cp.id IS NULL THEN i.offer_cost ELSE 0 END
                   AS offer_made,
               CASE WHEN cp.redeemed_at IS NOT NULL THEN 1 ELSE 0 END AS redeemed,
               COALESCE(cp.redeemed_discount, 0) AS discount,
               COALESCE(oa.orders, 0) AS orders,
               COALESCE(oa.revenue, 0) AS revenue,
               {_days_between("oa.first_at", "i.created_at")} AS first_day,
               CASE WHEN cr.intervention_id IS NULL THEN 0 ELSE 1 END AS converted_response
               {extra_columns}
        FROM campaigns_intervention i
        JOIN campaigns_campaign c ON c.id = i.campaign_id
        LEFT JOIN campaigns_coupon cp ON cp.intervention_id = i.id
        LEFT JOIN (
            SELECT i.id AS intervention_id, COUNT(*) AS orders,
                   SUM(CAST(o.amount AS DOUBLE PRECISION)) AS revenue,
                   MIN(o.placed_at) AS first_at
            FROM campaigns_intervention i
            JOIN campaigns_campaign c ON c.id = i.campaign_id
            JOIN customers_order o
              ON o.customer_id = i.customer_id AND o.status = 'completed'
             AND {_window("o.placed_at", "i.created_at", window)}
            WHERE {where}
            GROUP BY i.id
        ) oa ON oa.intervention_id = i.id
        LEFT JOIN (
            SELECT DISTINCT r.intervention_id
            FROM campaigns_response r
            JOIN campaigns_intervention i ON i.id = r.intervention_id
            JOIN campaigns_campaign c ON c.id = i.campaign_id
            WHERE r.kind = 'converted' AND {_window("r.occurred_at", "i.created_at", window)}
              AND {where}
        ) cr ON cr.intervention_id = i.id
        WHERE {where}
    """


# How often _per_intervention_sql (the CSV export's query) repeats its `where` parameters.
WHERE_REPEATS = 3


KEYS = ["arm", "rule_id", "risk_tier", "channel", "cycle_id"]
CELL_COLUMNS = [
    "part",
    *KEYS,
    "day",
    "n",
    "retained",
    "converted_response",
    "retained_or_converted",
    "revenue",
    "revenue_sq",
    "orders",
    "contacted",
    "offer_made",
    "redeemed",
    "discount",
    "first_assigned",
    "last_assigned",
    "window_days",
]
NUMERIC = CELL_COLUMNS[7:18]
_KEYS_SQL = "i.arm, i.rule_id, i.risk_tier, i.channel, i.cycle_id"


def _population_cells_sql(where: str) -> str:
    """Per cell (arm x rule x tier x channel x cycle): size, contacts and costs — no orders."""
    return f"""
        SELECT {_KEYS_SQL}, COUNT(*),
               SUM(CASE WHEN {_CONTACTED_SQL} THEN 1 ELSE 0 END),
               SUM(CASE WHEN {_CONTACTED_SQL} AND cp.id IS NULL THEN i.offer_cost ELSE 0 END),
               SUM(CASE WHEN cp.redeemed_at IS NOT NULL THEN 1 ELSE 0 END),
               SUM(COALESCE(cp.redeemed_discount, 0)),
               MIN(i.created_at), MAX(i.created_at), MAX(c.attribution_window_days)
        FROM campaigns_intervention i
        JOIN campaigns_campaign c ON c.id = i.campaign_id
        LEFT JOIN campaigns_coupon cp ON cp.intervention_id = i.id
        WHERE {where}
        GROUP BY {_KEYS_SQL}
    """


def _order_cells_sql(where: str) -> str:
    """The interventions that ordered in their window, aggregated per intervention in one narrow
    pass over the join (the only large step), then per cell — retained, orders, revenue and its
    square — and per arm and day of the first order (the cumulative retention curve)."""
    window = "c.attribution_window_days"
    return f"""
        WITH oa AS (
            SELECT i.id, {_KEYS_SQL}, COUNT(*) AS orders,
                   SUM(CAST(o.amount AS DOUBLE PRECISION)) AS revenue,
                   {_days_between("MIN(o.placed_at)", "i.created_at")} AS first_day
            FROM campaigns_intervention i
            JOIN campaigns_campaign c ON c.id = i.campaign_id
            JOIN customers_order o
              ON o.customer_id = i.customer_id AND o.status = 'completed'
             AND {_window("o.placed_at", "i.created_at", window)}
            WHERE {where}
            GROUP BY i.id, c.id
        )
        SELECT 'cell', arm, rule_id, risk_tier, channel, cycle_id, -1, COUNT(*), SUM(orders),
               SUM(revenue), SUM(revenue * revenue)
        FROM oa GROUP BY arm, rule_id, risk_tier, channel, cycle_id
        UNION ALL
        SELECT 'curve', arm, NULL, NULL, NULL, NULL, {_floor("first_day")}, COUNT(*), 0, 0, 0
        FROM oa GROUP BY arm, {_floor("first_day")}
    """


def _response_cells_sql(where: str) -> str:
    """Per cell: interventions with a `converted` response in the window, and those of them
    without an order in the window (so retained-or-converted = retained + these)."""
    window = "c.attribution_window_days"
    return f"""
        SELECT {_KEYS_SQL}, COUNT(*),
               SUM(CASE WHEN EXISTS (
                   SELECT 1 FROM customers_order o
                   WHERE o.customer_id = i.customer_id AND o.status = 'completed'
                     AND {_window("o.placed_at", "i.created_at", window)}
               ) THEN 0 ELSE 1 END)
        FROM campaigns_intervention i
        JOIN campaigns_campaign c ON c.id = i.campaign_id
        WHERE {where} AND EXISTS (
            SELECT 1 FROM campaigns_response r
            WHERE r.intervention_id = i.id AND r.kind = 'converted'
              AND {_window("r.occurred_at", "i.created_at", window)}
        )
        GROUP BY {_KEYS_SQL}
    """


def _fetch(cursor: Any, sql: str, params: list[Any], columns: list[str]) -> pd.DataFrame:
    cursor.execute(sql, params)
    return pd.DataFrame.from_records(cursor.fetchall(), columns=columns)


def campaign_outcome_cells(
    *, campaign: Campaign, cycle: CampaignCycle | None = None
) -> pd.DataFrame:
    """The cells of a campaign's (or one cycle's) analysis population, and the curve rows
    (part "curve": arm, day of first order, n). Three aggregates merged on the cell key."""
    where = f"i.campaign_id = %s AND {_POPULATION_SQL}"
    params: list[Any] = [campaign.pk]
    if cycle is not None:
        where += " AND i.cycle_id = %s"
        params.append(cycle.pk)
    with transaction.atomic(), connection.cursor() as cursor:
        if _postgres():
            # Enough memory for the per-intervention hash aggregate of a million rows to stay
            # in memory (the default 4 MB spills it to disk), and no JIT: it costs ~1 s to
            # compile plans that run once.
            cursor.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
            cursor.execute("SET LOCAL jit = off")
        population = _fetch(
            cursor,
            _population_cells_sql(where),
            params,
            [*KEYS, "n", "contacted", "offer_made", "redeemed", "discount",
             "first_assigned", "last_assigned", "window_days"],
        )  # fmt: skip
        ordered = _fetch(
            cursor,
            _order_cells_sql(where),
            params,
            ["part", *KEYS, "day", "count", "orders", "revenue", "revenue_sq"],
        )
        responded = _fetch(
            cursor,
            _response_cells_sql(where),
            params,
            [*KEYS, "converted_response", "converted_without_order"],
        )
    cells_orders = ordered.loc[ordered["part"].eq("cell")].drop(columns=["part", "day"])
    cells_orders = cells_orders.rename(columns={"count": "retained"})
    cells = population.merge(cells_orders, on=KEYS, how="left").merge(
        responded, on=KEYS, how="left"
    )
    cells["retained_or_converted"] = 0.0
    for column in [*NUMERIC, "converted_without_order", "window_days"]:
        cells[column] = pd.to_numeric(cells[column].map(_number), errors="coerce").fillna(0.0)
    cells["retained_or_converted"] = cells["retained"] + cells["converted_without_order"]
    cells["part"], cells["day"] = "cell", -1.0
    curve = ordered.loc[ordered["part"].eq("curve"), ["part", "arm", "day", "count"]]
    curve = curve.rename(columns={"count": "n"})
    frame = pd.concat([cells[CELL_COLUMNS], curve], ignore_index=True)
    for column in [*NUMERIC, "day", "window_days"]:
        frame[column] = pd.to_numeric(frame[column].map(_number), errors="coerce").fillna(0.0)
    for column in ("first_assigned", "last_assigned"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


def _number(value: Any) -> Any:
    return float(value) if value is not None and not isinstance(value, str) else value


# --- statistics per group --------------------------------------------------------------------


def _arm_figures(sums: pd.Series | None, converted_column: str) -> dict[str, Any]:
    n = int(sums["n"]) if sums is not None else 0
    if n == 0 or sums is None:
        return {
            "n": 0,
            "retained": 0,
            "rate": None,
            "converted": 0,
            "conversion_rate": None,
            "revenue": 0.0,
            "revenue_per_customer": None,
            "orders": 0,
            "contacted": 0,
            "redeemed": 0,
        }
    return {
        "n": n,
        "retained": int(sums["retained"]),
        "rate": float(sums["retained"]) / n,
        "converted": int(sums[converted_column]),
        "conversion_rate": float(sums[converted_column]) / n,
        "revenue": round(float(sums["revenue"]), 2),
        "revenue_per_customer": float(sums["revenue"]) / n,
        "orders": int(sums["orders"]),
        "contacted": int(sums["contacted"]),
        "redeemed": int(sums["redeemed"]),
    }


def _variance(sums: pd.Series) -> float:
    n = float(sums["n"])
    total, squares = float(sums["revenue"]), float(sums["revenue_sq"])
    return max((squares - total * total / n) / (n - 1), 0.0)


def group_figures(
    *, label: Any, arms: dict[str, pd.Series], converted_column: str
) -> dict[str, Any]:
    """The uplift figures of one group from its per-arm sums (n, retained, revenue, revenue_sq,
    cost columns): rates, differences with 95% CIs and p-values, revenue per customer (Welch),
    incremental customers and revenue, cost and ROI."""
    treated, control = arms.get("treatment"), arms.get("control")
    t = _arm_figures(treated, converted_column)
    c = _arm_figures(control, converted_column)
    offer_cost = sum(float(s["discount"] + s["offer_made"]) for s in arms.values())
    message_cost = sum(float(s["message_cost"]) for s in arms.values())
    out: dict[str, Any] = {
        "group": label,
        "treatment": t,
        "control": c,
        "retention": None,
        "conversion": None,
        "revenue": None,
        "incremental_customers": None,
        "incremental_revenue": None,
        "cost": {
            "offers": round(offer_cost, 2),
            "messages": round(message_cost, 2),
            "total": round(offer_cost + message_cost, 2),
        },
        "roi": None,
        "roi_ci_low": None,
        "roi_ci_high": None,
        "note": None,
    }
    if treated is None or control is None or t["n"] == 0 or c["n"] == 0:
        out["note"] = "no control customers" if t["n"] else "no treated customers"
        return out
    retention: ProportionUplift = proportion_difference(
        treated_successes=t["retained"],
        treated_n=t["n"],
        control_successes=c["retained"],
        control_n=c["n"],
    )
    out["retention"] = retention.to_dict()
    out["conversion"] = proportion_difference(
        treated_successes=t["converted"],
        treated_n=t["n"],
        control_successes=c["converted"],
        control_n=c["n"],
    ).to_dict()
    out["incremental_customers"] = incremental_customers(
        uplift=retention, treated_n=t["n"]
    ).to_dict()
    if min(t["n"], c["n"]) < 2:
        out["note"] = "revenue needs at least 2 customers per arm"
        return out
    revenue: MeanUplift = mean_difference_from_summary(
        treated_mean=t["revenue_per_customer"],
        treated_var=_variance(treated),
        treated_n=t["n"],
        control_mean=c["revenue_per_customer"],
        control_var=_variance(control),
        control_n=c["n"],
    )
    out["revenue"] = revenue.to_dict()
    economics = campaign_economics(
        revenue_uplift=revenue,
        treated_n=t["n"],
        offer_cost_total=offer_cost,
        message_cost_total=message_cost,
        retention_uplift=retention,
    )
    out["incremental_revenue"] = {
        "estimate": economics.incremental_revenue,
        "ci_low": economics.incremental_revenue_ci_low,
        "ci_high": economics.incremental_revenue_ci_high,
    }
    out["roi"], out["roi_ci_low"], out["roi_ci_high"] = (
        economics.roi,
        economics.roi_ci_low,
        economics.roi_ci_high,
    )
    out["net_incremental_revenue"] = economics.net_incremental_revenue
    out["cost_per_incremental_customer"] = economics.cost_per_incremental_customer
    return out


def _breakdown(
    cells: pd.DataFrame, key: str, labels: dict[Any, Any], converted_column: str
) -> list[dict[str, Any]]:
    sums = cells.groupby([key, "arm"], dropna=False)[[*NUMERIC, "message_cost"]].sum()
    groups: list[dict[str, Any]] = []
    for value in sorted(cells[key].dropna().unique(), key=lambda v: (str(type(v)), v)):
        part = sums.xs(value, level=key)
        arms = {str(arm): part.loc[arm] for arm in part.index}
        groups.append(
            group_figures(
                label=labels.get(value, value), arms=arms, converted_column=converted_column
            )
        )
    return groups


def _curve(curve: pd.DataFrame, sizes: dict[str, int], window_days: int) -> dict[str, Any]:
    """Cumulative share of each arm retained by day d of the window (d = 0 … window)."""
    days = list(range(window_days + 1))
    out: dict[str, Any] = {"days": days}
    for arm in ("treatment", "control"):
        rows = curve.loc[curve["arm"].eq(arm)]
        counts = np.zeros(window_days + 1)
        for day, n in zip(rows["day"].astype(int), rows["n"], strict=True):
            if 0 <= day < window_days:
                counts[day + 1] += n
        size = sizes.get(arm, 0)
        out[arm] = (np.cumsum(counts) / size).round(6).tolist() if size else []
    return out


def _simulation_truth(cycles: list[CampaignCycle]) -> dict[str, Any] | None:
    """The simulator's true effect (demo only), weighted over the simulated cycles."""
    sims = [c.summary.get("simulation") for c in cycles if (c.summary or {}).get("simulation")]
    if not sims:
        return None
    weight = sum(s["treated_n"] for s in sims) or 1
    return {
        "synthetic": True,
        "true_retention_effect": sum(s["true_retention_effect"] * s["treated_n"] for s in sims)
        / weight,
        "true_effect_by_tier": sims[-1]["true_effect_by_tier"],
        "baseline_by_tier": sims[-1]["baseline_by_tier"],
        "cycles": len(sims),
    }


def campaign_uplift(
    *, campaign: Campaign, cycle: CampaignCycle | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """What a campaign (or one of its cycles) changed, as JSON-safe figures: overall and per
    rule, risk tier, channel and cycle — see group_figures — plus the cumulative retention
    curves, the excluded rows per reason, the status (interim until every window has closed)
    and, for a simulated demo campaign, the simulator's true effect."""
    started = time.perf_counter()
    now = now or timezone.now()
    frame = campaign_outcome_cells(campaign=campaign, cycle=cycle)
    cells = frame.loc[frame["part"].eq("cell")].copy()
    costs = dict(settings.CAMPAIGN_MESSAGE_COST)
    cells["message_cost"] = cells["contacted"] * cells["channel"].map(costs).fillna(0.0)
    window = int(campaign.attribution_window_days)
    scope = Intervention.objects.filter(campaign=campaign)
    if cycle is not None:
        scope = scope.filter(cycle=cycle)
    excluded = {
        f"{row['arm']}:{row['reason'] or row['status']}": row["n"]
        for row in scope.exclude(ANALYSIS_POPULATION)
        .values("arm", "reason", "status")
        .annotate(n=Count("pk"))
        .order_by()
    }
    cycles = [cycle] if cycle is not None else list(campaign.cycles.order_by("started_at"))
    figures: dict[str, Any] = {
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "control_percentage": float(campaign.control_percentage),
            "attribution_window_days": window,
        },
        "cycle": {"id": cycle.pk, "cycle_key": cycle.cycle_key} if cycle is not None else None,
        "measured_at": now.isoformat(),
        "excluded": excluded,
        "simulation": _simulation_truth(cycles),
    }
    if cells.empty:
        figures.update(
            status=ReportStatus.EMPTY.value,
            note="No intervention to measure yet (no cycle took anyone).",
            overall=None,
            by_rule=[],
            by_tier=[],
            by_channel=[],
            by_cycle=[],
            curve={"days": [], "treatment": [], "control": []},
            conversion_source="orders",
            window_closes_at=None,
            seconds=round(time.perf_counter() - started, 3),
        )
        return figures
    response_arms = set(cells.loc[cells["converted_response"] > 0, "arm"])
    both = {"treatment", "control"} <= response_arms
    converted_column = "retained_or_converted" if both else "retained"
    closes = cells["last_assigned"].max() + timedelta(days=window)
    status = ReportStatus.FINAL if now >= closes else ReportStatus.INTERIM
    by_arm = cells.groupby("arm")[[*NUMERIC, "message_cost"]].sum()
    sizes = {str(arm): int(by_arm.loc[arm, "n"]) for arm in by_arm.index}
    rules = {r.pk: f"{r.position}. {r.name}" for r in Rule.objects.filter(campaign=campaign)}
    cycle_keys = {c.pk: c.cycle_key for c in cycles}
    cells["risk_tier"] = cells["risk_tier"].replace("", "unscored")
    figures.update(
        status=status.value,
        window_closes_at=closes.isoformat(),
        conversion_source="orders and converted responses" if both else "orders",
        overall=group_figures(
            label="all",
            arms={str(a): by_arm.loc[a] for a in by_arm.index},
            converted_column=converted_column,
        ),
        by_rule=_breakdown(cells, "rule_id", rules, converted_column),
        by_tier=_breakdown(cells, "risk_tier", {}, converted_column),
        by_channel=_breakdown(cells, "channel", {}, converted_column),
        by_cycle=_breakdown(cells, "cycle_id", cycle_keys, converted_column)
        if cycle is None
        else [],
        curve=_curve(frame.loc[frame["part"].eq("curve")], sizes, window),
        seconds=round(time.perf_counter() - started, 3),
    )
    return figures


# --- the program report: global control vs everyone else ------------------------------------


def program_uplift(*, now: datetime | None = None, since: datetime | None = None) -> dict[str, Any]:
    """The global control group against everyone else, among the customers any campaign
    matched (since `since`): each customer once, from their first intervention, retained if
    they placed a completed order within PROGRAM_WINDOW_DAYS. Customers no campaign matched
    are left out: both groups receive nothing there, so they would only dilute the contrast."""
    started = time.perf_counter()
    now = now or timezone.now()
    params: list[Any] = []
    where = "1 = 1"
    if since is not None:
        where, params = "i.created_at >= %s", [since]
    days = str(PROGRAM_WINDOW_DAYS)
    sql = f"""
        WITH first AS (
            SELECT i.customer_id, MIN(i.created_at) AS assigned_at,
                   MAX(CASE WHEN i.reason = '{SuppressionReason.GLOBAL_CONTROL.value}'
                       THEN 1 ELSE 0 END) AS global_control
            FROM campaigns_intervention i WHERE {where} GROUP BY i.customer_id
        ), per AS (
            SELECT f.customer_id, f.global_control, f.assigned_at, COUNT(o.id) AS orders,
                   COALESCE(SUM(o.amount), 0) AS revenue
            FROM first f
            LEFT JOIN customers_order o
                   ON o.customer_id = f.customer_id AND o.status = 'completed'
                  AND {_window("o.placed_at", "f.assigned_at", days)}
            GROUP BY f.customer_id, f.global_control, f.assigned_at
        )
        SELECT global_control, COUNT(*), SUM(CASE WHEN orders > 0 THEN 1 ELSE 0 END),
               SUM(orders), SUM(revenue), SUM(revenue * revenue), MAX(assigned_at)
        FROM per GROUP BY global_control
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    columns = ["global_control", "n", "retained", "orders", "revenue", "revenue_sq", "last"]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    figures: dict[str, Any] = {
        "global_control_percent": float(settings.GLOBAL_CONTROL_PERCENT),
        "window_days": PROGRAM_WINDOW_DAYS,
        "measured_at": now.isoformat(),
        "since": since.isoformat() if since else None,
    }
    if frame.empty:
        figures.update(status=ReportStatus.EMPTY.value, overall=None)
        return figures
    for column in columns[1:6]:
        frame[column] = frame[column].map(_number).astype(float)
    frame["last"] = pd.to_datetime(frame["last"], utc=True, format="ISO8601")
    zero = {"discount": 0.0, "offer_made": 0.0, "message_cost": 0.0, "contacted": 0.0}
    zero.update(redeemed=0.0)
    arms = {
        ("control" if int(row["global_control"]) else "treatment"): pd.Series(
            {**zero, **{k: row[k] for k in columns[1:6]}}
        )
        for _i, row in frame.iterrows()  # at most two rows: the two groups
    }
    overall = group_figures(label="program", arms=arms, converted_column="retained")
    closes = frame["last"].max() + timedelta(days=PROGRAM_WINDOW_DAYS)
    figures.update(
        status=(ReportStatus.FINAL if now >= closes else ReportStatus.INTERIM).value,
        window_closes_at=closes.isoformat(),
        groups={"treatment": "everyone else (matched by a campaign)", "control": "global control"},
        overall=overall,
        seconds=round(time.perf_counter() - started, 3),
    )
    return figures


# --- snapshots ---------------------------------------------------------------------------------


def _snapshot(
    *,
    kind: str,
    scope_key: str,
    figures: dict[str, Any],
    now: datetime,
    campaign: Campaign | None = None,
    cycle: CampaignCycle | None = None,
) -> UpliftReport:
    values = {
        "kind": kind,
        "campaign": campaign,
        "cycle": cycle,
        "measured_at": now,
        "status": figures["status"],
        "figures": figures,
        "seconds": figures.get("seconds", 0.0),
    }
    for _attempt in range(2):  # two concurrent first snapshots of a day: the loser updates
        try:
            with transaction.atomic():
                report, _ = UpliftReport.objects.update_or_create(
                    scope_key=scope_key, report_date=now.date(), defaults=values
                )
            return report
        except IntegrityError:
            continue
    raise RuntimeError(f"could not store the uplift report {scope_key}")


def uplift_report_compute(
    *, campaign: Campaign, cycle: CampaignCycle | None = None, now: datetime | None = None
) -> UpliftReport:
    """Compute and store today's snapshot of a campaign's (or one cycle's) uplift."""
    now = now or timezone.now()
    figures = campaign_uplift(campaign=campaign, cycle=cycle, now=now)
    if cycle is not None:
        return _snapshot(
            kind=ReportKind.CYCLE,
            scope_key=f"cycle-{cycle.pk}",
            figures=figures,
            now=now,
            campaign=campaign,
            cycle=cycle,
        )
    return _snapshot(
        kind=ReportKind.CAMPAIGN,
        scope_key=f"campaign-{campaign.pk}",
        figures=figures,
        now=now,
        campaign=campaign,
    )


def program_report_compute(*, now: datetime | None = None) -> UpliftReport:
    now = now or timezone.now()
    return _snapshot(
        kind=ReportKind.PROGRAM,
        scope_key="program",
        figures=program_uplift(now=now),
        now=now,
    )


def uplift_reports_refresh(*, now: datetime | None = None) -> list[UpliftReport]:
    """The nightly run: every campaign that has interventions, each of its cycles that has no
    final snapshot yet (a final one never changes), and the program report."""
    now = now or timezone.now()
    reports: list[UpliftReport] = []
    for campaign in Campaign.objects.filter(interventions__isnull=False).distinct():
        reports.append(uplift_report_compute(campaign=campaign, now=now))
        finished = UpliftReport.objects.filter(
            kind=ReportKind.CYCLE, status=ReportStatus.FINAL, campaign=campaign
        ).values_list("cycle_id", flat=True)
        for cycle in (
            campaign.cycles.exclude(pk__in=list(finished))
            .filter(interventions__isnull=False)
            .distinct()
        ):
            reports.append(uplift_report_compute(campaign=campaign, cycle=cycle, now=now))
    reports.append(program_report_compute(now=now))
    return reports


def uplift_report_latest(*, campaign: Campaign) -> UpliftReport | None:
    return (
        UpliftReport.objects.filter(scope_key=f"campaign-{campaign.pk}")
        .order_by("-report_date", "-updated_at")
        .first()
    )


# --- the assignment log with outcomes, as CSV ------------------------------------------------

CSV_HEADER = [
    "intervention_id",
    "customer",
    "cycle",
    "rule",
    "arm",
    "channel",
    "status",
    "reason",
    "risk_tier",
    "churn_probability",
    "assigned_at",
    "window_days",
    "in_analysis",
    "retained",
    "orders",
    "revenue",
    "first_order_day",
    "converted_response",
    "redeemed",
    "discount",
]


def interventions_outcomes_csv(*, campaign: Campaign, chunk: int = CSV_CHUNK) -> Iterator[str]:
    """The campaign's assignment log (every intervention, both arms, excluded rows flagged)
    with its outcome, as CSV text in chunks (keyset pagination on the intervention id)."""
    extra = f""", cu.external_id AS customer, cy.cycle_key, ru.name AS rule_name, i.status,
        i.reason, i.churn_probability,
        CASE WHEN {_POPULATION_SQL} THEN 1 ELSE 0 END AS in_analysis"""
    where = "i.campaign_id = %s AND i.id > %s AND i.id <= %s"
    base = _per_intervention_sql(where, extra).replace(
        "LEFT JOIN campaigns_coupon cp ON cp.intervention_id = i.id",
        "LEFT JOIN campaigns_coupon cp ON cp.intervention_id = i.id "
        "JOIN customers_customer cu ON cu.id = i.customer_id "
        "JOIN campaigns_campaigncycle cy ON cy.id = i.cycle_id "
        "JOIN campaigns_rule ru ON ru.id = i.rule_id",
        1,
    )
    sql = f"{base} ORDER BY i.id"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    yield buffer.getvalue()
    ids = Intervention.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True)
    last = 0
    while True:
        # The id bounds of the next chunk, so each chunk's inner aggregates read only its rows.
        rest = ids.filter(pk__gt=last)
        bound: int | None = (
            next(iter(rest[chunk - 1 : chunk]), None) or rest.order_by("-pk").first()
        )
        if bound is None:
            return
        with connection.cursor() as cursor:
            cursor.execute(sql, [campaign.pk, last, bound] * WHERE_REPEATS)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        if not rows:
            return
        frame = pd.DataFrame.from_records(rows, columns=names)
        buffer = io.StringIO()
        out = pd.DataFrame(
            {
                "intervention_id": frame["intervention_id"],
                "customer": frame["customer"],
                "cycle": frame["cycle_key"],
                "rule": frame["rule_name"],
                "arm": frame["arm"],
                "channel": frame["channel"],
                "status": frame["status"],
                "reason": frame["reason"],
                "risk_tier": frame["risk_tier"],
                "churn_probability": frame["churn_probability"].astype(float).round(4),
                "assigned_at": pd.to_datetime(frame["created_at"], utc=True, format="ISO8601"),
                "window_days": frame["window_days"],
                "in_analysis": frame["in_analysis"],
                "retained": (frame["orders"].astype(int) > 0).astype(int),
                "orders": frame["orders"],
                "revenue": frame["revenue"].map(_number).astype(float).round(2),
                "first_order_day": frame["first_day"].map(_number).astype(float).round(3),
                "converted_response": frame["converted_response"],
                "redeemed": frame["redeemed"],
                "discount": frame["discount"].map(_number).astype(float).round(2),
            }
        )
        out.to_csv(buffer, header=False, index=False)
        yield buffer.getvalue()
        last = int(frame["intervention_id"].iloc[-1])
