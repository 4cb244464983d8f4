"""The model registry: train and register a model, champion/challenger, activate, roll back,
load an artifact, and score a frame (or a file) with a registered model."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from sklearn.metrics import average_precision_score, precision_recall_curve

from scoring.errors import ScoringError, TrainingError
from scoring.ml import artifacts
from scoring.ml.datasets import TrainingData
from scoring.ml.distill import distill
from scoring.ml.drift import DriftReference, feature_counts, score_counts
from scoring.ml.explain import Explanations, explain_customers
from scoring.ml.features import (
    FeatureSpec,
    align_features,
    build_snapshot_features,
    infer_feature_spec,
)
from scoring.ml.pipelines import select_candidates
from scoring.ml.shapley import FeatureGroups, feature_groups
from scoring.ml.tiers import assign_ranked_tiers
from scoring.ml.train import TrainingResult, train_and_select
from scoring.models import ChurnModel, ModelStatus
from scoring.selectors import churn_model_active, risk_tier_edges, risk_tier_rules
from scoring.services.datasets import training_table_read

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOutcome:
    model: ChurnModel
    result: TrainingResult
    activated: bool
    comparison: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report of `churn_train --json` and the cycle (headline metrics only)."""
        data = self.result.to_dict()
        selected = next(c for c in data["candidates"] if c["name"] == self.result.selected)
        return {
            "selected": {
                "name": self.result.selected,
                "version": self.model.version,
                "status": self.model.status,
                "threshold": self.result.threshold,
                "threshold_method": self.result.threshold_method,
                **metrics_summary(self.result.metrics),
                "uncalibrated_candidate": metrics_summary(selected.get("metrics", {})),
            },
            "candidates": [
                {"name": c["name"], **metrics_summary(c.get("metrics", {})), **_timing(c)}
                for c in data["candidates"]
            ],
            "activated": self.activated,
            "champion_challenger": self.comparison,
            "validation": data["validation"],
            "label": self.model.label_definition,
            "rows": self.model.training_rows,
            "positive_rate": self.model.positive_rate,
        }


