"""Models across installations and transfer from a source model (docs/transfer.md).

`churn_model_export` writes a registered model as its skops artifact plus a metadata JSON
(checksum, feature spec, label, threshold, reference values, library versions);
`churn_model_import` verifies and registers such a pair as a candidate; `transfer_source_load`
turns a registry version or an exported file into a `scoring.ml.transfer.SourceModel`, and
`churn_model_transfer_record` compares the target alone with each transfer method on the
training data and records the source and the outcome on the registered model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.utils import timezone

from scoring.errors import TrainingError
from scoring.ml import artifacts
from scoring.ml.datasets import TrainingData
from scoring.ml.distill import distill
from scoring.ml.features import FeatureSpec, align_features
from scoring.ml.transfer import SourceModel, TransferResult, shared_columns, transfer_select
from scoring.models import ChurnModel

EXPORT_FORMAT = 1
_EXPORTED = (
    "version",
    "candidate",
    "algorithm",
    "sampler",
    "feature_spec",
    "feature_names",
    "label_definition",
    "training_window",
    "training_rows",
    "positive_rate",
    "threshold",
    "library_versions",
)


def churn_model_export(*, model: ChurnModel, directory: Path) -> Path:
    """Write `<version>.skops` and `<version>.json` into `directory`; returns the JSON path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = Path(model.artifact_path).read_bytes()
    if artifacts.sha256_bytes(data) != model.artifact_sha256:
        raise TrainingError(f"model {model.version}: its artifact does not match its checksum")
    artifact = directory / f"{model.version}.skops"
    artifact.write_bytes(data)
    meta = {k: getattr(model, k) for k in _EXPORTED}
    meta.update(
        format=EXPORT_FORMAT,
        artifact=artifact.name,
        sha256=model.artifact_sha256,
        metrics={k: model.metrics.get(k) for k in ("roc_auc", "pr_auc", "f1", "brier", "n")},
        reference={
            "values": model.reference.get("values", {}),
            "btyd_params": model.reference.get("btyd_params"),
            "event_kinds": model.reference.get("event_kinds", []),
        },
        exported_at=timezone.now().isoformat(),
    )
    path = directory / f"{model.version}.json"
    path.write_text(json.dumps(meta, indent=2, default=str))
    return path


def _read_export(path: Path) -> tuple[dict[str, Any], Path]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"{path}: not a readable model export ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise TrainingError(f"{path}: not a model export of format {EXPORT_FORMAT}")
    missing = [k for k in ("version", "artifact", "sha256", "feature_spec") if k not in meta]
    if missing:
        raise TrainingError(f"{path}: the export lacks {', '.join(missing)}")
    artifact = path.parent / Path(str(meta["artifact"])).name
    if not artifact.exists():
        raise TrainingError(f"{path}: its artifact {artifact.name} is not beside it")
    return meta, artifact


def _load_export(path: Path) -> tuple[dict[str, Any], Any, Path]:
    meta, artifact = _read_export(path)
    try:
        estimator = artifacts.load_artifact(path=artifact, sha256=str(meta["sha256"]))
    except (artifacts.ArtifactIntegrityError, artifacts.UntrustedArtifactError) as exc:
        raise TrainingError(f"{path}: {exc}") from exc
    return meta, estimator, artifact


