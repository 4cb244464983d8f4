"""Every state change of the churn engine: training and registering models, scoring runs.

The bridge between ORM rows and the pure code in scoring.ml: rows are read per chunk of
customer ids into DataFrames (customers.frames) and scores are written back in bulk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone
from sklearn.metrics import average_precision_score, precision_recall_curve

from common.db.bulk import bulk_insert
from common.db.frames import frame_from_columns, frame_from_sql
from customers.models import Customer, Order, OrderStatus
from scoring.ml import artifacts
from scoring.ml.drift import (
    DriftReference,
    counts_from_cumulative,
    feature_counts,
    population_stability,
)
from scoring.ml.explain import Explanations, explain_customers
from scoring.ml.features import (
    FeatureSpec,
    align_features,
    build_features,
    build_snapshot_features,
    infer_feature_spec,
)
from scoring.ml.labels import behaviour_labels, parse_explicit_label
from scoring.ml.pipelines import select_candidates
from scoring.ml.tiers import assign_tiers
from scoring.ml.train import TrainingResult, train_and_select
from scoring.models import (
    ChurnModel,
    CustomerScore,
    ModelStatus,
    RunStatus,
    ScoringChunk,
    ScoringRun,
)
from scoring.selectors import churn_model_active, risk_tier_bands

logger = logging.getLogger(__name__)

# Fewest rows of each class for an out-of-time split to be worth evaluating on.
MIN_CLASS_ROWS = 30


class TrainingError(Exception):
    """Training cannot run on this data; the message says why and what to change."""


class ScoringError(Exception):
    """Scoring cannot run (no active model, unreadable artifact…)."""


# --- reading rows into frames -------------------------------------------------------------


def _id_range(column: str, first_id: int | None, last_id: int | None) -> tuple[str, list[int]]:
    """The condition first_id ≤ column ≤ last_id and its parameters ('' when unbounded)."""
    if first_id is None or last_id is None:
        return "", []
    return f"{column} >= %s AND {column} <= %s", [int(first_id), int(last_id)]


def _where(condition: str) -> str:
    return f" WHERE {condition}" if condition else ""


# Order statuses travel as small numbers (fixed-width rows read in one step) and come back as
# a categorical column; a status outside the choices reads "other".
_ORDER_STATUSES = ("other", *OrderStatus.values)
_ORDER_STATUS_CODE = (
    "CASE lower(status) "
    + " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(_ORDER_STATUSES) if i)
    + " ELSE 0 END"
)


def orders_frame(*, first_id: int | None = None, last_id: int | None = None) -> pd.DataFrame:
    """Orders of customers with first_id ≤ id ≤ last_id (all when no bounds)."""
    condition, params = _id_range("customer_id", first_id, last_id)
    frame = frame_from_columns(
        Order._meta.db_table,
        {
            "customer_id": ("customer_id", "int8"),
            "placed_at": ("placed_at", "timestamptz"),
            "amount": ("amount", "float8"),
            "status": (_ORDER_STATUS_CODE, "int4"),
            "discount_amount": ("discount_amount", "float8"),
            "item_count": ("item_count", "int4"),
        },
        where=condition,
        params=params,
    )
    frame["status"] = pd.Categorical.from_codes(frame["status"], categories=_ORDER_STATUSES)
    return frame


def events_frame(*, first_id: int | None = None, last_id: int | None = None) -> pd.DataFrame:
    condition, params = _id_range("customer_id", first_id, last_id)
    return frame_from_sql(
        f"SELECT customer_id, kind, occurred_at FROM customers_event{_where(condition)}",
        params,
        columns=["customer_id", "kind", "occurred_at"],
        datetimes=["occurred_at"],
    )


def customers_frame(*, first_id: int | None = None, last_id: int | None = None) -> pd.DataFrame:
    condition, params = _id_range("id", first_id, last_id)
    frame = frame_from_sql(
        f"SELECT id, signup_date, attributes FROM customers_customer{_where(condition)} "
        "ORDER BY id",
        params,
        columns=["customer_id", "signup_date", "attributes"],
    )
    frame["signup_date"] = pd.to_datetime(frame["signup_date"], utc=True)

    # Attributes repeat a lot (a few plans, channels, ages): each distinct JSON text is parsed
    # once instead of once per customer, and every row still gets its own dict.
    def parse(v: Any) -> Any:
        return v if isinstance(v, dict) else (json.loads(v) if isinstance(v, str) else {})

    try:
        codes, distinct = pd.factorize(frame["attributes"])
    except TypeError:  # unhashable values: dicts from a backend that parses JSON itself
        frame["attributes"] = frame["attributes"].map(parse)
        return frame
    parsed = [parse(v) for v in distinct]
    frame["attributes"] = pd.Series(
        [
            {} if code < 0 else (dict(p) if isinstance(p := parsed[code], dict) else p)
            for code in codes.tolist()
        ],
        index=frame.index,
        dtype=object,
    )
    return frame


# --- training --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingOutcome:
    model: ChurnModel
    result: TrainingResult
    activated: bool
    comparison: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = self.result.to_dict()
        selected = next(c for c in data["candidates"] if c["name"] == self.result.selected)
        return {
            "selected": {
                "name": self.result.selected,
                "version": self.model.version,
                "status": self.model.status,
                "threshold": self.result.threshold,
                "threshold_method": self.result.threshold_method,
                **_flat_metrics(self.result.metrics),
                "uncalibrated_candidate": _flat_metrics(selected.get("metrics", {})),
            },
            "candidates": [
                {"name": c["name"], **_flat_metrics(c.get("metrics", {})), **_timing(c)}
                for c in data["candidates"]
            ],
            "activated": self.activated,
            "champion_challenger": self.comparison,
            "validation": data["validation"],
            "label": self.model.label_definition,
            "rows": self.model.training_rows,
            "positive_rate": self.model.positive_rate,
        }


def _flat_metrics(metrics: Any) -> dict[str, Any]:
    keep = (
        "roc_auc",
        "pr_auc",
        "brier",
        "log_loss",
        "precision",
        "recall",
        "f1",
        "top_decile_lift",
        "top_decile_capture",
        "threshold",
    )
    return {k: metrics[k] for k in keep if k in metrics}


def _timing(candidate: dict[str, Any]) -> dict[str, Any]:
    return {k: candidate[k] for k in ("fit_seconds", "seconds") if k in candidate}


def _without_label(customers: pd.DataFrame, label: str) -> tuple[pd.DataFrame, pd.Series]:
    """Split the label attribute off the customers' attributes (it must never be a feature)."""
    values = customers["attributes"].map(lambda a: a.get(label))
    stripped = customers.assign(
        attributes=customers["attributes"].map(lambda a: {k: v for k, v in a.items() if k != label})
    )
    return stripped, values


