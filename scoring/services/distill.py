"""(Re)distil a registered model into its readable student (scoring.ml.distill) and store it.

Training distils every new model (scoring.services.training); models trained before the
student existed have none. `churn_model_distill` rebuilds the rows the model was validated on
from its recorded label (the database's customers as of the recorded cutoff, or the recorded
file), scores them with the stored artifact and fits the student to those probabilities, as
training does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.errors import TrainingError
from scoring.ml.datasets import TrainingData
from scoring.ml.distill import Student, distill
from scoring.ml.features import FeatureSpec, align_features
from scoring.models import ChurnModel
from scoring.services.datasets import training_data_from_database, training_data_from_file
from scoring.services.runs import parse_as_of
from scoring.services.training import churn_model_load


def model_training_data(*, model: ChurnModel) -> TrainingData:
    """The labelled rows of `model`'s recorded label definition, read afresh."""
    label: dict[str, Any] = dict(model.label_definition or {})
    kind = label.get("kind")
    if kind == "attribute":
        as_of = (model.training_window or {}).get("as_of") or label.get("as_of")
        return training_data_from_database(
            label_attribute=str(label["attribute"]),
            as_of=parse_as_of(as_of) if as_of else None,
        )
    if kind == "behaviour":
        return training_data_from_database(
            as_of=parse_as_of(label["as_of"]), horizon_days=int(label["horizon_days"])
        )
    if kind == "file":
        path = Path(str(label.get("path", "")))
        if not path.is_file():
            raise TrainingError(
                f"model {model.version} was trained from the file {path}, which is not there "
                "any more: restore it at that path to distil the model"
            )
        return training_data_from_file(
            path=path,
            label=str(label["label"]),
            id_column=label.get("id"),
            drop=list(label.get("drop") or []),
        )
    raise TrainingError(f"model {model.version} records no label this can rebuild: {label!r}")


def churn_model_distill(*, model: ChurnModel, data: TrainingData | None = None) -> Student:
    """Fit `model`'s student to its probabilities of its validation rows (the training rows
    when it had none), store it in `model.reference["student"]` and return it."""
    data = data or model_training_data(model=model)
    spec = FeatureSpec.from_dict(model.feature_spec)
    X = data.holdout_X
    estimator = churn_model_load(model=model)
    teacher = np.asarray(
        estimator.predict_proba(align_features(features=X, spec=spec))[:, 1], dtype=np.float64
    )
    try:
        student, _tree, _encoded = distill(
            X=pd.DataFrame(X),
            teacher=teacher,
            y=data.holdout_y,
            numeric=spec.numeric,
            categorical=spec.categorical,
        )
    except ValueError as exc:
        raise TrainingError(f"model {model.version}: no readable student: {exc}") from exc
    model.reference = {**(model.reference or {}), "student": student.to_dict()}
    model.save(update_fields=["reference"])
    return student
