from pathlib import Path

import pandas as pd
import pytest

from scoring.ml.features import build_snapshot_features, infer_feature_spec
from scoring.ml.labels import parse_explicit_label
from scoring.ml.pipelines import DEFAULT_CANDIDATES
from scoring.ml.train import train_and_select

TELCO = Path("/work/shared/data/WA_Fn-UseC_-Telco-Customer-Churn.csv")


@pytest.mark.slow
@pytest.mark.skipif(not TELCO.exists(), reason=f"telco data set not found at {TELCO}")
def test_default_candidates_reach_published_auc_on_telco():
    table = pd.read_csv(TELCO)
    y = parse_explicit_label(values=table["Churn"])
    X = build_snapshot_features(table=table, id_column="customerID", label_column="Churn")
    result = train_and_select(
        X=X,
        y=y,
        spec=infer_feature_spec(features=X),
        candidates=DEFAULT_CANDIDATES,
        importance_sample=500,
    )
    assert result.metrics["roc_auc"] >= 0.84
    assert result.metrics["brier"] < 0.15