def _drop_columns(features: pd.DataFrame, drop: Sequence[str]) -> pd.DataFrame:
    wanted = {d.lower() for d in drop}
    keep = [
        c
        for c in features.columns
        if c.lower() not in wanted and c.lower().removeprefix("attr_") not in wanted
    ]
    return features[keep]


def _informative(features: pd.DataFrame) -> pd.DataFrame:
    """Drop columns with no information at all (entirely missing)."""
    return features.loc[:, features.notna().any()]


def training_data_from_database(
    *,
    label_attribute: str | None = None,
    as_of: datetime | None = None,
    horizon_days: int | None = None,
    drop: Sequence[str] = (),
) -> dict[str, Any]:
    """Features and labels from the database, as of the cutoff (nothing later leaks in).

    Explicit label: every customer carrying `label_attribute`, features as of `as_of` (default
    now). Behaviour label: customers with an order before `as_of`; churned if none in the next
    `horizon_days`. For out-of-time validation the model is also trained at the earlier cutoff
    `as_of - horizon` and validated at `as_of` when both cutoffs have enough customers.
    """
    orders, events, customers = orders_frame(), events_frame(), customers_frame()
    if label_attribute:
        cutoff = pd.Timestamp(as_of or timezone.now())
        customers, raw = _without_label(customers, label_attribute)
        present = raw.notna()
        if not present.any():
            raise TrainingError(
                f"no customer has the attribute '{label_attribute}'; import a file with that "
                "column or use --as-of/--horizon for a behaviour label"
            )
        try:
            y = parse_explicit_label(values=raw[present].to_numpy())
        except ValueError as exc:
            raise TrainingError(f"label attribute '{label_attribute}': {exc}") from exc
        subset = customers[present.to_numpy()]
        full = build_features(orders=orders, events=events, customers=subset, as_of=cutoff)
        X = _informative(_drop_columns(full, drop))
        return {
            "X": X,
            "X_champion": full,
            "btyd_params": full.attrs.get("btyd_params"),
            "y": y,
            "cv": "stratified",
            "label": {"kind": "attribute", "attribute": label_attribute},
            "window": {"as_of": cutoff.isoformat()},
        }
    if as_of is None or horizon_days is None:
        raise TrainingError("give either --label-attribute COLUMN or --as-of DATE --horizon DAYS")
    cutoff = pd.Timestamp(as_of)
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff
    last_order = orders["placed_at"].max() if len(orders) else None
    if last_order is None or pd.isna(last_order):
        raise TrainingError("there are no orders: import orders before training a behaviour label")
    if cutoff + pd.Timedelta(days=horizon_days) > last_order + pd.Timedelta(days=1):
        raise TrainingError(
            f"the label window {cutoff:%Y-%m-%d} + {horizon_days} days ends after the last order "
            f"({last_order:%Y-%m-%d}): churn there is not observed yet; choose an earlier --as-of"
        )

    def at(when: pd.Timestamp) -> tuple[pd.DataFrame, np.ndarray]:
        labels = behaviour_labels(orders=orders, cutoff=when, horizon_days=horizon_days).as_series()
        subset = customers[customers["customer_id"].isin(labels.index)]
        X = build_features(orders=orders, events=events, customers=subset, as_of=when)
        return X, labels.reindex(X.index).to_numpy()

    X_valid, y_valid = at(cutoff)
    train_cutoff = cutoff - pd.Timedelta(days=horizon_days)
    X_train, y_train = at(train_cutoff)
    label = {"kind": "behaviour", "horizon_days": horizon_days, "as_of": cutoff.isoformat()}
    if min(np.bincount(y_train, minlength=2).min(), np.bincount(y_valid, minlength=2).min()) >= (
        MIN_CLASS_ROWS
    ):
        columns = _informative(_drop_columns(X_train, drop)).columns
        return {
            "X": X_train[columns],
            "y": y_train,
            "X_valid": X_valid.reindex(columns=columns),
            "y_valid": y_valid,
            "X_champion": X_valid,
            "btyd_params": X_valid.attrs.get("btyd_params"),
            "cv": "out_of_time",
            "label": label,
            "window": {
                "train_cutoff": train_cutoff.isoformat(),
                "valid_cutoff": cutoff.isoformat(),
            },
        }
    X = _informative(_drop_columns(X_valid, drop))
    return {
        "X": X,
        "X_champion": X_valid,
        "btyd_params": X_valid.attrs.get("btyd_params"),
        "y": y_valid,
        "cv": "stratified",
        "label": label,
        "window": {
            "as_of": cutoff.isoformat(),
            "note": f"not enough history before {train_cutoff:%Y-%m-%d} for an out-of-time "
            "split: stratified cross-validation instead",
        },
    }


