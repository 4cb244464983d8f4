"""SYNTHETIC demo data, for the demo only: after a campaign cycle, invent how both arms behaved
with a known true effect, so the uplift report can be checked against the truth.

Nothing here runs in production: the demo's cycle stage (demo/cycle.py) calls it only when the
sources file has an "uplift": {"simulate": {...}} entry (demo/sources.json does). The
generative model:

- every customer the cycle matched (suppressed and global-control ones too) orders inside the
  attribution window with
  probability BASELINE_BY_TIER[tier], plus a true effect if treated and actually contacted
  (sent/delivered). The "simulate" entry's `truth` picks the effect:
  - "tiers" (the default): EFFECT_BY_TIER[tier] — largest for the riskiest tiers;
  - "actions" (the shop demo): `action_effect` — per action (the rule's offer × channel) and
    on the churn probability the intervention carries (observable, so an uplift model can
    learn it). Strength: PERCENT_STRENGTH per percent off (20% off → 20 pp), OFFER_STRENGTH
    for other offers, times CHANNEL_FACTOR (SMS stronger, an in-app code weaker), reached in
    full from FULL_EFFECT_FROM and rising linearly from SLEEPING_DOG_BELOW. Below
    SLEEPING_DOG_BELOW are the "sleeping dogs": the least at risk of those the rules reach,
    recent and frequent buyers, whom a win-back contact *puts off* — their order probability
    drops by HARM_BY_CHANNEL[channel];
- a customer who orders places 1 + Poisson(0.4) orders, dated uniformly inside the window after
  their assignment time, of log-normal amounts (median 35);
- contacted treated customers produce delivered / opened / clicked responses; every customer
  who orders (both arms) produces a `converted` response; treated customers holding a coupon
  redeem it on their first order with probability REDEEM_PROBABILITY (at most
  MAX_REDEMPTIONS_PER_CYCLE per cycle, one API request each, to stay inside the throttle).

Orders go through the customers importer services (validate → link → upsert). Responses and
redemptions are POSTed through the real API (URL routing, API-key authentication, scopes,
serializers, services) in-process with DRF's APIClient and a real key of an API client named
"demo simulator". Everything is keyed deterministically (order ids `sim-…`, idempotency keys),
so a rerun changes nothing. The cycle's summary keeps the simulation (summary["simulation"]) and
the true effect as a generic ReferenceEffect, which the uplift report shows beside its estimate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from rest_framework.test import APIClient

from campaigns.measurement.outcomes import ANALYSIS_POPULATION
from campaigns.measurement.snapshots import campaign_cycle_reference_attach
from campaigns.models import CampaignCycle, Coupon, Intervention
from campaigns.uplift.report import ReferenceEffect
from customers.models import ApiClient, ApiScope
from customers.services import (
    api_client_create,
    api_client_rotate_key,
    orders_upsert,
    records_link_customers,
)
from customers.validation import SPECS, validate_records

BASELINE_BY_TIER = {"critical": 0.10, "high": 0.18, "medium": 0.30, "low": 0.45}
EFFECT_BY_TIER = {"critical": 0.12, "high": 0.07, "medium": 0.03, "low": 0.0}
DEFAULT_BASELINE, DEFAULT_EFFECT = 0.25, 0.0
# The "actions" truth (see the module docstring): what one action does to P(order in window).
TRUTHS = ("tiers", "actions")
SLEEPING_DOG_BELOW = 0.70  # churn probability below which contact harms
FULL_EFFECT_FROM = 0.85  # churn probability from which an action has its full effect
# Strong enough to stand out of the noise of a few hundred customers per action.
PERCENT_STRENGTH = 0.01  # per percent off: 20% off → +20 pp, 10% off → +10 pp
OFFER_STRENGTH = {"free_shipping": 0.12, "amount_coupon": 0.10, "loyalty_points": 0.06}
DEFAULT_OFFER_STRENGTH = 0.04  # a message without an offer
CHANNEL_FACTOR = {"email": 1.0, "sms": 1.25, "coupon": 0.75, "push": 0.75}
HARM_BY_CHANNEL = {"email": 0.08, "sms": 0.12, "coupon": 0.04, "push": 0.05}
DEFAULT_HARM = 0.08
REDEEM_PROBABILITY = 0.6
OPEN_PROBABILITY, CLICK_PROBABILITY, DELIVERY_PROBABILITY = 0.35, 0.25, 0.97
# Responses per API request: the API's bulk limit.
RESPONSES_PER_REQUEST = 1000
SIMULATOR_CLIENT = "demo simulator"
# Coupon redemptions are one request each; at most this many per cycle go through the API so
# the demo stays inside the default API throttle (600 requests/min per client).
MAX_REDEMPTIONS_PER_CYCLE = 400
MAX_THROTTLE_WAITS = 5
# How the uplift report names the true effect it shows beside its estimate.
TRUE_EFFECT_LABEL = "true simulated effect (synthetic data)"


@dataclass(frozen=True)
class SimulationSummary:
    campaign: str
    cycle_key: str
    treated_n: int
    control_n: int
    true_retention_effect: float
    true_effect_by_tier: dict[str, float]
    baseline_by_tier: dict[str, float]
    orders_created: int
    responses_created: int
    responses_replayed: int
    coupons_redeemed: int
    seed: int
    truth: str = "tiers"
    # Per rule ("1. Critical: …"), the average applied effect over its analysed treated.
    true_effect_by_rule: dict[str, float] = field(default_factory=dict)
    # Analysed treated customers the contact harmed ("actions" truth: the sleeping dogs).
    harmed: int = 0


def action_effect(
    *,
    probability: np.ndarray,
    offer_kind: np.ndarray,
    offer_value: np.ndarray,
    channel: np.ndarray,
) -> np.ndarray:
    """The "actions" truth: the change in P(order in the window) one contact causes, per row
    (its churn probability, the action's offer kind and value, its channel)."""
    kinds = pd.Series(offer_kind, dtype=object)
    strength = kinds.map(OFFER_STRENGTH).fillna(DEFAULT_OFFER_STRENGTH).to_numpy(dtype=float)
    percent = kinds.eq("percent_coupon").to_numpy()
    strength = np.where(percent, PERCENT_STRENGTH * np.asarray(offer_value, dtype=float), strength)
    channels = pd.Series(channel, dtype=object)
    strength = strength * channels.map(CHANNEL_FACTOR).fillna(1.0).to_numpy(dtype=float)
    harm = channels.map(HARM_BY_CHANNEL).fillna(DEFAULT_HARM).to_numpy(dtype=float)
    p = np.asarray(probability, dtype=float)
    ramp = np.clip((p - SLEEPING_DOG_BELOW) / (FULL_EFFECT_FROM - SLEEPING_DOG_BELOW), 0, 1)
    return np.where(p < SLEEPING_DOG_BELOW, -harm, strength * ramp)


def _api_client() -> APIClient:
    """An in-process client with a fresh key of the simulator's API client (created once)."""
    existing = ApiClient.objects.filter(name=SIMULATOR_CLIENT).first()
    if existing is None:
        _client, key = api_client_create(name=SIMULATOR_CLIENT, scopes=[ApiScope.RESPONSES_WRITE])
    else:
        key = api_client_rotate_key(client=existing)
    hosts = [h for h in settings.ALLOWED_HOSTS if h not in ("*", "")]
    client = APIClient(SERVER_NAME=(hosts[0].lstrip(".") if hosts else "localhost"))
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _population(cycle: CampaignCycle) -> pd.DataFrame:
    # Every customer the cycle matched behaves (suppressed and global-control ones too, so the
    # program report compares like with like); only contacted treated customers get the effect.
    rows = (
        Intervention.objects.filter(cycle=cycle)
        .order_by("pk")
        .values_list(
            "pk",
            "arm",
            "risk_tier",
            "channel",
            "status",
            "created_at",
            "customer__external_id",
            "campaign__attribution_window_days",
            "churn_probability",
            "rule__position",
            "rule__name",
            "rule__offer__kind",
            "rule__offer__value",
        )
    )
    frame = pd.DataFrame.from_records(
        list(rows),
        columns=[
            "id",
            "arm",
            "tier",
            "channel",
            "status",
            "assigned_at",
            "customer",
            "window",
            "probability",
            "rule_position",
            "rule_name",
            "offer_kind",
            "offer_value",
        ],
    )
    codes = dict(
        Coupon.objects.filter(intervention__cycle=cycle, redeemed_at__isnull=True).values_list(
            "intervention_id", "code"
        )
    )
    frame["coupon"] = frame["id"].map(codes)
    analysed = set(
        Intervention.objects.filter(ANALYSIS_POPULATION, cycle=cycle).values_list("pk", flat=True)
    )
    frame["in_analysis"] = frame["id"].isin(analysed)
    return frame


def _post(client: APIClient, path: str, body: Any) -> dict[str, Any]:
    response = client.post(path, body, format="json")
    for _retry in range(MAX_THROTTLE_WAITS):
        if response.status_code != 429:
            break
        # Throttled like any client (API_THROTTLE_RATE): wait as told, then retry.
        time.sleep(min(float(response.headers.get("Retry-After", "1")), 60.0))
        response = client.post(path, body, format="json")
    if response.status_code >= 400 and response.status_code != 409:
        raise RuntimeError(f"simulator: POST {path} → {response.status_code}: {response.content!r}")
    data: dict[str, Any] = response.json()
    return data


def _outcomes(
    people: pd.DataFrame, rng: np.random.Generator, truth: str = "tiers"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Who was treated, contacted, the true effect each got, and who orders in the window."""
    n = len(people)
    treated = people["arm"].eq("treatment").to_numpy()
    contacted = treated & people["status"].isin(["sent", "delivered"]).to_numpy()
    base = people["tier"].map(BASELINE_BY_TIER).fillna(DEFAULT_BASELINE).to_numpy()
    if truth == "actions":
        effect = contacted * action_effect(
            probability=people["probability"].to_numpy(dtype=float),
            offer_kind=people["offer_kind"].fillna("none").to_numpy(),
            offer_value=people["offer_value"].fillna(0).astype(float).to_numpy(),
            channel=people["channel"].to_numpy(),
        )
    else:
        effect = people["tier"].map(EFFECT_BY_TIER).fillna(DEFAULT_EFFECT).to_numpy() * contacted
    retained = rng.random(n) < np.clip(base + effect, 0, 1)
    return treated, contacted, effect, retained


def _orders(people: pd.DataFrame, retained: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """1 + Poisson(0.4) orders per retained customer, uniformly inside the window, of
    log-normal amounts; keyed sim-<intervention>-<k>."""
    n = len(people)
    window_days = people["window"].to_numpy(dtype=float)
    # Naive UTC datetime64 so day offsets add element-wise.
    assigned = pd.to_datetime(people["assigned_at"], utc=True).dt.tz_convert(None)
    counts = np.where(retained, 1 + rng.poisson(0.4, n), 0)
    owner = np.repeat(np.arange(n), counts)
    offsets = rng.uniform(0.02, 0.98, len(owner)) * window_days[owner]
    placed = assigned.to_numpy()[owner] + pd.to_timedelta(offsets, unit="D").to_numpy()
    orders = pd.DataFrame(
        {"owner": owner, "placed_at": placed, "amount": rng.lognormal(np.log(35), 0.6, len(owner))}
    ).sort_values(["owner", "placed_at"], kind="stable")
    orders["k"] = orders.groupby("owner").cumcount()
    orders["external_id"] = (
        "sim-"
        + people["id"].to_numpy()[orders["owner"]].astype(str)
        + "-"
        + orders["k"].astype(str)
    )
    orders["customer"] = people["customer"].to_numpy()[orders["owner"]]
    orders["amount"] = orders["amount"].round(2)
    return orders


def _orders_import(orders: pd.DataFrame) -> int:
    """Through the importer services (validate → link → upsert), like a customer's file."""
    records = pd.DataFrame(
        {
            "external_id": orders["external_id"].to_numpy(),
            "customer": orders["customer"].to_numpy(),
            "placed_at": pd.to_datetime(orders["placed_at"], utc=True).dt.strftime(
                "%Y-%m-%dT%H:%M:%S+00:00"
            ),
            "amount": orders["amount"].astype(str).to_numpy(),
            "status": "completed",
            "category": "simulated",
        }
    )
    if records.empty:
        return 0
    checked = validate_records(records, SPECS["orders"], date_format="ISO8601")
    with transaction.atomic():
        link = records_link_customers(records=checked.valid, create_missing=False)
        return orders_upsert(records=link.linked).created


def _utc(moment: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def _responses(
    people: pd.DataFrame,
    contacted: np.ndarray,
    first: pd.DataFrame,
    rng: np.random.Generator,
    campaign_id: int,
) -> list[dict[str, Any]]:
    """Delivered / opened / clicked responses of contacted treated customers, and a
    `converted` response for every customer's first order (both arms)."""
    n = len(people)
    items: list[dict[str, Any]] = []
    delivered = contacted & (rng.random(n) < DELIVERY_PROBABILITY)
    opened = (
        delivered & people["channel"].eq("email").to_numpy() & (rng.random(n) < OPEN_PROBABILITY)
    )
    clicked = opened & (rng.random(n) < CLICK_PROBABILITY)
    for kind, mask, hours in (
        ("delivered", delivered, 0.1),
        ("opened", opened, 3.0),
        ("clicked", clicked, 3.5),
    ):
        rows = people.loc[mask]
        stamps = pd.to_datetime(rows["assigned_at"], utc=True) + pd.Timedelta(hours=hours)
        items += [
            {
                "intervention": int(i),
                "kind": kind,
                "occurred_at": t.isoformat(),
                "idempotency_key": f"sim-{i}-{kind}",
            }
            for i, t in zip(rows["id"], stamps, strict=True)
        ]
    for owner_index, placed_at, amount, order_id in zip(
        first["owner"], first["placed_at"], first["amount"], first["external_id"], strict=True
    ):
        items.append(
            {
                "campaign": campaign_id,
                "customer": str(people["customer"].iat[owner_index]),
                "kind": "converted",
                "occurred_at": _utc(placed_at).isoformat(),
                "revenue": f"{amount:.2f}",
                "order_external_id": order_id,
                "idempotency_key": f"sim-{people['id'].iat[owner_index]}-converted",
            }
        )
    return items


def _responses_post(client: APIClient, items: list[dict[str, Any]]) -> tuple[int, int]:
    """POST the responses in bulk requests; (created, replayed)."""
    created = replayed = 0
    for start in range(0, len(items), RESPONSES_PER_REQUEST):
        result = _post(client, "/api/v1/responses", items[start : start + RESPONSES_PER_REQUEST])
        created += int(result["created"])
        replayed += int(result["replayed"])
    return created, replayed


def _coupons_redeem(
    client: APIClient,
    people: pd.DataFrame,
    first: pd.DataFrame,
    treated: np.ndarray,
    rng: np.random.Generator,
) -> int:
    """Treated coupon holders redeem on their first order with REDEEM_PROBABILITY, one API
    request each, at most MAX_REDEMPTIONS_PER_CYCLE."""
    redeemed = 0
    holders = first.loc[
        people["coupon"].notna().to_numpy()[first["owner"]]
        & treated[first["owner"]]
        & (rng.random(len(first)) < REDEEM_PROBABILITY)
    ].head(MAX_REDEMPTIONS_PER_CYCLE)
    for owner_index, placed_at, amount, order_id in zip(
        holders["owner"],
        holders["placed_at"],
        holders["amount"],
        holders["external_id"],
        strict=True,
    ):
        code = people["coupon"].iat[owner_index]
        result = _post(
            client,
            f"/api/v1/coupons/{code}/redeem",
            {
                "order_external_id": order_id,
                "amount": f"{amount:.2f}",
                "redeemed_at": _utc(placed_at).isoformat(),
            },
        )
        redeemed += int("code" in result and not result.get("replay", False))
    return redeemed


def _true_effect_by_rule(
    people: pd.DataFrame, treated: np.ndarray, effect: np.ndarray
) -> dict[str, float]:
    """Per rule ("position. name"), the average applied effect over its analysed treated."""
    analysed = treated & people["in_analysis"].to_numpy()
    labels = people["rule_position"].astype(str) + ". " + people["rule_name"].astype(str)
    frame = pd.DataFrame({"rule": labels.to_numpy()[analysed], "effect": effect[analysed]})
    return {str(k): float(v) for k, v in frame.groupby("rule")["effect"].mean().items()}


def _true_effects(
    people: pd.DataFrame, treated: np.ndarray, effect: np.ndarray
) -> tuple[float, dict[str, float], int, int]:
    """The estimand: the average applied effect over the analysed treated arm, overall and per
    tier (0 for those not contacted, e.g. still waiting for quiet hours to end); and the
    analysed treated and control counts."""
    analysed_treated = treated & people["in_analysis"].to_numpy()
    tiers = people["tier"].to_numpy()
    by_tier = {
        str(tier): float(effect[analysed_treated & (tiers == tier)].mean())
        for tier in sorted(set(tiers[analysed_treated]))
    }
    overall = float(effect[analysed_treated].mean()) if analysed_treated.any() else 0.0
    control_n = int((~treated & people["in_analysis"].to_numpy()).sum())
    return overall, by_tier, int(analysed_treated.sum()), control_n


def campaign_cycle_simulate(
    *, cycle: CampaignCycle, seed: int = 7, truth: str = "tiers"
) -> SimulationSummary | None:
    """Simulate one cycle's outcomes (see the module docstring; `truth` is "tiers" or
    "actions"); None if already simulated or the cycle took nobody. Stores the summary and the
    true effect, as a ReferenceEffect the uplift report shows, on the cycle."""
    if truth not in TRUTHS:
        raise ValueError(f"simulate: truth is {truth!r}; expected one of {', '.join(TRUTHS)}")
    if (cycle.summary or {}).get("simulation"):
        return None
    people = _population(cycle)
    if people.empty:
        return None
    rng = np.random.default_rng([seed, cycle.pk])
    treated, contacted, effect, retained = _outcomes(people, rng, truth)
    orders = _orders(people, retained, rng)
    created_orders = _orders_import(orders)
    first = orders.drop_duplicates("owner")
    items = _responses(people, contacted, first, rng, cycle.campaign_id)
    client = _api_client()
    created, replayed = _responses_post(client, items)
    redeemed = _coupons_redeem(client, people, first, treated, rng)
    overall, by_tier, treated_n, control_n = _true_effects(people, treated, effect)
    summary = SimulationSummary(
        campaign=cycle.campaign.name,
        cycle_key=cycle.cycle_key,
        treated_n=treated_n,
        control_n=control_n,
        true_retention_effect=overall,
        true_effect_by_tier=by_tier,
        baseline_by_tier={t: BASELINE_BY_TIER.get(t, DEFAULT_BASELINE) for t in by_tier},
        orders_created=created_orders,
        responses_created=created,
        responses_replayed=replayed,
        coupons_redeemed=redeemed,
        seed=seed,
        truth=truth,
        true_effect_by_rule=_true_effect_by_rule(people, treated, effect),
        harmed=int((effect < 0)[treated & people["in_analysis"].to_numpy()].sum()),
    )
    CampaignCycle.objects.filter(pk=cycle.pk).update(
        summary={**(cycle.summary or {}), "simulation": asdict(summary)}
    )
    cycle.refresh_from_db()
    campaign_cycle_reference_attach(
        cycle=cycle,
        effect=ReferenceEffect(
            label=TRUE_EFFECT_LABEL,
            short_label="true",
            retention_effect=overall,
            by_tier=by_tier,
            treated_n=treated_n,
        ),
    )
    return summary


def simulation_anchor_note(*, as_of: datetime | None) -> str:
    """How simulated dates relate to the cycle's as-of date (for the stage's output)."""
    if as_of is None:
        return "simulated orders are dated inside each intervention's attribution window"
    return (
        f"data as of {as_of:%Y-%m-%d}; simulated orders are dated inside each intervention's "
        "attribution window, which starts at its assignment time"
    )
