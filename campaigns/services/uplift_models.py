"""Uplift models from our own randomised holdouts: training data, training, the registry
(champion/challenger) and predictions.

Rows are a campaign's interventions in the analysis population (control `held_out`, treatment
not suppressed: campaigns.measurement.outcomes, the uplift report's definition) whose
attribution window has finished. Outcome: retained = a completed order inside the window.
Arm: "control" or the action key f"rule-{rule_id}". Features: the churn model's features
(scoring.ml.features.build_features) as of each assignment — one as-of per cycle, read once for
every customer and built per cycle — plus the churn probability at assignment and the customer
value. The fitted learners are a skops artifact with a SHA-256, like churn models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import skops.io as sio
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns import selectors
from campaigns.measurement.outcomes import intervention_outcomes
from campaigns.models import Campaign, Intervention, Rule, UpliftModel, UpliftModelStatus
from campaigns.selectors import uplift_model_champion
from campaigns.uplift.evaluation import compare_methods
from campaigns.uplift.models import CONTROL_ARM, MultiActionUplift, qini_coefficient
from campaigns.uplift.policy import ActionEvidence, evidence_adjusted
from campaigns.uplift.proportions import proportion_difference
from customers.models import Customer
from customers.selectors import (
    attribute_versions_frame_for_ids,
    customers_frame_for_ids,
    events_frame_for_ids,
    order_versions_frame_for_ids,
    orders_frame_for_ids,
)
from scoring.ml import artifacts
from scoring.ml.features import build_features
from scoring.selectors import churn_model_active

logger = logging.getLogger(__name__)

# The rows are split in halves stratified on arm × outcome (training, validation) and the
# DR-learner cross-fits on 2 folds of the training half: each arm × outcome cell needs 2 rows
# on each side of both splits.
MIN_ROWS_PER_OUTCOME = 4


def _min_rows_per_arm() -> int:
    """Fewer rows than this in an arm (control, or every action together): no model."""
    return int(settings.UPLIFT_MIN_ROWS_PER_ARM)


# Added to every model's features: the score and the value the dispatch decided with.
EXTRA_FEATURES = ("churn_probability", "customer_value")


class UpliftTrainingError(Exception):
    """The data cannot give a model; the message says why and what to do."""


@dataclass(frozen=True)
class UpliftTraining:
    """What `uplift_model_train` did: the registered model (None when it could not train), a
    sentence for the operator, and the rows it trained on."""

    model: UpliftModel | None
    message: str
    rows: int


def action_key(rule_id: int) -> str:
    return f"rule-{rule_id}"


def action_cost(rule: Rule) -> float:
    """The expected cost of one action (campaigns.uplift.costs.EXPECTED_COST_BASIS): the offer's
    unit cost, every offer assumed used, plus one message on the rule's channel."""
    offer = float(rule.offer.unit_cost) if rule.offer else 0.0
    return offer + float(settings.CAMPAIGN_MESSAGE_COST.get(rule.channel, 0.0))


# --- features as of a date -------------------------------------------------------------------


@dataclass(frozen=True)
class _Sources:
    """The rows features are built from, read once for a set of customers."""

    customers: pd.DataFrame
    orders: pd.DataFrame
    events: pd.DataFrame
    order_versions: pd.DataFrame
    attribute_versions: pd.DataFrame


def _sources(customer_ids: Sequence[int]) -> _Sources:
    ids = sorted({int(i) for i in customer_ids})
    first, last = ids[0], ids[-1]
    order_versions = order_versions_frame_for_ids(first_id=first, last_id=last)
    attribute_versions = attribute_versions_frame_for_ids(first_id=first, last_id=last)
    wanted = set(ids)
    # Dense ids (a dispatch chunk) read by range and filter here; sparse ones by their list.
    where: dict[str, Any] = (
        {"first_id": first, "last_id": last} if len(ids) * 2 >= last - first + 1 else {"ids": ids}
    )
    orders = orders_frame_for_ids(**where)
    orders = orders.loc[orders["customer_id"].isin(wanted)]
    customers = customers_frame_for_ids(**where)
    events = events_frame_for_ids(**where)
    return _Sources(
        customers=customers.loc[customers["customer_id"].isin(wanted)],
        orders=orders,
        events=events.loc[events["customer_id"].isin(wanted)],
        order_versions=order_versions.loc[order_versions["order_id"].isin(orders["order_id"])],
        attribute_versions=attribute_versions.loc[attribute_versions["customer_id"].isin(wanted)],
    )


