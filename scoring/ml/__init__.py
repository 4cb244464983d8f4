"""Pure churn-model core: features → labels → candidates → train/select/calibrate → explain,
drift, artifacts, tiers. Takes pandas/numpy, returns frozen dataclasses; imports no Django.
"""

from scoring.ml.artifacts import (
    ArtifactIntegrityError,
    UntrustedArtifactError,
    load_artifact,
    save_artifact,
)
from scoring.ml.btyd import BgNbdParams, fit_bgnbd
from scoring.ml.drift import (
    DriftReference,
    DriftReport,
    build_drift_reference,
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
from scoring.ml.labels import BehaviourLabels, behaviour_labels, parse_explicit_label
from scoring.ml.pipelines import (
    DEFAULT_CANDIDATES,
    EXTENDED_CANDIDATES,
    Candidate,
    build_pipeline,
    select_candidates,
)
from scoring.ml.tiers import DEFAULT_TIER_EDGES, DEFAULT_TIER_NAMES, assign_tiers
from scoring.ml.train import CandidateReport, TrainingResult, train_and_select

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_TIER_EDGES",
    "DEFAULT_TIER_NAMES",
    "EXTENDED_CANDIDATES",
    "ArtifactIntegrityError",
    "BehaviourLabels",
    "BgNbdParams",
    "Candidate",
    "CandidateReport",
    "DriftReference",
    "DriftReport",
    "Explanations",
    "FeatureSpec",
    "TrainingResult",
    "UntrustedArtifactError",
    "align_features",
    "assign_tiers",
    "behaviour_labels",
    "build_drift_reference",
    "build_features",
    "build_pipeline",
    "build_snapshot_features",
    "explain_customers",
    "fit_bgnbd",
    "infer_feature_spec",
    "load_artifact",
    "parse_explicit_label",
    "population_stability",
    "save_artifact",
    "select_candidates",
    "train_and_select",
]