def training_data_from_file(
    *, path: Path, label: str, id_column: str | None = None, drop: Sequence[str] = ()
) -> dict[str, Any]:
    """Features and labels from a labelled CSV/XLSX (one row per customer)."""
    table = _read_table(path)
    if label not in table.columns:
        raise TrainingError(f"{path}: no column '{label}' (columns: {', '.join(table.columns)})")
    if id_column and id_column not in table.columns:
        raise TrainingError(f"{path}: no id column '{id_column}'")
    missing = [d for d in drop if d not in table.columns]
    if missing:
        raise TrainingError(f"{path}: --drop names unknown column(s) {', '.join(missing)}")
    try:
        y = parse_explicit_label(values=table[label].to_numpy())
    except ValueError as exc:
        raise TrainingError(f"{path}: label '{label}': {exc}") from exc
    X = build_snapshot_features(table=table, id_column=id_column, label_column=label, drop=drop)
    return {
        "X": X,
        "y": y,
        "cv": "stratified",
        "label": {
            "kind": "file",
            "path": str(path),
            "label": label,
            "id": id_column,
            "drop": list(drop),
        },
        "window": {},
    }


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise TrainingError(f"{path}: no such file")
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        return pd.read_excel(path)
    return pd.read_csv(path, sep=None, engine="python")