def _features_as_of(
    sources: _Sources,
    customer_ids: Sequence[int],
    as_of: datetime,
    *,
    event_kinds: Sequence[str] | None,
    btyd_params: dict[str, Any] | None,
) -> pd.DataFrame:
    """build_features for `customer_ids` as of `as_of` (data as it was then: versions)."""
    subset = sources.customers.loc[sources.customers["customer_id"].isin(customer_ids)]
    return build_features(
        orders=sources.orders,
        events=sources.events,
        customers=subset,
        as_of=pd.Timestamp(as_of),
        event_kinds=list(event_kinds) if event_kinds is not None else None,
        btyd_params=btyd_params,
        order_versions=sources.order_versions,
        attribute_versions=sources.attribute_versions,
    )


def _model_matrix(
    features: pd.DataFrame, extra: pd.DataFrame, names: Sequence[str], fill: dict[str, float]
) -> pd.DataFrame:
    """The learners' input: the named numeric columns, missing values filled with the training
    medians (a column the data lacks is the median throughout)."""
    joined = features.join(extra, how="left")
    out = pd.DataFrame(index=features.index)
    for name in names:
        column = joined[name] if name in joined else pd.Series(np.nan, index=features.index)
        out[name] = pd.to_numeric(column, errors="coerce").astype(np.float64).fillna(fill[name])
    return out


def _numeric_names(features: pd.DataFrame) -> list[str]:
    return [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]


# --- training data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UpliftData:
    """Training rows (one per intervention) and the feature recipe to score new customers."""

    X: pd.DataFrame  # index: intervention id
    arm: np.ndarray
    retained: np.ndarray
    revenue: np.ndarray
    risk: np.ndarray
    first_assigned: datetime
    last_assigned: datetime
    cycles: int
    recipe: dict[str, Any]  # feature_names, fill, event_kinds, btyd_params
    # Actions left out of this model, each with the reason (a sentence).
    left_out: tuple[str, ...] = ()


def _finished_rows(campaign: Campaign, now: datetime) -> pd.DataFrame:
    """The campaign's analysis rows whose attribution window ended by `now`, with outcome."""
    ids = Intervention.objects.filter(campaign=campaign).order_by().values_list("id", flat=True)
    last = max(ids, default=0)
    if not last:
        return pd.DataFrame()
    rows = intervention_outcomes(campaign=campaign, after_id=0, up_to_id=last)
    rows = rows.loc[rows["in_analysis"].astype(int).eq(1)].copy()
    rows["created_at"] = pd.to_datetime(rows["created_at"], utc=True)
    ends = rows["created_at"] + pd.to_timedelta(rows["window_days"].astype(float), unit="D")
    rows = rows.loc[ends <= pd.Timestamp(now)]
    if rows.empty:
        return rows
    extra = pd.DataFrame.from_records(
        Intervention.objects.filter(pk__in=rows["intervention_id"].tolist()).values_list(
            "id", "customer_id", "customer_value"
        ),
        columns=["intervention_id", "customer_id", "customer_value"],
    )
    return rows.merge(extra, on="intervention_id")