def churn_model_import(*, path: Path) -> ChurnModel:
    """Register an exported model (checksum and type allow-list checked) as a candidate; it
    is never activated here. Its `transfer` field says where it came from."""
    meta, _estimator, artifact = _load_export(path)
    version = str(meta["version"])
    if ChurnModel.objects.filter(version=version).exists():
        raise TrainingError(f"a model {version} is already registered")
    directory = Path(settings.MODEL_ARTIFACT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{version}.skops"
    shutil.copyfile(artifact, target)
    reference = meta.get("reference") or {}
    return ChurnModel.objects.create(
        version=version,
        candidate=str(meta.get("candidate", "")),
        algorithm=str(meta.get("algorithm", "")),
        sampler=str(meta.get("sampler", "")),
        feature_spec=meta["feature_spec"],
        feature_names=list(meta.get("feature_names", [])),
        label_definition=meta.get("label_definition") or {},
        training_window=meta.get("training_window") or {},
        training_rows=int(meta.get("training_rows") or 0),
        positive_rate=float(meta.get("positive_rate") or 0.0),
        metrics=meta.get("metrics") or {},
        library_versions=meta.get("library_versions") or {},
        threshold=float(meta.get("threshold", 0.5)),
        reference={
            "values": reference.get("values", {}),
            "btyd_params": reference.get("btyd_params"),
            "event_kinds": reference.get("event_kinds", []),
        },
        artifact_path=str(target),
        artifact_sha256=str(meta["sha256"]),
        notes=f"imported from {path.name}",
        transfer={"imported_from": str(path), "exported_at": meta.get("exported_at")},
    )


def transfer_source_load(*, ref: str) -> tuple[SourceModel, dict[str, Any]]:
    """The source model named by `ref`: a registered version, or the path of an exported
    model's JSON. Returns it and what the registry records about it."""
    path = Path(ref)
    if ref.endswith(".json") and path.exists():
        meta, estimator, _ = _load_export(path)
        spec = FeatureSpec.from_dict(meta["feature_spec"])
        described = {"kind": "file", "path": str(path), "version": meta["version"]}
        described["sha256"] = meta["sha256"]
    else:
        model = ChurnModel.objects.filter(version=ref).first()
        if model is None:
            raise TrainingError(
                f"--transfer-from {ref}: no registered model of that version and no exported "
                "model file (a .json written by churn_export) at that path"
            )
        from scoring.services.training import churn_model_load

        estimator = churn_model_load(model=model)
        spec = FeatureSpec.from_dict(model.feature_spec)
        described = {"kind": "registry", "version": model.version}
        described["sha256"] = model.artifact_sha256

    def predict(X: pd.DataFrame) -> np.ndarray:
        return np.asarray(estimator.predict_proba(align_features(features=X, spec=spec))[:, 1])

    source = SourceModel(
        name=str(described["version"]), predict=predict, estimator=estimator, spec=spec.to_dict()
    )
    return source, described


def churn_model_transfer_record(
    *, model: ChurnModel, data: TrainingData, source: SourceModel, described: dict[str, Any]
) -> TransferResult:
    """Compare the target alone with each transfer method on every labelled row of `data`
    (cross-validated, `transfer_select`) and record the source and the outcome on `model`.

    The rows are the model's aligned features (what scoring runs pass its estimator), so the
    kept method sees the same inputs at training and at scoring. When a transfer method wins,
    it is what the registry ships: its `TransferEstimator` becomes the model's artifact (a
    `source_score` model carries the source estimator and computes its score for every scored
    customer), and the model's student is distilled again from it."""
    X = data.X if data.X_valid is None else pd.concat([data.X, data.X_valid], axis=0)
    y = np.asarray(data.y if data.y_valid is None else np.r_[data.y, data.y_valid], dtype=np.int64)
    spec = FeatureSpec.from_dict(model.feature_spec)
    X = align_features(features=X, spec=spec)
    columns = shared_columns(X)
    if not columns:
        raise TrainingError(
            "--transfer-from needs the shared behavioural features (orders, revenue, recency…): "
            "train on the database's orders (--as-of/--horizon or --label-attribute), not a file"
        )
    result = transfer_select(X=X, y=y, source=source, columns=columns)
    record: dict[str, Any] = {**result.to_dict(), "source": described}
    if result.selected == "target_only":
        record["shipped"] = "target_only"
        record["note"] = "the target alone was kept: no transfer method beat it beyond noise"
    else:
        record.update(_ship(model=model, data=data, result=result, spec=spec))
    model.transfer = record
    model.save(update_fields=["transfer"])
    return result


def _ship(
    *, model: ChurnModel, data: TrainingData, result: TransferResult, spec: FeatureSpec
) -> dict[str, Any]:
    """Make the winning transfer method the model's artifact (and its student); returns what
    the registry records about it. The own candidate's artifact stays on disk beside it."""
    estimator = result.model.to_estimator()
    path = Path(model.artifact_path).with_name(f"{model.version}-{result.selected}.skops")
    sha = artifacts.save_artifact(estimator=estimator, path=path)
    replaced = {"artifact": model.artifact_path, "sha256": model.artifact_sha256}
    model.artifact_path, model.artifact_sha256 = str(path), sha
    reference = dict(model.reference)
    holdout = align_features(features=data.holdout_X, spec=spec)
    try:
        student, _tree, _encoded = distill(
            X=holdout,
            teacher=estimator.predict_proba(holdout)[:, 1],
            y=data.holdout_y,
            numeric=spec.numeric,
            categorical=spec.categorical,
        )
        reference["student"] = student.to_dict()
    except ValueError:
        reference["student"] = None
    model.reference = reference
    model.save(update_fields=["artifact_path", "artifact_sha256", "reference"])
    return {
        "shipped": result.selected,
        "replaced": replaced,
        "note": f"scoring runs use the {result.selected.replace('_', ' ')} model; the "
        "threshold, metrics and drift reference are still the target's own candidate's",
    }


def transfer_summary(outcome: dict[str, Any]) -> str:
    """Lines a person reads: each method's out-of-fold figures and the one kept."""
    lines = [f"transfer from {outcome.get('source')}: kept {outcome['selected']}"]
    for method, scores in outcome["scores"].items():
        gain = scores.get("gain_over_target_only")
        extra = (
            ""
            if gain is None
            else f", log-loss gain {gain:+.4f} (standard error {scores['gain_standard_error']:.4f})"
        )
        lines.append(
            f"  {method:<17} ROC-AUC {scores['roc_auc']:.3f}  PR-AUC {scores['pr_auc']:.3f}  "
            f"log loss {scores['log_loss']:.4f}{extra}"
        )
    return "\n".join(lines)