_HEADLINE_METRICS = (
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


def metrics_summary(metrics: Any) -> dict[str, Any]:
    """The headline out-of-fold metrics of a model (for reports and the cycle's JSON)."""
    return {k: metrics[k] for k in _HEADLINE_METRICS if k in metrics}


def _timing(candidate: dict[str, Any]) -> dict[str, Any]:
    return {k: candidate[k] for k in ("fit_seconds", "seconds") if k in candidate}


# --- train and register ----------------------------------------------------------------------


def churn_model_train(
    *,
    data: TrainingData,
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
    result = _train(
        data=data,
        candidates=candidates,
        n_splits=n_splits,
        random_state=random_state,
        offer_cost=offer_cost,
        customer_value=customer_value,
        progress=progress,
    )
    model = _churn_model_register(data=data, result=result)
    comparison: dict[str, Any] = {
        "challenger": model.version,
        "challenger_pr_auc": float(result.metrics["pr_auc"]),
    }
    activated = False
    if register_only:
        comparison["decision"] = "registered only (trained from a file)"
    else:
        activated = _champion_challenger(model=model, data=data, comparison=comparison)
        model.holdout_metrics = comparison
        model.save(update_fields=["holdout_metrics"])
        if activated:
            churn_model_activate(model=model)
    model.refresh_from_db()
    return TrainingOutcome(model=model, result=result, activated=activated, comparison=comparison)


def _train(
    *,
    data: TrainingData,
    candidates: str | Sequence[str],
    n_splits: int,
    random_state: int,
    offer_cost: float | None,
    customer_value: float | None,
    progress: Callable[[str], None] | None,
) -> TrainingResult:
    """Every candidate evaluated, the best selected and calibrated (scoring.ml.train)."""
    X = data.X
    y = np.asarray(data.y, dtype=np.int64)
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
    return train_and_select(
        X=X,
        y=y,
        spec=spec,
        candidates=chosen,
        cv="stratified",
        n_splits=n_splits,
        random_state=random_state,
        offer_cost=offer_cost,
        customer_value=customer_value,
        X_valid=data.X_valid,
        y_valid=data.y_valid,
    )


def _churn_model_register(*, data: TrainingData, result: TrainingResult) -> ChurnModel:
    """Write the artifact and the registry row (a candidate until activated)."""
    version = (
        timezone.now().strftime("m%Y%m%d-%H%M%S-")
        + hashlib.sha256(f"{time.time_ns()}".encode()).hexdigest()[:4]
    )
    artifact_dir = Path(settings.MODEL_ARTIFACT_DIR)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    path = artifact_dir / f"{version}.skops"
    sha = artifacts.save_artifact(estimator=result.estimator, path=path)
    summary = result.to_dict()
    student = _student(data=data, result=result)
    selected = next(c for c in summary["candidates"] if c["name"] == result.selected)
    return ChurnModel.objects.create(
        version=version,
        candidate=result.selected,
        algorithm=selected.get("classifier", result.selected),
        sampler=str(selected.get("sampler", "")),
        parameters=selected.get("params", {}),
        feature_spec=result.spec.to_dict(),
        feature_names=list(result.feature_names),
        label_definition=data.label,
        training_window=data.window,
        training_rows=data.n_rows,
        positive_rate=data.positive_rate,
        metrics={
            **summary["metrics"],
            "validation": summary["validation"],
            "pr_curve": _pr_curve(data.holdout_y, result.oof_probabilities),
        },
        candidates=summary["candidates"],
        validation_key=_validation_key(data),
        library_versions=summary["library_versions"],
        threshold=float(result.threshold),
        reference={
            "drift": result.training_summary.to_dict(),
            "values": summary["reference_values"],
            # Inputs that move together are one reason (scoring.ml.shapley), decided here
            # from the training rows' correlations.
            "groups": feature_groups(
                X=data.X, numeric=result.spec.numeric, columns=result.spec.columns
            ).to_dict(),
            # BG/NBD parameters of the latest cutoff: scoring reuses them, so a customer's
            # features never depend on which chunk they are scored in.
            "btyd_params": data.btyd_params,
            # The readable student (scoring.ml.distill), fitted to this model's probabilities.
            "student": student,
            "event_kinds": sorted(
                c.removeprefix("days_since_event_")
                for c in result.feature_names
                if c.startswith("days_since_event_")
            ),
        },
        artifact_path=str(path),
        artifact_sha256=sha,
    )


def _student(*, data: TrainingData, result: TrainingResult) -> dict[str, Any] | None:
    """Distil the model into a shallow tree over the holdout rows (the later cutoff when the
    model was validated out of time); None when there are too few rows."""
    X = data.holdout_X
    try:
        teacher = result.estimator.predict_proba(X)[:, 1]
        student, _tree, _encoded = distill(
            X=X,
            teacher=teacher,
            y=data.holdout_y,
            numeric=result.spec.numeric,
            categorical=result.spec.categorical,
        )
    except ValueError as exc:
        logger.warning("no readable student for this model: %s", exc)
        return None
    return student.to_dict()


def _validation_key(data: TrainingData) -> str:
    """Fingerprint of the rows and labels a model is validated on (same key = same data)."""
    label = {
        k: v for k, v in data.label.items() if k != "as_of" or data.label.get("kind") != "attribute"
    }
    digest = hashlib.sha256(json.dumps(label, sort_keys=True).encode())
    for frame in (data.X, data.X_valid):
        if frame is not None:
            digest.update(np.asarray(frame.index.astype(str)).astype("U").tobytes())
    for labels in (data.y, data.y_valid):
        if labels is not None:
            digest.update(np.asarray(labels, dtype=np.int8).tobytes())
    return digest.hexdigest()[:32]


def _pr_curve(y: np.ndarray, p: np.ndarray | None, points: int = 60) -> list[list[float]]:
    """About `points` (recall, precision) pairs of the out-of-fold precision-recall curve."""
    if p is None or len(p) != len(y):
        return []
    precision, recall, _ = precision_recall_curve(y, p)
    keep = np.unique(np.linspace(0, len(recall) - 1, min(points, len(recall))).astype(int))
    return [[round(float(recall[i]), 4), round(float(precision[i]), 4)] for i in keep]


# --- champion / challenger, activation -------------------------------------------------------


def _champion_challenger(
    *, model: ChurnModel, data: TrainingData, comparison: dict[str, Any]
) -> bool:
    """Whether the new `model` takes over from the active one; records why in `comparison`."""
    champion = churn_model_active()
    if champion is None:
        comparison["decision"] = "no active model: the challenger becomes active"
        return True
    if champion.validation_key == model.validation_key:
        # Same rows and labels: compare the two out-of-fold figures directly.
        champion_pr_auc = champion.metrics.get("pr_auc")
        comparison["basis"] = "out-of-fold on the same validation data"
    else:
        # New data: the champion predicts the challenger's validation rows. For snapshot
        # labels it may have trained on some of them, which favours the champion: a
        # challenger must then clearly win to take over.
        champion_pr_auc = _champion_pr_auc(champion, data.holdout_X, data.holdout_y)
        comparison["basis"] = "champion scored on the challenger's validation rows"
    comparison.update(champion=champion.version, champion_pr_auc=champion_pr_auc)
    if champion_pr_auc is None or comparison["challenger_pr_auc"] >= champion_pr_auc:
        comparison["decision"] = "challenger is at least as good: activated"
        return True
    comparison["decision"] = "champion is better: challenger kept as candidate"
    return False


def _champion_pr_auc(champion: ChurnModel, X: pd.DataFrame, y: np.ndarray) -> float | None:
    try:
        estimator = churn_model_load(model=champion)
        spec = FeatureSpec.from_dict(champion.feature_spec)
        p = estimator.predict_proba(align_features(features=X, spec=spec))[:, 1]
    except Exception as exc:  # an incompatible or unreadable champion cannot defend its title
        logger.warning("champion %s could not score the challenger's data: %s", champion, exc)
        return None
    return float(average_precision_score(y, p))


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
    ).exclude(Q(label_definition__has_key="kind") & Q(label_definition__kind="file"))
    # (has_key first: a definition without "kind" — models from before it was recorded — must
    # stay a rollback target; `kind = "file"` alone is NULL there and NOT NULL drops the row.)
    if current is not None and current.activated_at is not None:
        earlier = earlier.filter(activated_at__lt=current.activated_at)
    previous = earlier.order_by("-activated_at").first()
    if previous is None:
        raise TrainingError("no previously active model to roll back to")
    return churn_model_activate(model=previous)


# --- using a registered model ----------------------------------------------------------------


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


_estimators: dict[tuple[int, str, str, int, int], Any] = {}
_estimators_lock = threading.Lock()


def churn_model_estimator(*, model: ChurnModel) -> Any:
    """`churn_model_load`, kept for the life of the process: the model in use is read and its
    SHA-256 checked once, not once per scoring chunk or event rescore (0.12 s each for the
    bench's model; 20 chunks a night). Only the latest model asked for is kept. A file replaced
    since (another modification time or size) is read and checked again."""
    try:
        stat = os.stat(model.artifact_path)
    except OSError:
        return churn_model_load(model=model)  # missing: its clear error
    key = (model.pk, model.artifact_path, model.artifact_sha256, stat.st_mtime_ns, stat.st_size)
    with _estimators_lock:
        if key not in _estimators:
            _estimators.clear()
            _estimators[key] = churn_model_load(model=model)
        return _estimators[key]


@dataclass(frozen=True)
class ScoredFrame:
    """Scores for one frame of customers (pure result; written by the caller)."""

    probability: np.ndarray
    tier: np.ndarray
    explanations: Explanations
    # The rows' features counted into the model's drift bins (empty without a reference),
    # and their probabilities into its score bins (`scoring.ml.drift.score_counts`).
    drift_counts: dict[str, list[float]] = field(default_factory=dict)
    score_counts: list[float] = field(default_factory=list)

    @property
    def reasons(self) -> tuple[tuple[str, ...], ...]:
        return self.explanations.reasons


def score_features(
    *, model: ChurnModel, estimator: Any, features: pd.DataFrame, reasons_from: float | None = None
) -> ScoredFrame:
    """Probability, tier and top-3 reasons for every row of `features` (aligned to the model).

    Rank tiers are ranks within these rows; a scoring run re-tiers over the whole run.
    """
    spec = FeatureSpec.from_dict(model.feature_spec)
    X = align_features(features=features, spec=spec)
    edges, _names = risk_tier_edges()
    # Reasons for the at-risk: everyone at or above the second tier's probability bound
    # (for rank tiers too: a chunk cannot know the run-wide ranks, and explaining every
    # row would cost tree models a lot).
    floor = reasons_from if reasons_from is not None else (edges[0] if edges else 0.0)
    # The probabilities come with the reasons: a linear model is transformed only once.
    explanations = explain_customers(
        estimator=estimator,
        X=X,
        spec=spec,
        reference=model.reference.get("values", {}),
        threshold=floor,
        groups=FeatureGroups.from_dict(model.reference.get("groups"), spec.columns),
    )
    probability = explanations.probabilities
    tiers = assign_ranked_tiers(probabilities=probability, rules=risk_tier_rules())
    drift = model.reference.get("drift")
    reference = DriftReference.from_dict(drift) if drift else None
    return ScoredFrame(
        probability=probability,
        tier=np.asarray(tiers, dtype=object),
        explanations=explanations,
        drift_counts=feature_counts(reference=reference, X=X) if reference else {},
        score_counts=(
            score_counts(reference=reference, probabilities=probability) if reference else []
        ),
    )


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
    table = training_table_read(path=path)
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