def uplift_training_data(
    *, campaign: Campaign, now: datetime, progress: Callable[[str], None] | None = None
) -> UpliftData:
    """Rows, outcomes and features as of each assignment; UpliftTrainingError with the reason
    when there is nothing to train on."""
    say = progress or (lambda _m: None)
    rows = _finished_rows(campaign, now)
    if rows.empty:
        raise UpliftTrainingError(
            f"campaign {campaign.key or campaign.pk}: no intervention's attribution window "
            f"({campaign.attribution_window_days} days) has finished by {now:%Y-%m-%d %H:%M}; "
            "run cycles and wait for their windows to end"
        )
    rows["arm_key"] = np.where(
        rows["arm"].eq("control"), CONTROL_ARM, "rule-" + rows["rule_id"].astype(str)
    )
    rows["retained"] = (rows["orders"].astype(int) > 0).astype(np.int64)
    rows, left_out = _check_arms(rows)
    for sentence in left_out:
        say(sentence)
    say(f"rows: {len(rows):,} interventions in {rows['cycle_id'].nunique()} cycles")
    recipe = _recipe_from_churn_model()
    sources = _sources(rows["customer_id"].tolist())
    parts = []
    for _cycle, part in rows.groupby("cycle_id", sort=True):
        as_of = part["created_at"].min().to_pydatetime()
        features = _features_as_of(
            sources,
            part["customer_id"].tolist(),
            as_of,
            event_kinds=recipe["event_kinds"],
            btyd_params=recipe["btyd_params"],
        )
        if recipe["btyd_params"] is None:  # no churn model: the first cycle's fit, reused
            recipe["btyd_params"] = features.attrs.get("btyd_params")
        if recipe["event_kinds"] is None:
            recipe["event_kinds"] = sorted(
                c.removeprefix("days_since_event_")
                for c in features.columns
                if c.startswith("days_since_event_")
            )
        by_customer = part.set_index("customer_id")
        frame = features.reindex(by_customer.index)
        frame.index = pd.Index(by_customer["intervention_id"].to_numpy(), name="intervention_id")
        frame["churn_probability"] = by_customer["churn_probability"].astype(float).to_numpy()
        frame["customer_value"] = by_customer["customer_value"].astype(float).to_numpy()
        parts.append(frame)
    say(f"features: as of each of {len(parts)} cycles' assignment")
    raw = pd.concat(parts)
    names = [n for n in _numeric_names(raw) if raw[n].notna().any()]
    fill = {n: float(raw[n].median()) for n in names}
    recipe.update(feature_names=names, fill=fill)
    rows = rows.set_index("intervention_id").loc[raw.index]
    X = _model_matrix(raw, pd.DataFrame(index=raw.index), names, fill)
    return UpliftData(
        X=X,
        arm=rows["arm_key"].to_numpy(dtype=object),
        retained=rows["retained"].to_numpy(),
        revenue=rows["revenue"].astype(float).to_numpy(),
        risk=rows["churn_probability"].astype(float).to_numpy(),
        first_assigned=rows["created_at"].min().to_pydatetime(),
        last_assigned=rows["created_at"].max().to_pydatetime(),
        cycles=len(parts),
        recipe=recipe,
        left_out=tuple(left_out),
    )


def _recipe_from_churn_model() -> dict[str, Any]:
    """Event kinds and BG/NBD parameters of the active churn model, so uplift features match
    the scores' (None when there is no churn model: fitted on the first cycle instead)."""
    model = churn_model_active()
    reference = (model.reference or {}) if model else {}
    return {
        "event_kinds": reference.get("event_kinds"),
        "btyd_params": reference.get("btyd_params"),
        "churn_model": model.version if model else "",
    }