def file_score(*, path: Path, version: str | None = None) -> pd.DataFrame:
    """Score the rows of a file with a model trained by `churn_train --csv`.

    Returns id, probability, tier and reasons per row (the label column, if present, is
    ignored); `frame.attrs["model"]` names the model version used.
    """
    models = ChurnModel.objects.filter(label_definition__kind="file")
    model = (models.filter(version=version) if version else models).order_by("-created_at").first()
    if model is None:
        raise ScoringError(
            f"no file-trained model {version or ''}: train one with churn_train --csv".replace(
                "  ", " "
            )
        )
    definition = model.label_definition
    table = _read_table(path)
    id_column = definition.get("id")
    if id_column and id_column not in table.columns:
        raise ScoringError(f"{path}: the model expects an id column '{id_column}'")
    drop = [d for d in definition.get("drop", []) if d in table.columns]
    label = definition["label"] if definition["label"] in table.columns else None
    features = build_snapshot_features(
        table=table, id_column=id_column, label_column=label, drop=drop
    )
    scored = score_features(model=model, estimator=churn_model_load(model=model), features=features)
    out = pd.DataFrame(
        {
            "id": table[id_column].to_numpy() if id_column else np.arange(len(table)),
            "probability": scored.probability.round(6),
            "tier": scored.tier,
            "reasons": ["; ".join(r) for r in scored.reasons],
        }
    )
    out.attrs["model"] = model.version
    return out


def _validation_key(data: dict[str, Any]) -> str:
    """Fingerprint of the rows and labels a model is validated on (same key = same data)."""
    label = {
        k: v
        for k, v in data["label"].items()
        if k != "as_of" or data["label"].get("kind") != "attribute"
    }
    digest = hashlib.sha256(json.dumps(label, sort_keys=True).encode())
    for name in ("X", "X_valid"):
        if name in data:
            digest.update(np.asarray(data[name].index.astype(str)).astype("U").tobytes())
    for name in ("y", "y_valid"):
        if name in data:
            digest.update(np.asarray(data[name], dtype=np.int8).tobytes())
    return digest.hexdigest()[:32]


def _champion_pr_auc(champion: ChurnModel, X: pd.DataFrame, y: np.ndarray) -> float | None:
    try:
        estimator = churn_model_load(model=champion)
        spec = FeatureSpec.from_dict(champion.feature_spec)
        p = estimator.predict_proba(align_features(features=X, spec=spec))[:, 1]
    except Exception as exc:  # an incompatible or unreadable champion cannot defend its title
        logger.warning("champion %s could not score the challenger's data: %s", champion, exc)
        return None
    return float(average_precision_score(y, p))


