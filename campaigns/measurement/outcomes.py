"""SQL of campaign measurement: the outcomes of both arms, aggregated in the database.

Per intervention (the CSV export's rows) and per cell — arm x rule x tier x channel x cycle —
for the uplift report, which three aggregates build (population, orders, converted responses),
and per group for the program report (global control vs everyone else). Rows come back as
DataFrames with numeric columns; the statistics are campaigns.uplift's.

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

from datetime import datetime
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from campaigns.models import Campaign, CampaignCycle, SuppressionReason
from campaigns.uplift.breakdown import CELL_SUMS, Costs
from campaigns.uplift.costs import with_costs

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


def _not_before(column: str) -> str:
    """SQL: `column` is at or after the datetime parameter (%s).

    Measurement adds it to its joins of orders, with the earliest assignment it measures: a
    condition the window already implies, which lets PostgreSQL read only the orders placed
    since then (the BRIN index of customers.0013) instead of the whole order history."""
    if _postgres():
        return f"{column} >= %s"
    return f"julianday({column}) >= julianday(%s)"


def _earliest(values: pd.Series) -> Any:
    """The earliest of some assignment times as a query parameter (None: there are none)."""
    times = pd.to_datetime(values.dropna(), utc=True, format="ISO8601")
    if times.empty:
        return None
    return connection.ops.adapt_datetimefield_value(times.min().to_pydatetime())


def _days_between(later: str, earlier: str) -> str:
    if _postgres():
        return f"EXTRACT(EPOCH FROM ({later} - {earlier})) / 86400.0"
    return f"(julianday({later}) - julianday({earlier}))"


def _floor(expression: str) -> str:
    # PostgreSQL's CAST(float AS int) rounds; days are never negative, so truncation is floor.
    return (
        f"CAST(FLOOR({expression}) AS INTEGER)" if _postgres() else f"CAST({expression} AS INTEGER)"
    )


def _orders_in_window(where: str) -> str:
    """SQL: the interventions (alias i, filtered by `where`) joined to their completed orders
    (alias o) inside their campaign's attribution window (alias c) — the report's one large
    join, used per intervention and per cell."""
    window = "c.attribution_window_days"
    return f"""FROM campaigns_intervention i
            JOIN campaigns_campaign c ON c.id = i.campaign_id
            JOIN customers_order o
              ON o.customer_id = i.customer_id AND o.status = 'completed'
             AND {_window("o.placed_at", "i.created_at", window)}
            WHERE {where}"""


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
            {_orders_in_window(where)}
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


# How often _per_intervention_sql repeats its `where` parameters.
WHERE_REPEATS = 3


KEYS = ["arm", "rule_id", "risk_tier", "channel", "cycle_id"]
CELL_COLUMNS = ["part", *KEYS, "day", *CELL_SUMS, "first_assigned", "last_assigned", "window_days"]
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
    square — and per arm and day of the first order (the cumulative retention curve). Its
    parameters: `where`'s, then the earliest assignment of the rows `where` selects."""
    return f"""
        WITH oa AS (
            SELECT i.id, {_KEYS_SQL}, COUNT(*) AS orders,
                   SUM(CAST(o.amount AS DOUBLE PRECISION)) AS revenue,
                   {_days_between("MIN(o.placed_at)", "i.created_at")} AS first_day
            {_orders_in_window(f"{where} AND {_not_before('o.placed_at')}")}
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
            [*params, _earliest(population["first_assigned"])],
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
    for column in [*CELL_SUMS, "converted_without_order", "window_days"]:
        cells[column] = pd.to_numeric(cells[column].map(_number), errors="coerce").fillna(0.0)
    cells["retained_or_converted"] = cells["retained"] + cells["converted_without_order"]
    cells["part"], cells["day"] = "cell", -1.0
    curve = ordered.loc[ordered["part"].eq("curve"), ["part", "arm", "day", "count"]]
    curve = curve.rename(columns={"count": "n"})
    frame = pd.concat([cells[CELL_COLUMNS], curve], ignore_index=True)
    for column in [*CELL_SUMS, "day", "window_days"]:
        frame[column] = pd.to_numeric(frame[column].map(_number), errors="coerce").fillna(0.0)
    for column in ("first_assigned", "last_assigned"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame


def _number(value: Any) -> Any:
    return float(value) if value is not None and not isinstance(value, str) else value


def _program_sql(where: str) -> str:
    """Per group, each customer once from their first intervention (alias i, filtered by
    `where`). Its parameters: `where`'s, then the earliest of those interventions' times."""
    days = str(PROGRAM_WINDOW_DAYS)
    return f"""
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
                  AND {_not_before("o.placed_at")}
            GROUP BY f.customer_id, f.global_control, f.assigned_at
        )
        SELECT global_control, COUNT(*), SUM(CASE WHEN orders > 0 THEN 1 ELSE 0 END),
               SUM(orders), SUM(revenue), SUM(revenue * revenue), MAX(assigned_at)
        FROM per GROUP BY global_control
    """


def program_outcome_groups(*, since: datetime | None = None) -> pd.DataFrame:
    """Per group (global_control 1: the global control, 0: everyone else) among the customers
    any campaign matched (since `since`): each customer once, from their first intervention,
    retained if they placed a completed order within PROGRAM_WINDOW_DAYS. Columns n, retained,
    orders, revenue, revenue_sq and last (the latest first intervention)."""
    params: list[Any] = []
    where = "1 = 1"
    if since is not None:
        where, params = "i.created_at >= %s", [since]
    columns = ["global_control", "n", "retained", "orders", "revenue", "revenue_sq", "last"]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MIN(i.created_at) FROM campaigns_intervention i WHERE {where}", params
        )
        earliest = _earliest(pd.Series([cursor.fetchone()[0]], dtype=object))
        frame = _fetch(cursor, _program_sql(where), [*params, earliest], columns)
    if frame.empty:
        return frame
    for column in columns[1:6]:
        frame[column] = frame[column].map(_number).astype(float)
    frame["last"] = pd.to_datetime(frame["last"], utc=True, format="ISO8601")
    return frame


def _intervention_outcomes_sql() -> str:
    """Every intervention of a campaign in an id range (both arms, excluded rows flagged) with
    its customer, cycle, rule and outcome, in id order."""
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
    return f"{base} ORDER BY i.id"


def intervention_outcomes(*, campaign: Campaign, after_id: int, up_to_id: int) -> pd.DataFrame:
    """One row per intervention with id in (after_id, up_to_id]: its arm, status, reason,
    customer, cycle key, rule name, whether it is in the analysis, and its outcome in the
    window (orders, revenue, first order day, converted response, redemption, discount)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _intervention_outcomes_sql(), [campaign.pk, after_id, up_to_id] * WHERE_REPEATS
        )
        names = [d[0] for d in cursor.description]
        frame = pd.DataFrame.from_records(cursor.fetchall(), columns=names)
    for column in ("revenue", "first_day", "discount"):
        frame[column] = frame[column].map(_number).astype(float)
    return frame


def campaign_cost(*, campaign: Campaign) -> Costs:
    """What the campaign has cost so far (campaigns.uplift.costs: the definition the uplift
    report, the summary, the API and the CSV share), from the cells of its analysis population
    without the orders: one cheap aggregate."""
    where = f"i.campaign_id = %s AND {_POPULATION_SQL}"
    with connection.cursor() as cursor:
        cells = _fetch(
            cursor,
            _population_cells_sql(where),
            [campaign.pk],
            [*KEYS, "n", "contacted", "offer_made", "redeemed", "discount",
             "first_assigned", "last_assigned", "window_days"],
        )  # fmt: skip
    if cells.empty:
        return Costs.of(offers=0.0, messages=0.0)
    for column in ("contacted", "offer_made", "discount"):
        cells[column] = cells[column].map(_number).astype(float)
    costed = with_costs(cells, settings.CAMPAIGN_MESSAGE_COST)
    return Costs.of(
        offers=float(costed["offer_cost"].sum()), messages=float(costed["message_cost"].sum())
    )