def _check_arms(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Enough rows per arm and of both outcomes in the control arm: else UpliftTrainingError.
    An action with too few rows of one outcome cannot be learnt yet: its rows are left out (with
    the reason returned) and the model covers the other actions; the policy never chooses an
    action its model does not cover."""
    left_out: list[str] = []
    for arm, part in rows.groupby("arm_key"):
        retained = int(part["retained"].sum())
        if arm != CONTROL_ARM and min(retained, len(part) - retained) < MIN_ROWS_PER_OUTCOME:
            left_out.append(
                f"action {arm} left out: {retained:,} of its {len(part):,} finished rows were "
                f"retained (a model needs at least {MIN_ROWS_PER_OUTCOME} of each outcome)"
            )
            rows = rows.loc[~rows["arm_key"].eq(arm)]
    control = rows.loc[rows["arm_key"].eq(CONTROL_ARM)]
    treated = rows.loc[~rows["arm_key"].eq(CONTROL_ARM)]
    for label, part in (("control", control), ("treatment", treated)):
        if len(part) < _min_rows_per_arm():
            reasons = f" ({'; '.join(left_out)})" if left_out and label == "treatment" else ""
            raise UpliftTrainingError(
                f"too few finished rows in the {label} arm: {len(part):,} (need at least "
                f"{_min_rows_per_arm()}){reasons}; run more cycles or raise the control percentage"
            )
    retained = int(control["retained"].sum())
    if min(retained, len(control) - retained) < MIN_ROWS_PER_OUTCOME:
        raise UpliftTrainingError(
            f"the control arm: {retained:,} of its {len(control):,} finished rows were retained; "
            f"a model needs at least {MIN_ROWS_PER_OUTCOME} of each outcome in every arm (wait "
            "for more cycles, or check the orders are imported)"
        )
    return rows, left_out


# --- training and the registry ---------------------------------------------------------------


def uplift_model_train(
    *,
    campaign: Campaign,
    now: datetime,
    progress: Callable[[str], None] | None = None,
) -> UpliftTraining:
    """Train on the campaign's finished interventions, compare methods on a validation half,
    register the best (refitted on all rows) as a challenger, and make it champion when there
    is none or it beats the champion's Qini on comparable rows. Never raises for bad data: the
    message says what is missing."""
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    try:
        data = uplift_training_data(campaign=campaign, now=now, progress=say)
    except UpliftTrainingError as exc:
        return UpliftTraining(model=None, message=str(exc), rows=0)
    try:
        comparison = compare_methods(
            features=data.X, arm=data.arm, outcome=data.retained, revenue=data.revenue,
            risk=data.risk, n_boot=int(settings.UPLIFT_BOOTSTRAP_RESAMPLES),
        )  # fmt: skip
    except ValueError as exc:
        return UpliftTraining(
            model=None, message=f"the uplift learners could not fit: {exc}", rows=len(data.X)
        )
    say(f"methods: {', '.join(r['method'] for r in comparison.reports)}; best {comparison.best}")
    model = _register(campaign=campaign, data=data, comparison=comparison, now=now)
    decision = _champion_challenger(model=model, data=data, now=now)
    say(f"registry: {model.version} {decision}")
    seconds = time.perf_counter() - started
    return UpliftTraining(
        model=model,
        message=f"trained {model.version} ({comparison.best}) on {len(data.X):,} rows in "
        f"{seconds:.1f} s; {decision}" + "".join(f"; {s}" for s in data.left_out),
        rows=len(data.X),
    )


def _mean_qini(metrics: dict[str, Any]) -> float | None:
    value = metrics.get("mean_qini")
    return None if value is None else float(value)


def _action_averages(data: UpliftData) -> dict[str, dict[str, Any]]:
    """Per action, its average effect on every finished row (treated rate − the shared control
    rate, Newcombe interval): what the policy uses where the model's ranking is not validated."""
    arm = pd.Series(data.arm)
    retained = pd.Series(data.retained)
    control = arm.eq(CONTROL_ARM)
    out: dict[str, dict[str, Any]] = {}
    for action in sorted(set(arm[~control])):
        treated = arm.eq(action)
        result = proportion_difference(
            treated_successes=int(retained[treated].sum()),
            treated_n=int(treated.sum()),
            control_successes=int(retained[control].sum()),
            control_n=int(control.sum()),
        )
        out[str(action)] = {
            "value": result.difference,
            "low": result.ci_low,
            "high": result.ci_high,
            "treated": result.treated_n,
            "control": result.control_n,
        }
    return out


def action_evidence(model: UpliftModel) -> dict[str, ActionEvidence]:
    """Per action of a registered model, what its validation showed (models trained before the
    averages were stored have none: their predictions are used as they are)."""
    evidence: dict[str, ActionEvidence] = {}
    for key, figures in (model.metrics or {}).get("actions", {}).items():
        average = figures.get("average")
        qini = (figures.get("model") or {}).get("qini") or {}
        if average is None or qini.get("low") is None:
            continue
        evidence[key] = ActionEvidence(
            ranking_validated=float(qini["low"]) > 0, average_effect=float(average["value"])
        )
    return evidence


def _validation_metrics(comparison: Any) -> dict[str, Any]:
    """The chosen method's validation figures per action (retained outcome), beside random
    and risk targeting: {action: {"model"|"random"|"risk": report row without its curve}}."""
    roles = {comparison.best: "model", "random": "random", "risk": "risk"}
    per_action: dict[str, dict[str, Any]] = {}
    for row in comparison.reports:
        if row.get("outcome", "binary") != "binary" or row["method"] not in roles:
            continue
        plain = {k: v for k, v in row.items() if k != "curve"}
        per_action.setdefault(row["action"], {})[roles[row["method"]]] = plain
    qinis = [a["model"]["qini"]["value"] for a in per_action.values() if "model" in a]
    mean = (getattr(comparison, "mean_qini", None) or {}).get(comparison.best)
    return {
        "method": comparison.best,
        "mean_qini": float(mean if mean is not None else np.mean(qinis)),
        "actions": per_action,
    }


def _metrics_with_averages(metrics: dict[str, Any], data: UpliftData) -> dict[str, Any]:
    for key, average in _action_averages(data).items():
        metrics["actions"].setdefault(key, {})["average"] = average
    return metrics


def _register(
    *, campaign: Campaign, data: UpliftData, comparison: Any, now: datetime
) -> UpliftModel:
    version = (
        f"u{campaign.pk}-{timezone.now():%Y%m%d-%H%M%S}-"
        + hashlib.sha256(f"{time.time_ns()}".encode()).hexdigest()[:4]
    )
    path = Path(settings.MODEL_ARTIFACT_DIR) / "uplift" / f"{version}.skops"
    bundle = {"model": comparison.model, "recipe": data.recipe}
    sha = artifacts.save_artifact(estimator=bundle, path=path)
    rules = {r.pk: r for r in campaign.rules.select_related("offer")}
    actions = []
    for key in comparison.model.actions:
        rule = rules.get(int(key.removeprefix("rule-")))
        actions.append(
            {
                "key": key,
                "rule_id": rule.pk if rule else None,
                "label": rule.name if rule else f"{key} (rule deleted)",
                "channel": rule.channel if rule else "",
                "offer_id": rule.offer_id if rule else None,
                "expected_cost": round(action_cost(rule), 4) if rule else 0.0,
            }
        )
    arms = pd.Series(data.arm).value_counts()
    return UpliftModel.objects.create(
        campaign=campaign,
        version=version,
        method=comparison.best,
        actions=actions,
        feature_names=list(data.recipe["feature_names"]),
        training_rows=len(data.X),
        training_window={
            "first_assigned": data.first_assigned.isoformat(),
            "last_assigned": data.last_assigned.isoformat(),
            "cycles": data.cycles,
            "trained_at": now.isoformat(),
            "rows_per_arm": {str(k): int(v) for k, v in arms.items()},
            "retained_share": round(float(np.mean(data.retained)), 4),
        },
        validation_key=comparison.validation_key,
        metrics=_json_safe(_metrics_with_averages(_validation_metrics(comparison), data)),
        candidates=_json_safe(
            [{k: v for k, v in r.items() if k != "curve"} for r in comparison.reports]
        ),
        artifact_path=str(path),
        artifact_sha256=sha,
        library_versions={
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
    )


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))


