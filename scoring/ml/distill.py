"""A readable student of the churn model: a shallow decision tree fitted to its probabilities.

`distill` fits a regression tree (depth <= MAX_DEPTH) to the teacher's calibrated
probabilities on part of the rows and measures, on the other rows only (`test_share`, which the
student never saw): its fidelity to the teacher (Pearson correlation of the two scores, and the
share of the teacher's top-risk decile that the student also puts in its own top decile) and
its own ROC-AUC / PR-AUC against the labels (next to the teacher's on the same rows).

The student is kept as its leaves, each a list of conditions ("tenure < 6", "Contract is
Month-to-month") with the mean teacher probability of its fitting rows (its risk) and the rows
it holds. Thresholds are moved from the tree's midpoints to the roundest number between the
two training values they separate (the fitted rows fall on the same side), and the tree is set
to the same numbers, so the rules as written are the student: `Student.predict` evaluates them
and reproduces the tree's predictions exactly, missing values included (a condition says
"or unknown" where a missing value goes its way). Categorical inputs enter as one indicator
per frequent category (MAX_CATEGORIES; the others and missing are "any other value").

Pure: numpy, pandas, scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeRegressor

MAX_DEPTH = 4
MAX_CATEGORIES = 8
# A leaf holds at least this share of the fitting rows: no rule about a handful of customers.
MIN_LEAF_SHARE = 0.02


@dataclass(frozen=True)
class Condition:
    """One test of a leaf's path. kind "lt": value < threshold; "ge": value >= threshold;
    "is" / "is_not": the category equals / differs from `category`. `missing`: whether a
    missing value passes."""

    column: str
    kind: str
    threshold: float = math.nan
    category: str = ""
    missing: bool = False

    def mask(self, values: pd.Series) -> np.ndarray:
        if self.kind in ("is", "is_not"):
            text = values.astype(object).to_numpy()
            absent = pd.isna(text)
            equal = (text == self.category) & ~absent
            return equal if self.kind == "is" else ~equal
        x = values.to_numpy(dtype=np.float64)
        absent = np.isnan(x)
        with np.errstate(invalid="ignore"):
            passed = x < self.threshold if self.kind == "lt" else x >= self.threshold
        return np.where(absent, self.missing, passed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"column": self.column, "kind": self.kind, "missing": self.missing}
        if self.kind in ("lt", "ge"):
            # A split on missingness alone has an infinite threshold: JSON (and PostgreSQL's
            # jsonb) has no Infinity, so it is kept as the text "inf" (float() reads it back).
            finite = math.isfinite(self.threshold)
            out["threshold"] = self.threshold if finite else str(self.threshold)
        else:
            out["category"] = self.category
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        return cls(
            column=str(data["column"]),
            kind=str(data["kind"]),
            threshold=float(data.get("threshold", math.nan)),
            category=str(data.get("category", "")),
            missing=bool(data.get("missing", False)),
        )


def _number_text(value: float) -> str:
    """The number as written in a rule; float(text) gives the value back exactly."""
    return format(value, ".10g")


@dataclass(frozen=True)
class Leaf:
    id: int
    conditions: tuple[Condition, ...]
    risk: float  # the mean teacher probability of the leaf's fitting rows
    customers: int  # rows of the distilled data (fitting and test) in the leaf

    def text(self, *, shows_missing: Sequence[str] = ()) -> str:
        """The leaf's conditions in words, one bound or category list per input:
        "tenure < 6 and Contract is Month-to-month", with "(or unknown)" where a missing
        number passes (categories: only for inputs in `shows_missing`, those with missing
        values in the distilled data; "is not" always lets a missing category pass)."""
        parts: list[str] = []
        for name in dict.fromkeys(c.column for c in self.conditions):
            mine = [c for c in self.conditions if c.column == name]
            column = name.removeprefix("attr_")  # a customer attribute: its own name
            numeric = mine[0].kind in ("lt", "ge")
            # A missing number goes one way at each split: said wherever it passes. A missing
            # category fails "is" and passes "is not": said where the data had missing ones.
            passes = all(c.missing for c in mine)
            unknown = " (or unknown)" if passes and (numeric or name in shows_missing) else ""
            if mine[0].kind in ("lt", "ge"):
                # An infinite bound is a split on missingness alone ("≥ inf": only unknown).
                finite = [c for c in mine if math.isfinite(c.threshold)]
                low = max((c.threshold for c in finite if c.kind == "ge"), default=None)
                high = min((c.threshold for c in finite if c.kind == "lt"), default=None)
                if any(c.kind == "ge" and c.threshold == math.inf for c in mine):
                    words, unknown = f"{column} is unknown", ""
                elif low is None and high is None:
                    words = f"{column} is known"
                elif low is not None and high is not None:
                    words = f"{_number_text(low)} ≤ {column} < {_number_text(high)}"
                elif low is not None:
                    words = f"{column} ≥ {_number_text(low)}"
                else:
                    words = f"{column} < {_number_text(high or 0.0)}"
            else:
                is_ = [c.category for c in mine if c.kind == "is"]
                not_ = [c.category for c in mine if c.kind == "is_not"]
                if is_:
                    words = f"{column} is {is_[0]}"
                elif len(not_) == 1:
                    words = f"{column} is not {not_[0]}"
                else:
                    words = f"{column} is neither {' nor '.join(not_)}"
            parts.append(words + unknown)
        return " and ".join(parts) if parts else "every customer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conditions": [c.to_dict() for c in self.conditions],
            "risk": self.risk,
            "customers": self.customers,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Leaf:
        return cls(
            id=int(data["id"]),
            conditions=tuple(Condition.from_dict(c) for c in data["conditions"]),
            risk=float(data["risk"]),
            customers=int(data["customers"]),
        )


@dataclass(frozen=True)
class Student:
    """The distilled tree as rules, with its out-of-sample fidelity and metrics."""

    leaves: tuple[Leaf, ...]
    depth: int
    fidelity: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    teacher_metrics: Mapping[str, float] = field(default_factory=dict)
    rows: Mapping[str, int] = field(default_factory=dict)
    missing_columns: tuple[str, ...] = ()

    def leaf_of(self, X: pd.DataFrame) -> np.ndarray:
        """The id of the leaf each row falls in (the leaves' conditions partition the rows)."""
        out = np.full(len(X), -1, dtype=np.int64)
        for leaf in self.leaves:
            mask = np.ones(len(X), dtype=bool)
            for condition in leaf.conditions:
                mask &= condition.mask(X[condition.column])
            out[mask & (out < 0)] = leaf.id
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        risk = {leaf.id: leaf.risk for leaf in self.leaves}
        ids = self.leaf_of(X)
        lookup = np.asarray([risk.get(i, np.nan) for i in range(max(risk, default=-1) + 1)])
        return lookup[ids] if len(lookup) else np.full(len(X), np.nan)

    def rule_text(self, leaf: Leaf) -> str:
        return leaf.text(shows_missing=self.missing_columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "tree",
            "depth": self.depth,
            "leaves": [leaf.to_dict() for leaf in self.leaves],
            "fidelity": dict(self.fidelity),
            "metrics": dict(self.metrics),
            "teacher_metrics": dict(self.teacher_metrics),
            "rows": dict(self.rows),
            "missing_columns": list(self.missing_columns),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Student:
        return cls(
            leaves=tuple(Leaf.from_dict(leaf) for leaf in data["leaves"]),
            depth=int(data.get("depth", 0)),
            fidelity=dict(data.get("fidelity", {})),
            metrics=dict(data.get("metrics", {})),
            teacher_metrics=dict(data.get("teacher_metrics", {})),
            rows=dict(data.get("rows", {})),
            missing_columns=tuple(data.get("missing_columns", ())),
        )


@dataclass(frozen=True)
class _Encoded:
    matrix: np.ndarray
    # Per encoded column: (input, None) for a number, (input, category) for an indicator.
    sources: list[tuple[str, str | None]]


def _encode(
    X: pd.DataFrame, numeric: Sequence[str], categories: Mapping[str, list[str]]
) -> _Encoded:
    columns: list[np.ndarray] = []
    sources: list[tuple[str, str | None]] = []
    for c in numeric:
        columns.append(X[c].to_numpy(dtype=np.float64))
        sources.append((c, None))
    for c, values in categories.items():
        text = X[c].astype(object).to_numpy()
        for v in values:
            columns.append(((text == v) & ~pd.isna(text)).astype(np.float64))
            sources.append((c, v))
    matrix = np.column_stack(columns) if columns else np.zeros((len(X), 0))
    return _Encoded(matrix, sources)


def _round_between(low: float, high: float) -> float:
    """The roundest number r with low < r <= high."""
    span = high - low
    if not np.isfinite(span) or span <= 0:
        return high
    step = 10.0 ** math.ceil(math.log10(span))
    while step > 1e-12:
        candidate = float(_number_text(math.floor(low / step) * step + step))
        if low < candidate <= high:
            return candidate
        step /= 10
    return high


def _top_decile_agreement(teacher: np.ndarray, student: np.ndarray) -> tuple[float, float]:
    """(share of the teacher's top 10% that the student also ranks in its top 10%, the share
    of rows the student's top 10% holds: ties at its cut are all in, as a campaign would take
    a whole leaf)."""
    if len(teacher) < 10:
        return math.nan, math.nan
    top_teacher = teacher >= np.quantile(teacher, 0.9)
    top_student = student >= np.quantile(student, 0.9)
    return float(top_student[top_teacher].mean()), float(top_student.mean())


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if len(np.unique(y)) < 2:
        return {}
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
    }


def distill(
    *,
    X: pd.DataFrame,
    teacher: np.ndarray,
    y: np.ndarray | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    max_depth: int = MAX_DEPTH,
    test_share: float = 0.3,
    random_state: int = 0,
) -> tuple[Student, DecisionTreeRegressor, _Encoded]:
    """Fit the student to `teacher` (the model's probabilities of X's rows) and measure it on
    the rows it did not see. Returns the student, the fitted tree (its thresholds set to the
    rules' numbers) and the encoding of X it was fitted on (for tests)."""
    if max_depth > MAX_DEPTH:
        raise ValueError(f"a readable student is at most {MAX_DEPTH} deep, not {max_depth}")
    teacher = np.asarray(teacher, dtype=np.float64)
    if len(X) != len(teacher):
        raise ValueError(f"{len(X)} rows but {len(teacher)} teacher probabilities")
    if len(X) < 50:
        raise ValueError(f"too few rows to distil a student: {len(X)} (at least 50)")
    numeric = [c for c in numeric if c in X.columns]
    categories = {
        c: [str(v) for v in X[c].dropna().astype(str).value_counts().index[:MAX_CATEGORIES]]
        for c in categorical
        if c in X.columns
    }
    # Categories compared as text, as `Condition.mask` reads them.
    X = X.copy()
    for c in categories:
        X[c] = X[c].map(lambda v: v if v is None or v != v else str(v))
    encoded = _encode(X, numeric, categories)
    positions = np.arange(len(X))
    fit_rows, test_rows = train_test_split(
        positions, test_size=test_share, random_state=random_state
    )
    tree = DecisionTreeRegressor(
        max_depth=max_depth,
        min_samples_leaf=max(20, int(MIN_LEAF_SHARE * len(fit_rows))),
        random_state=random_state,
    ).fit(encoded.matrix[fit_rows], teacher[fit_rows])
    structure = tree.tree_
    # Round thresholds between the two fitted values they separate; set the tree to them.
    for node in np.flatnonzero(structure.children_left >= 0):
        j = int(structure.feature[node])
        if encoded.sources[j][1] is not None:
            continue
        t = float(structure.threshold[node])
        seen = encoded.matrix[fit_rows, j]
        seen = seen[~np.isnan(seen)]
        below, above = seen[seen <= t], seen[seen > t]
        if len(below) and len(above):
            nice = _round_between(float(below.max()), float(above.min()))
            # x <= nextafter(nice, -inf)  <=>  x < nice
            structure.threshold[node] = np.nextafter(nice, -np.inf)
    leaves = _leaves(tree, encoded, X)
    missing_columns = tuple(c for c in numeric if X[c].isna().any()) + tuple(
        c for c in categories if X[c].isna().any()
    )
    student = Student(
        leaves=tuple(leaves), depth=int(tree.get_depth()), missing_columns=missing_columns
    )
    p_test = student.predict(X.iloc[test_rows])
    t_test = teacher[test_rows]
    agreement, selected = _top_decile_agreement(t_test, p_test)
    fidelity = {
        "correlation": float(np.corrcoef(t_test, p_test)[0, 1]) if np.std(p_test) > 0 else 0.0,
        "top_decile_agreement": agreement,
        "top_decile_selected_share": selected,
    }
    metrics: dict[str, float] = {}
    teacher_metrics: dict[str, float] = {}
    if y is not None:
        y_test = np.asarray(y)[test_rows]
        metrics = _scores(y_test, p_test)
        teacher_metrics = _scores(y_test, t_test)
    return (
        Student(
            leaves=tuple(leaves),
            depth=student.depth,
            fidelity=fidelity,
            metrics=metrics,
            teacher_metrics=teacher_metrics,
            rows={"fit": len(fit_rows), "test": len(test_rows)},
            missing_columns=missing_columns,
        ),
        tree,
        encoded,
    )


def _leaves(tree: DecisionTreeRegressor, encoded: _Encoded, X: pd.DataFrame) -> list[Leaf]:
    structure = tree.tree_
    out: list[Leaf] = []
    counts = np.bincount(tree.apply(encoded.matrix), minlength=structure.node_count)
    missing_left = np.asarray(structure.missing_go_to_left, dtype=bool)

    def walk(node: int, path: tuple[Condition, ...]) -> None:
        left, right = int(structure.children_left[node]), int(structure.children_right[node])
        if left < 0:
            out.append(
                Leaf(
                    id=node,
                    conditions=path,
                    risk=float(structure.value[node].ravel()[0]),
                    customers=int(counts[node]),
                )
            )
            return
        column, category = encoded.sources[int(structure.feature[node])]
        if category is None:
            threshold = float(np.nextafter(structure.threshold[node], np.inf))
            go_left = bool(missing_left[node])
            walk(left, (*path, Condition(column, "lt", threshold, missing=go_left)))
            walk(right, (*path, Condition(column, "ge", threshold, missing=not go_left)))
        else:
            # indicator <= 0.5 (left): not this category; a missing value is "not" too.
            walk(left, (*path, Condition(column, "is_not", category=category, missing=True)))
            walk(right, (*path, Condition(column, "is", category=category, missing=False)))

    walk(0, ())
    return out
