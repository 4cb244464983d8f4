"""The readable student (scoring.ml.distill): its rules, as written, are its predictions, and
its fidelity and metrics come from rows it did not see."""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from scoring.ml.distill import Student, distill

from .conftest import fitted_calibrated, make_frame


@pytest.fixture(scope="module")
def taught():
    X, y = make_frame(3000, seed=1)
    X.loc[X.index[::11], "recency_days"] = np.nan
    X.loc[X.index[::13], "Contract"] = None
    spec_numeric = ("recency_days", "event_complaint_30d", "noise")
    from scoring.ml.features import infer_feature_spec

    spec = infer_feature_spec(features=X)
    model = fitted_calibrated(X, y, spec, "lr_spline")
    teacher = model.predict_proba(X)[:, 1]
    assert set(spec.numeric) == set(spec_numeric)
    return X, y, teacher, spec


def _parse(text, columns):
    """The conditions of a rule as shown in the admin, read back into a row mask function."""
    tests = []
    for part in text.split(" and "):
        unknown = part.endswith(" (or unknown)")
        part = part.removesuffix(" (or unknown)")
        if m := re.fullmatch(r"(\S+) ≤ (\S+) < (\S+)", part):
            low, column, high = float(m[1]), m[2], float(m[3])
            tests.append((column, lambda x, lo=low, hi=high: (x >= lo) & (x < hi), unknown))
        elif m := re.fullmatch(r"(\S+) ≥ (\S+)", part):
            tests.append((m[1], lambda x, lo=float(m[2]): x >= lo, unknown))
        elif m := re.fullmatch(r"(\S+) < (\S+)", part):
            tests.append((m[1], lambda x, hi=float(m[2]): x < hi, unknown))
        elif m := re.fullmatch(r"(\S+) is neither (.+)", part):
            options = m[2].split(" nor ")
            tests.append((m[1], lambda x, o=options: ~np.isin(x, o), True))
        elif m := re.fullmatch(r"(\S+) is not (.+)", part):
            tests.append((m[1], lambda x, o=m[2]: x != o, True))
        elif m := re.fullmatch(r"(\S+) is (.+)", part):
            tests.append((m[1], lambda x, o=m[2]: x == o, False))
        else:
            raise AssertionError(f"unreadable rule part {part!r}")
    assert {c for c, _, _ in tests} <= set(columns)

    def mask(X):
        out = np.ones(len(X), dtype=bool)
        for column, test, missing in tests:
            values = X[column]
            absent = values.isna().to_numpy()
            if values.dtype == object:
                known = test(values.fillna("").to_numpy(dtype=object))
            else:
                with np.errstate(invalid="ignore"):
                    known = test(values.to_numpy(dtype=np.float64))
            out &= np.where(absent, missing, known)
        return out

    return mask


def test_the_rules_as_shown_reproduce_the_students_predictions_exactly(taught):
    X, y, teacher, spec = taught
    student, tree, encoded = distill(
        X=X, teacher=teacher, y=y, numeric=spec.numeric, categorical=spec.categorical
    )
    assert student.depth <= 4 and len(student.leaves) >= 4
    # The stored rules are the fitted tree, row for row (missing values included).
    np.testing.assert_array_equal(student.predict(X), tree.predict(encoded.matrix))
    # New rows: values between the tree's fitted midpoints and the rounded numbers, unseen
    # categories, missing values everywhere.
    fresh, _ = make_frame(2000, seed=9)
    fresh.loc[fresh.index[::5], "Contract"] = "Three year"
    fresh.loc[fresh.index[::7], ["recency_days", "event_complaint_30d"]] = np.nan
    from scoring.ml.distill import _encode

    categories = {
        c: [s for c2, s in encoded.sources if c2 == c and s is not None] for c in spec.categorical
    }
    fresh_encoded = _encode(fresh, list(spec.numeric), categories)
    np.testing.assert_array_equal(student.predict(fresh), tree.predict(fresh_encoded.matrix))
    # The text of each rule, read back, selects exactly the leaf's rows (through JSON too).
    stored = Student.from_dict(student.to_dict())
    for frame in (X, fresh):
        leaf_ids = stored.leaf_of(frame)
        assert (leaf_ids >= 0).all()
        for leaf in stored.leaves:
            text = stored.rule_text(leaf)
            np.testing.assert_array_equal(
                _parse(text, X.columns)(frame), leaf_ids == leaf.id, err_msg=text
            )
    # Round numbers, written as they are used.
    for leaf in stored.leaves:
        for c in leaf.conditions:
            if c.kind in ("lt", "ge"):
                assert len(format(c.threshold, ".10g")) <= 8


def test_fidelity_and_metrics_come_from_rows_the_student_did_not_see(taught):
    X, y, teacher, spec = taught
    first, _, _ = distill(
        X=X, teacher=teacher, y=y, numeric=spec.numeric, categorical=spec.categorical
    )
    positions = np.arange(len(X))
    fit_rows, test_rows = train_test_split(positions, test_size=0.3, random_state=0)
    assert first.rows == {"fit": len(fit_rows), "test": len(test_rows)}
    # Scramble the teacher on the held-out rows only: the student (fitted on the others) is
    # the same, its measured fidelity is not.
    rng = np.random.default_rng(0)
    scrambled = teacher.copy()
    scrambled[test_rows] = rng.permutation(scrambled[test_rows])
    second, _, _ = distill(
        X=X, teacher=scrambled, y=y, numeric=spec.numeric, categorical=spec.categorical
    )
    assert [leaf.to_dict() for leaf in second.leaves] == [
        leaf.to_dict() for leaf in first.leaves
    ] or all(
        a.conditions == b.conditions and a.risk == b.risk
        for a, b in zip(second.leaves, first.leaves, strict=True)
    )
    assert first.fidelity["correlation"] > 0.8
    assert second.fidelity["correlation"] < 0.3
    # The figures are those of the held-out rows, recomputed here.
    p = first.predict(X.iloc[test_rows])
    assert first.fidelity["correlation"] == pytest.approx(
        np.corrcoef(teacher[test_rows], p)[0, 1], abs=1e-12
    )
    from sklearn.metrics import roc_auc_score

    assert first.metrics["roc_auc"] == pytest.approx(roc_auc_score(y[test_rows], p), abs=1e-12)
    assert first.teacher_metrics["roc_auc"] == pytest.approx(
        roc_auc_score(y[test_rows], teacher[test_rows]), abs=1e-12
    )


def test_a_deeper_student_is_refused(taught):
    X, y, teacher, spec = taught
    with pytest.raises(ValueError, match="at most 4"):
        distill(
            X=X,
            teacher=teacher,
            y=y,
            numeric=spec.numeric,
            categorical=spec.categorical,
            max_depth=6,
        )


def test_rule_text_reads_in_words():
    data = {
        "leaves": [
            {
                "id": 3,
                "conditions": [
                    {"column": "tenure", "kind": "lt", "threshold": 6.0, "missing": False},
                    {"column": "Contract", "kind": "is", "category": "Month-to-month"},
                ],
                "risk": 0.62,
                "customers": 840,
            }
        ]
    }
    student = Student.from_dict(data)
    assert student.rule_text(student.leaves[0]) == "tenure < 6 and Contract is Month-to-month"
    assert student.predict(
        pd.DataFrame({"tenure": [3.0], "Contract": ["Month-to-month"]})
    ).tolist() == [0.62]