def _champion_challenger(*, model: UpliftModel, data: UpliftData, now: datetime) -> str:
    """Make `model` champion when there is none, or when it beats the champion's Qini on the
    same validation rows; record the decision in its metrics and return it as a sentence."""
    champion = uplift_model_champion(campaign=model.campaign)
    new_qini = _mean_qini(model.metrics)
    if champion is None:
        decision, promote = "is champion (there was none)", True
    elif champion.validation_key == model.validation_key:
        old = _mean_qini(champion.metrics)
        promote = old is None or (new_qini is not None and new_qini > old)
        decision = (
            f"{'is champion' if promote else 'stays challenger'}: mean Qini {new_qini:.3f} vs "
            f"champion {champion.version} {old if old is None else round(old, 3)} on the same "
            "validation rows"
        )
    else:
        old = _champion_qini_on_new_rows(champion=champion, data=data)
        if old is None:
            promote = True
            decision = (
                f"is champion: trained on newer finished windows than {champion.version}, "
                "and too few rows after its training window to compare them"
            )
        else:
            promote = new_qini is not None and new_qini > old
            decision = (
                f"{'is champion' if promote else 'stays challenger'}: mean Qini {new_qini:.3f} "
                f"on its validation rows vs champion {champion.version} {old:.3f} on the "
                "rows assigned after its training window"
            )
    model.metrics = {**model.metrics, "decision": decision}
    model.save(update_fields=["metrics"])
    if promote:
        uplift_model_activate(model=model, now=now)
    return decision


def _champion_qini_on_new_rows(*, champion: UpliftModel, data: UpliftData) -> float | None:
    """The champion's mean Qini over the rows it never saw (assigned after its training
    window), None when there are too few of them or it cannot be loaded."""
    last = champion.training_window.get("last_assigned")
    if not last:
        return None
    created = pd.Series(
        dict(
            Intervention.objects.filter(pk__in=data.X.index.tolist()).values_list(
                "id", "created_at"
            )
        )
    )
    newer = (
        pd.to_datetime(created.reindex(data.X.index), utc=True) > pd.Timestamp(last)
    ).to_numpy()
    if newer.sum() < 2 * _min_rows_per_arm():
        return None
    try:
        bundle = uplift_model_load(model=champion)
    except UpliftTrainingError:
        return None
    X = data.X.loc[newer]
    scores = bundle["model"].predict_uplift(
        _model_matrix(
            X,
            pd.DataFrame(index=X.index),
            bundle["recipe"]["feature_names"],
            bundle["recipe"]["fill"],
        )
    )
    arm, y, values = data.arm[newer], data.retained[newer], []
    for action in scores.columns:
        rows = (arm == action) | (arm == CONTROL_ARM)
        treated = (arm[rows] == action).astype(np.int64)
        if treated.sum() < 2 or (1 - treated).sum() < 2:
            continue
        try:
            values.append(
                qini_coefficient(
                    y=y[rows], treatment=treated, score=scores[action].to_numpy()[rows]
                )
            )
        except ValueError:
            continue
    return float(np.mean(values)) if values else None


