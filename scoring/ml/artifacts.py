"""Model artifacts: skops files with a SHA-256 checksum and an explicit type allow-list.

Loading never unpickles arbitrary code: the file's checksum must match the one recorded
when it was written, and every type skops does not trust by default must be on
`ALLOWED_TYPES` (scikit-learn / imbalanced-learn / numpy classes our pipelines use).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import skops.io as sio


class ArtifactIntegrityError(Exception):
    """The artifact's bytes do not match the recorded SHA-256 (corrupted or tampered)."""


class UntrustedArtifactError(Exception):
    """The artifact contains types outside the allow-list; it was not loaded."""


# Every type skops reports as untrusted for the candidates in pipelines.EXTENDED_CANDIDATES,
# bare or wrapped in CalibratedClassifierCV (checked by tests/scoring/ml/test_ml_artifacts.py).
# The scipy `asarray` entry is a plain array-conversion function scipy's BSpline keeps.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "imblearn.combine._smote_enn.SMOTEENN",
        "imblearn.combine._smote_tomek.SMOTETomek",
        "imblearn.ensemble._easy_ensemble.EasyEnsembleClassifier",
        "imblearn.ensemble._forest.BalancedRandomForestClassifier",
        "imblearn.over_sampling._adasyn.ADASYN",
        "imblearn.over_sampling._smote.base.SMOTE",
        "imblearn.over_sampling._smote.base.SMOTEN",
        "imblearn.over_sampling._smote.base.SMOTENC",
        "imblearn.pipeline.Pipeline",
        "imblearn.under_sampling._prototype_selection._edited_nearest_neighbours.EditedNearestNeighbours",
        "imblearn.under_sampling._prototype_selection._random_under_sampler.RandomUnderSampler",
        "imblearn.under_sampling._prototype_selection._tomek_links.TomekLinks",
        "numpy.dtype",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
        "scipy.interpolate._bsplines.BSpline",
        "scipy.sparse._csr.csr_matrix",
        # A transfer model as shipped (scoring.ml.transfer, docs/transfer.md): our own class.
        "scoring.ml.transfer.TransferEstimator",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
    }
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_artifact(*, estimator: Any, path: str | Path) -> str:
    """Write `estimator` as a skops file (atomically) and return its SHA-256 hex digest."""
    data = sio.dumps(estimator)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_bytes(data)


def load_artifact(
    *,
    path: str | Path,
    sha256: str,
    allowed_types: Iterable[str] = ALLOWED_TYPES,
) -> Any:
    """Load an estimator written by `save_artifact`.

    The checksum is verified on the exact bytes that are then deserialised (no re-read), and
    loading is refused unless every type skops does not trust by default is allowed.
    """
    data = Path(path).read_bytes()
    actual = sha256_bytes(data)
    if actual != sha256.lower():
        raise ArtifactIntegrityError(
            f"artifact {path} has SHA-256 {actual}, expected {sha256}; refusing to load"
        )
    return loads_verified(data=data, allowed_types=allowed_types)


def loads_verified(*, data: bytes, allowed_types: Iterable[str] = ALLOWED_TYPES) -> Any:
    """Deserialize skops bytes if every untrusted type is in `allowed_types`."""
    untrusted = sio.get_untrusted_types(data=data)
    allowed = set(allowed_types)
    refused = sorted(t for t in untrusted if t not in allowed)
    if refused:
        raise UntrustedArtifactError(
            "artifact contains types outside the allow-list: " + ", ".join(refused)
        )
    return sio.loads(data, trusted=list(untrusted))