def churn_model_train(
    *,
    data: dict[str, Any],
    candidates: str | Sequence[str] = "default",
    n_splits: int = 5,
    random_state: int = 0,
    offer_cost: float | None = None,
    customer_value: float | None = None,
    register_only: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TrainingOutcome:
    """Train, select, calibrate and register a model; activate it if it beats the champion.

    `data` comes from `training_data_from_database` or `training_data_from_file`. The
    challenger becomes active only if its PR-AUC on the validation data is at least the active
    model's PR-AUC on the same rows (champion/challenger). `register_only` never activates.
    """
    X: pd.DataFrame = data["X"]
    y = np.asarray(data["y"], dtype=np.int64)
    if len(np.unique(y)) < 2 or np.bincount(y, minlength=2).min() < n_splits:
        raise TrainingError(
            f"need at least {n_splits} rows of each class; got {np.bincount(y, minlength=2)}"
        )
    spec = infer_feature_spec(features=X)
    try:
        chosen = select_candidates(names=candidates)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    if progress:
        progress(f"training {len(chosen)} candidates on {len(X):,} rows ({y.mean():.1%} churn)")
    result = train_and_select(
        X=X,
        y=y,
        spec=spec,
        candidates=chosen,
        cv="stratified",
        n_splits=n_splits,
        random_state=random_state,
        offer_cost=offer_cost,
        customer_value=customer_value,
        X_valid=data.get("X_valid"),
        y_valid=data.get("y_valid"),
    )
    # The champion sees the same rows with every feature it was trained on (before --drop).
    holdout_X = data.get("X_champion", data.get("X_valid", X))
    holdout_y = np.asarray(data.get("y_valid", y), dtype=np.int64)
    challenger_pr_auc = float(result.metrics["pr_auc"])
    version = (
        timezone.now().strftime("m%Y%m%d-%H%M%S-")
        + hashlib.sha256(f"{time.time_ns()}".encode()).hexdigest()[:4]
    )
    artifact_dir = Path(settings.MODEL_ARTIFACT_DIR)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    path = artifact_dir / f"{version}.skops"
    sha = artifacts.save_artifact(estimator=result.estimator, path=path)
    summary = result.to_dict()
    selected = next(c for c in summary["candidates"] if c["name"] == result.selected)
    pr_curve = _pr_curve(holdout_y, result.oof_probabilities)
    model = ChurnModel.objects.create(
        version=version,
        candidate=result.selected,
        algorithm=selected.get("classifier", result.selected),
        sampler=str(selected.get("sampler", "")),
        parameters=selected.get("params", {}),
        feature_spec=spec.to_dict(),
        feature_names=list(result.feature_names),
        label_definition=data["label"],
        training_window=data["window"],
        training_rows=len(X) + (len(data["X_valid"]) if "X_valid" in data else 0),
        positive_rate=float(np.concatenate([y, np.asarray(data.get("y_valid", []))]).mean()),
        metrics={**summary["metrics"], "validation": summary["validation"], "pr_curve": pr_curve},
        candidates=summary["candidates"],
        validation_key=_validation_key(data),
        library_versions=summary["library_versions"],
        threshold=float(result.threshold),
        reference={
            "drift": result.training_summary.to_dict(),
            "values": summary["reference_values"],
            # BG/NBD parameters of the latest cutoff: scoring reuses them, so a customer's
            # features never depend on which chunk they are scored in.
            "btyd_params": data.get("btyd_params"),
            "event_kinds": sorted(
                c.removeprefix("days_since_event_")
                for c in result.feature_names
                if c.startswith("days_since_event_")
            ),
        },
        artifact_path=str(path),
        artifact_sha256=sha,
    )
    comparison: dict[str, Any] = {
        "challenger": model.version,
        "challenger_pr_auc": challenger_pr_auc,
    }
    activated = False
    if not register_only:
        champion = churn_model_active()
        if champion is None:
            comparison["decision"] = "no active model: the challenger becomes active"
            activated = True
        else:
            if champion.validation_key == model.validation_key:
                # Same rows and labels: compare the two out-of-fold figures directly.
                champion_pr_auc = champion.metrics.get("pr_auc")
                comparison["basis"] = "out-of-fold on the same validation data"
            else:
                # New data: the champion predicts the challenger's validation rows. For
                # snapshot labels it may have trained on some of them, which favours the
                # champion: a challenger must then clearly win to take over.
                champion_pr_auc = _champion_pr_auc(champion, holdout_X, holdout_y)
                comparison["basis"] = "champion scored on the challenger's validation rows"
            comparison.update(champion=champion.version, champion_pr_auc=champion_pr_auc)
            if champion_pr_auc is None or challenger_pr_auc >= champion_pr_auc:
                comparison["decision"] = "challenger is at least as good: activated"
                activated = True
            else:
                comparison["decision"] = "champion is better: challenger kept as candidate"
        model.holdout_metrics = comparison
        model.save(update_fields=["holdout_metrics"])
        if activated:
            churn_model_activate(model=model)
    else:
        comparison["decision"] = "registered only (trained from a file)"
    model.refresh_from_db()
    return TrainingOutcome(model=model, result=result, activated=activated, comparison=comparison)


def _pr_curve(y: np.ndarray, p: np.ndarray | None, points: int = 60) -> list[list[float]]:
    """About `points` (recall, precision) pairs of the out-of-fold precision-recall curve."""
    if p is None or len(p) != len(y):
        return []
    precision, recall, _ = precision_recall_curve(y, p)
    keep = np.unique(np.linspace(0, len(recall) - 1, min(points, len(recall))).astype(int))
    return [[round(float(recall[i]), 4), round(float(precision[i]), 4)] for i in keep]


def churn_model_activate(*, model: ChurnModel) -> ChurnModel:
    """Make `model` the active one (retiring the current); the admin's promote and rollback."""
    if model.label_definition.get("kind") == "file":
        raise TrainingError("a model trained from a file cannot score the database's customers")
    with transaction.atomic():
        ChurnModel.objects.select_for_update().filter(status=ModelStatus.ACTIVE).exclude(
            pk=model.pk
        ).update(status=ModelStatus.RETIRED)
        model.status = ModelStatus.ACTIVE
        model.activated_at = timezone.now()
        model.save(update_fields=["status", "activated_at"])
    return model


def churn_model_rollback() -> ChurnModel:
    """Re-activate the model that was active before the current one."""
    current = churn_model_active()
    earlier = ChurnModel.objects.filter(
        status=ModelStatus.RETIRED, activated_at__isnull=False
    ).exclude(label_definition__kind="file")
    if current is not None and current.activated_at is not None:
        earlier = earlier.filter(activated_at__lt=current.activated_at)
    previous = earlier.order_by("-activated_at").first()
    if previous is None:
        raise TrainingError("no previously active model to roll back to")
    return churn_model_activate(model=previous)


def churn_model_load(*, model: ChurnModel) -> Any:
    """The fitted estimator, after checking the artifact's SHA-256 (refuses a tampered file)."""
    try:
        return artifacts.load_artifact(path=model.artifact_path, sha256=model.artifact_sha256)
    except FileNotFoundError as exc:
        raise ScoringError(
            f"model {model.version}: artifact {model.artifact_path} is missing"
        ) from exc
    except artifacts.ArtifactIntegrityError as exc:
        raise ScoringError(f"model {model.version}: {exc}") from exc


# --- scoring -------------------------------------------------------------------------------


def _tier_bands() -> tuple[list[float], list[str]]:
    bands = risk_tier_bands()
    names = [name for name, _ in bands]
    edges = [bound for _, bound in bands][1:]
    return edges, names


@dataclass(frozen=True)
class ScoredFrame:
    """Scores for one frame of customers (pure result; written by the caller)."""

    probability: np.ndarray
    tier: np.ndarray
    explanations: Explanations
    # The rows' features counted into the model's drift bins (empty without a reference).
    drift_counts: dict[str, list[float]] = field(default_factory=dict)

    @property
    def reasons(self) -> tuple[tuple[str, ...], ...]:
        return self.explanations.reasons


def score_features(
    *, model: ChurnModel, estimator: Any, features: pd.DataFrame, reasons_from: float | None = None
) -> ScoredFrame:
    """Probability, tier and top-3 reasons for every row of `features` (aligned to the model)."""
    spec = FeatureSpec.from_dict(model.feature_spec)
    X = align_features(features=features, spec=spec)
    edges, names = _tier_bands()
    # Reasons for the at-risk: everyone at or above the second tier's lower bound.
    floor = reasons_from if reasons_from is not None else (edges[0] if edges else 0.0)
    # The probabilities come with the reasons: a linear model is transformed only once.
    explanations = explain_customers(
        estimator=estimator,
        X=X,
        spec=spec,
        reference=model.reference.get("values", {}),
        threshold=floor,
    )
    probability = explanations.probabilities
    tiers: Any = assign_tiers(probabilities=probability, edges=edges, names=names) if len(X) else []
    drift = model.reference.get("drift")
    return ScoredFrame(
        probability=probability,
        tier=np.asarray(tiers, dtype=object),
        explanations=explanations,
        drift_counts=(
            feature_counts(reference=DriftReference.from_dict(drift), X=X) if drift else {}
        ),
    )


def scoring_chunk_score(*, run: ScoringRun, first_id: int, last_id: int) -> int:
    """Score the customers with first_id ≤ id ≤ last_id for `run`; safe to run twice.

    A chunk's scores and the customers' latest-score columns are written in one transaction,
    so a chunk with any score of this run is complete: a retried or redelivered chunk finds it
    and writes nothing (and two attempts at once meet the unique (run, customer) constraint).
    Returns the scores written.
    """
    mine = CustomerScore.objects.filter(
        run=run, customer_id__gte=first_id, customer_id__lte=last_id
    )
    if mine.exists():
        return 0
    model = run.model
    estimator = churn_model_load(model=model)
    customers = customers_frame(first_id=first_id, last_id=last_id)
    if customers.empty:
        return 0
    features = build_features(
        orders=orders_frame(first_id=first_id, last_id=last_id),
        events=events_frame(first_id=first_id, last_id=last_id),
        customers=customers,
        as_of=pd.Timestamp(run.as_of),
        event_kinds=model.reference.get("event_kinds") or None,
        btyd_params=model.reference.get("btyd_params"),
    )
    scored = score_features(model=model, estimator=estimator, features=features)
    now = timezone.now()
    ids = features.index.to_numpy()
    scores = pd.DataFrame(
        {
            "run_id": run.pk,
            "customer_id": ids,
            "probability": scored.probability.astype(float),
            "tier": scored.tier,
            "reasons": scored.explanations.reasons_json(),
            "scored_at": now,
        }
    )
    try:
        with transaction.atomic():
            written = bulk_insert(CustomerScore, scores, json_text=("reasons",))
            _customers_take_scores(run=run, first_id=first_id, last_id=last_id)
            ScoringChunk.objects.create(
                run=run,
                first_id=first_id,
                last_id=last_id,
                customers=written,
                feature_counts=scored.drift_counts,
            )
    except IntegrityError:
        if mine.exists():  # another attempt at this chunk committed first
            return 0
        raise
    return written


def _customers_take_scores(*, run: ScoringRun, first_id: int, last_id: int) -> int:
    """Copy this run's scores of a chunk into the customers' latest-score columns, in one
    set-based UPDATE (no row passes through Python). Returns the customers updated."""
    quote = connection.ops.quote_name
    customers, scores = quote(Customer._meta.db_table), quote(CustomerScore._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {customers} SET churn_probability = s.probability, risk_tier = s.tier, "
            "scored_at = s.scored_at, score_model_version = %s "
            f"FROM {scores} s WHERE s.run_id = %s AND s.customer_id BETWEEN %s AND %s "
            f"AND {customers}.id = s.customer_id",
            [run.model.version, run.pk, first_id, last_id],
        )
        return max(cursor.rowcount, 0)


def _chunks(ids: np.ndarray, size: int) -> list[tuple[int, int]]:
    return [(int(ids[i]), int(ids[min(i + size, len(ids)) - 1])) for i in range(0, len(ids), size)]


def scoring_run_create(
    *, as_of: datetime, run_key: str | None = None, model: ChurnModel | None = None
) -> tuple[ScoringRun, list[tuple[int, int]]] | None:
    """Create the run row and its chunks of customer ids; None if `run_key` already ran.

    The unique run_key (e.g. nightly-2026-11-24) is the guard against a doubled periodic run.
    """
    model = model or churn_model_active()
    if model is None:
        raise ScoringError("there is no active churn model: train one with manage.py churn_train")
    ids = np.sort(
        frame_from_columns(Customer._meta.db_table, {"id": ("id", "int8")})["id"].to_numpy(
            dtype=np.int64
        )
    )
    chunks = _chunks(ids, settings.SCORING_CHUNK_CUSTOMERS)
    key = run_key or f"manual-{timezone.now():%Y%m%dT%H%M%S.%f}"
    try:
        with transaction.atomic():
            run = ScoringRun.objects.create(
                run_key=key,
                model=model,
                as_of=as_of,
                customers_total=len(ids),
                chunks_total=len(chunks),
            )
    except IntegrityError:
        return None
    return run, chunks


def scoring_run_finish(*, run: ScoringRun) -> ScoringRun:
    """Count what the chunks wrote, check drift against training, and close the run."""
    run.refresh_from_db()
    tiers = dict(
        CustomerScore.objects.filter(run=run)
        .values_list("tier")
        .annotate(n=Count("pk"))
        .values_list("tier", "n")
    )
    run.tier_counts = {name: tiers.get(name, 0) for name, _ in risk_tier_bands()}
    run.customers_scored = sum(tiers.values())
    run.chunks_done = ScoringChunk.objects.filter(run=run).count()
    run.drift = scoring_run_drift(run=run)
    run.status = RunStatus.COMPLETED
    run.finished_at = timezone.now()
    run.timings = {**run.timings, "seconds": (run.finished_at - run.started_at).total_seconds()}
    run.save()
    return run


def scoring_run_drift(*, run: ScoringRun) -> dict[str, Any]:
    """PSI of the run's scores and of every scored customer's features against training."""
    reference_data = run.model.reference.get("drift")
    if not reference_data:
        return {}
    reference = DriftReference.from_dict(reference_data)
    score_counts = None
    if reference.score is not None:
        # Counted by the database into the reference's bins: no million values sent over.
        edges = reference.score.edges
        counted = CustomerScore.objects.filter(run=run).aggregate(
            present=Count("pk", filter=Q(probability__isnull=False)),
            missing=Count("pk", filter=Q(probability__isnull=True)),
            **{f"le{i}": Count("pk", filter=Q(probability__lte=e)) for i, e in enumerate(edges)},
        )
        score_counts = counts_from_cumulative(
            [counted[f"le{i}"] for i in range(len(edges))],
            present=counted["present"],
            missing=counted["missing"],
        )
    # Every chunk counted its customers' features into the reference bins: add them up.
    counts: dict[str, np.ndarray] = {}
    rows = 0
    for chunk_counts, customers in ScoringChunk.objects.filter(run=run).values_list(
        "feature_counts", "customers"
    ):
        rows += customers
        for name, values in chunk_counts.items():
            counts[name] = counts.get(name, 0) + np.asarray(values, dtype=np.float64)
    report = population_stability(
        reference=reference, counts=counts, n_rows=rows, score_counts=score_counts
    )
    return report.to_dict()


def scoring_run_get(*, run_key: str) -> ScoringRun:
    return ScoringRun.objects.select_related("model").get(run_key=run_key)


def metrics_summary(metrics: Any) -> dict[str, Any]:
    """The headline out-of-fold metrics of a model (for reports and the cycle's JSON)."""
    return _flat_metrics(metrics)


def scoring_run_fail(*, run: ScoringRun, error: str) -> None:
    ScoringRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, error=error[:5000], finished_at=timezone.now()
    )


def scoring_run_execute(
    *,
    as_of: datetime,
    run_key: str | None = None,
    on_chunk: Callable[[int, int], object] | None = None,
) -> ScoringRun | None:
    """Score every customer in-process, chunk by chunk (the embedded mode and the demo).

    In production `scoring.tasks.scoring_run_task` fans the same chunk function out to workers.
    """
    created = scoring_run_create(as_of=as_of, run_key=run_key)
    if created is None:
        return None
    run, chunks = created
    try:
        for first_id, last_id in chunks:
            written = scoring_chunk_score(run=run, first_id=first_id, last_id=last_id)
            if on_chunk:
                on_chunk(first_id, written)
    except Exception as exc:
        scoring_run_fail(run=run, error=f"{type(exc).__name__}: {exc}")
        raise
    return scoring_run_finish(run=run)


def default_as_of() -> datetime:
    """Midnight UTC today: the cutoff of a nightly run."""
    today = timezone.now().date()
    return datetime(today.year, today.month, today.day, tzinfo=UTC)


def parse_as_of(value: str | date | None) -> datetime:
    """A date or ISO datetime as an aware UTC datetime (a date means its midnight)."""
    if value is None:
        return default_as_of()
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()