def uplift_model_activate(*, model: UpliftModel, now: datetime | None = None) -> UpliftModel:
    """Make `model` its campaign's champion; the previous champion becomes a challenger."""
    with transaction.atomic():
        UpliftModel.objects.select_for_update().filter(campaign_id=model.campaign_id).exclude(
            pk=model.pk
        ).filter(status=UpliftModelStatus.CHAMPION).update(status=UpliftModelStatus.CHALLENGER)
        model.status = UpliftModelStatus.CHAMPION
        model.activated_at = now or timezone.now()
        model.save(update_fields=["status", "activated_at"])
    return model


# --- predictions -----------------------------------------------------------------------------

_LOADED: dict[tuple[str, str], dict[str, Any]] = {}
_LOCK = Lock()


def uplift_model_load(*, model: UpliftModel) -> dict[str, Any]:
    """{"model": MultiActionUplift, "recipe": {...}} after checking the SHA-256; cached per
    process by (path, sha256)."""
    key = (model.artifact_path, model.artifact_sha256)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
    try:
        data = Path(model.artifact_path).read_bytes()
    except FileNotFoundError as exc:
        raise UpliftTrainingError(
            f"uplift model {model.version}: artifact {model.artifact_path} is missing"
        ) from exc
    if artifacts.sha256_bytes(data) != model.artifact_sha256:
        raise UpliftTrainingError(
            f"uplift model {model.version}: the artifact's SHA-256 does not match; refusing it"
        )
    ours = {t for t in sio.get_untrusted_types(data=data) if t.startswith("campaigns.uplift.")}
    try:
        bundle = artifacts.loads_verified(data=data, allowed_types=artifacts.ALLOWED_TYPES | ours)
    except artifacts.UntrustedArtifactError as exc:
        raise UpliftTrainingError(f"uplift model {model.version}: {exc}") from exc
    with _LOCK:
        _LOADED[key] = bundle
    return bundle


def uplift_predict(
    *,
    model: UpliftModel,
    customer_ids: Sequence[int],
    as_of: datetime,
    known: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Predicted change in P(retained) per customer (rows, customer id) and action (columns,
    the model's action keys), from features as of `as_of`; for an action whose ranking did not
    beat random on the validation rows, every customer gets the action's measured average
    effect instead (campaigns.uplift.policy.evidence_adjusted). `known` (index customer id, columns
    churn_probability and customer_value) saves reading what the caller has; by default the
    customers' latest score and their revenue over the value window are read."""
    bundle = uplift_model_load(model=model)
    fitted: MultiActionUplift = bundle["model"]
    recipe = bundle["recipe"]
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        return pd.DataFrame(columns=list(fitted.actions), dtype=float)
    features = _features_as_of(
        _sources(ids), ids, as_of,
        event_kinds=recipe["event_kinds"], btyd_params=recipe["btyd_params"],
    )  # fmt: skip
    if known is None:
        known = _known_now(ids, as_of)
    extra = known.reindex(features.index)[list(EXTRA_FEATURES)]
    X = _model_matrix(features, extra, recipe["feature_names"], recipe["fill"])
    return evidence_adjusted(fitted.predict_uplift(X), action_evidence(model))


def _known_now(ids: list[int], as_of: datetime) -> pd.DataFrame:
    probability = dict(Customer.objects.filter(pk__in=ids).values_list("pk", "churn_probability"))
    value = selectors.customer_value_frame(id_range=(ids[0], ids[-1]), now=as_of, ids=ids)
    frame = pd.DataFrame(index=pd.Index(ids, name="customer_id"))
    frame["churn_probability"] = frame.index.map(probability).astype(float)
    frame["customer_value"] = frame.index.map(value).astype(float)
    return frame.fillna({"customer_value": 0.0})
