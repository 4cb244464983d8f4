"""Per-customer reasons: additive attributions of groups of inputs, and their phrases.

Every explained customer's probability is split into a baseline (the model's probability for
the typical customer: every input at its training median / most frequent category) plus one
attribution per group of inputs (`scoring.ml.shapley`: exact for linear models, sampled with a
stated error otherwise), which add up exactly to the probability. The groups with the largest
positive attributions become the customer's reasons, as short phrases ("no order for 143 days",
"Contract is Month-to-month", a group's members together: "new customer: tenure 1 (typical
29), TotalCharges 100.80 (typical 1,397)"; `scoring.ml.phrases`), and the largest attributions
either way (with the rest summed) are the customer's waterfall chart (`attributions_json`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import numpy as np
import pandas as pd

from scoring.ml.features import FeatureSpec
from scoring.ml.linear_reasons import CHECK_TOLERANCE, LinearScores, linear_scores, linear_shapley
from scoring.ml.phrases import as_number, describer, group_phrases, numeric_phrases_for
from scoring.ml.shapley import Attributions, FeatureGroups, sampled_shapley
from scoring.ml.tree_reasons import tree_shapley

# Contributions below this (in probability) are noise, not a reason.
MIN_CONTRIBUTION = 1e-3
# Steps of a customer's waterfall chart (the largest attributions; the rest are summed).
WATERFALL_ITEMS = 5
# Decimals of the stored waterfall's numbers (probability points): the page shows one
# decimal of a percentage point; 6 keeps the stored steps adding up to 1e-6.
WATERFALL_DECIMALS = 6
# The stored waterfall's method codes (`attributions_json`).
WATERFALL_METHODS = {"exact-linear": "l", "exact-tree": "t", "sampled": "s"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explanations:
    """Reasons for the rows of the explained frame, as arrays (one row per frame row).

    `columns` are the groups' names (an input's own name for a group of one). `top_features[i]`
    holds positions in `columns` (-1 past the row's last reason), `top_contributions[i]` their
    attributions and `top_phrases[i]` positions in `phrases`, the distinct texts. Rows below
    the threshold, or with nothing raising their risk, hold only -1. `attributions` holds every
    group's attribution (rows x groups; 0 for rows not explained, `explained` False), which
    with `baseline` add up to `probabilities`; `chart_groups` / `chart_phrases` the waterfall's
    steps (the largest attributions either way). The tuple views (`reasons`, `features`,
    `contributions`) and the JSON texts are built from these on demand.
    """

    index: pd.Index
    probabilities: np.ndarray
    columns: tuple[str, ...]
    top_features: np.ndarray
    top_contributions: np.ndarray
    top_phrases: np.ndarray
    phrases: np.ndarray
    baseline: float = float("nan")
    method: str = ""
    attributions: np.ndarray | None = None
    errors: np.ndarray | None = None
    explained: np.ndarray | None = None
    chart_groups: np.ndarray | None = None
    chart_phrases: np.ndarray | None = None
    groups: FeatureGroups | None = None

    @cached_property
    def reasons(self) -> tuple[tuple[str, ...], ...]:
        return self._rows(self.phrases.tolist(), self.top_phrases)

    @cached_property
    def features(self) -> tuple[tuple[str, ...], ...]:
        return self._rows(list(self.columns), self.top_features)

    @cached_property
    def contributions(self) -> tuple[tuple[float, ...], ...]:
        values = self.top_contributions.tolist()
        counts = (self.top_features >= 0).sum(axis=1).tolist()
        return tuple(tuple(v[:c]) for v, c in zip(values, counts, strict=True))

    @staticmethod
    def _rows(names: list[Any], codes: np.ndarray) -> tuple[tuple[Any, ...], ...]:
        return tuple(tuple(names[c] for c in row if c >= 0) for row in codes.tolist())

    @cached_property
    def _quoted_phrases(self) -> list[str]:
        # json.dumps of a text is this C function's result; called directly per distinct text.
        return list(map(encode_basestring_ascii, self.phrases.tolist()))

    def _quoted(self, missing: str) -> np.ndarray:
        """The phrases as JSON strings, then `missing` (what code -1 picks)."""
        return _texts([*self._quoted_phrases, missing], len(self.phrases) + 1)

    def reasons_json(self) -> np.ndarray:
        """Each row's reasons as a JSON array text ('[]' for none), built per distinct text,
        and only for the rows with a reason (a scoring chunk explains the at-risk third)."""
        quoted = self._quoted("")
        out = np.full(len(self.top_phrases), "[]", dtype=object)
        rows = np.flatnonzero((self.top_phrases >= 0).any(axis=1))
        codes = self.top_phrases[rows]
        parts = [
            np.where(codes[:, k] >= 0, ", " if k else "", "").astype(object) + quoted[codes[:, k]]
            for k in range(codes.shape[1])
        ]
        # One join per row (adding to a growing text per step would copy it each time).
        out[rows] = _texts(["[" + "".join(row) + "]" for row in zip(*parts)], len(rows))
        return out

    def attributions_json(self) -> np.ndarray:
        """Each row's waterfall as a compact JSON object text ('{}' for rows not explained):

            {"b": baseline, "m": method code, "i": [step, points, ...], "r": points}

        `i` holds the largest attributions by size (at most WATERFALL_ITEMS), flat (a nested
        pair costs jsonb a header each): each step is the position of the row's reason with
        the same phrase (an int: the reasons are stored beside it) or the phrase itself,
        then its points; `r` is the rest, so that b + steps + r equals the row's probability
        to 1e-6. Numbers have 6 decimals (a ten-thousandth of a percentage point); `m` is a
        code of `WATERFALL_METHODS`. Two thirds of the earlier format's jsonb size (long
        keys, 8 decimals, six steps, every phrase spelled out): docs/scoring.md."""
        n = len(self.index)
        if self.attributions is None or self.chart_groups is None or self.chart_phrases is None:
            return np.full(n, "{}", dtype=object)
        # Only the explained rows (a scoring chunk explains the at-risk third or so).
        explained = self.explained if self.explained is not None else np.ones(n, dtype=bool)
        rows = np.flatnonzero(explained)
        quoted = self._quoted('""')
        groups, codes = self.chart_groups[rows], self.chart_phrases[rows]
        attributions = self.attributions[rows]
        shown = np.where(
            groups >= 0, np.take_along_axis(attributions, np.maximum(groups, 0), axis=1), 0.0
        )
        shown = np.round(np.nan_to_num(shown), WATERFALL_DECIMALS)
        baseline = round(float(np.nan_to_num(self.baseline)), WATERFALL_DECIMALS)
        total = np.nan_to_num(self.probabilities[rows].astype(np.float64))
        rest = np.round(total - baseline - shown.sum(axis=1), WATERFALL_DECIMALS)
        # A step that is one of the row's reasons names it by position.
        reasons = self.top_phrases[rows]
        same = (codes[:, :, None] == reasons[:, None, :]) & (reasons[:, None, :] >= 0)
        same &= (codes >= 0)[:, :, None]
        is_reason = same.any(axis=2)
        position = np.argmax(same, axis=2)
        positions = _texts(
            [str(i) for i in range(max(reasons.shape[1], 1))], max(reasons.shape[1], 1)
        )
        code = WATERFALL_METHODS.get(self.method, self.method)
        head = f'{{"b":{baseline:.{WATERFALL_DECIMALS}f},"m":{json.dumps(code)},"i":['
        parts = []
        for k in range(groups.shape[1]):
            present = groups[:, k] >= 0
            label = np.where(is_reason[:, k], positions[position[:, k]], quoted[codes[:, k]])
            text = ("" if k == 0 else ",") + label + "," + _numbers(shown[:, k])
            parts.append(np.where(present, text, "").astype(object))
        parts.append('],"r":' + _numbers(rest) + "}")
        out = np.full(n, "{}", dtype=object)
        # One join per row (adding to a growing text per step would copy it each time).
        out[rows] = _texts([head + "".join(row) for row in zip(*parts)], len(rows))
        return out

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {
                "customer_id": cid,
                "probability": float(p),
                "reasons": list(r),
                "features": list(f),
                "contributions": [round(c, 4) for c in cs],
            }
            for cid, p, r, f, cs in zip(
                self.index,
                self.probabilities,
                self.reasons,
                self.features,
                self.contributions,
                strict=True,
            )
        ]


def waterfall_read(
    data: Mapping[str, Any], reasons: list[str]
) -> tuple[float, list[tuple[str, float]], float, str]:
    """A stored waterfall (`Explanations.attributions_json`) read back: the baseline, the steps
    as (phrase, points) (a step stored as an int is `reasons[int]`), the rest and the method
    code. The admin's customer page reads it the same way (customers.admin)."""
    if not data:
        return float("nan"), [], 0.0, ""
    flat = data["i"]
    steps = [
        (reasons[label] if isinstance(label, int) else str(label), float(value))
        for label, value in zip(flat[0::2], flat[1::2], strict=True)
    ]
    return float(data["b"]), steps, float(data.get("r") or 0.0), str(data.get("m", ""))


def _texts(texts: list[str], n: int) -> np.ndarray:
    """A 1-d object array of the texts (np.asarray alone would not keep it 1-d when empty)."""
    out = np.empty(n, dtype=object)
    out[:] = texts
    return out


# Texts of 0-999 for `_numbers`: padded to three digits, the same with trailing zeros dropped,
# and plain (a number's whole part).
_DIGITS = np.asarray([f"{i:03d}" for i in range(1000)], dtype=object)
_DIGITS_STRIPPED = np.asarray([f"{i:03d}".rstrip("0") for i in range(1000)], dtype=object)
_WHOLE = np.asarray([str(i) for i in range(1000)], dtype=object)


def _numbers(values: np.ndarray) -> np.ndarray:
    """JSON numbers of WATERFALL_DECIMALS (6) decimals, trailing zeros dropped ("-0" as "0"),
    of values already rounded to them: the text of f"{v:.6f}", built from each value's
    millionths by table lookups (a chunk formats ~100,000 of them; one format call each cost
    a fifth of its waterfalls)."""
    numbers = np.nan_to_num(values.astype(np.float64))
    millionths = np.rint(numbers * 1e6).astype(np.int64)
    whole, fraction = np.divmod(np.abs(millionths), 1_000_000)
    if WATERFALL_DECIMALS != 6 or whole.max(initial=0) >= len(_WHOLE):
        texts = [
            t.rstrip("0").rstrip(".") if "." in t else t
            for t in map(f"{{:.{WATERFALL_DECIMALS}f}}".format, numbers.tolist())
        ]
        return _texts([t if t not in ("-0", "") else "0" for t in texts], len(numbers))
    high, low = np.divmod(fraction, 1000)
    tail = np.where(
        low > 0,
        "." + _DIGITS[high] + _DIGITS_STRIPPED[low],
        np.where(high > 0, "." + _DIGITS_STRIPPED[high], ""),
    )
    text = _WHOLE[whole] + tail
    return np.where(millionths < 0, "-" + text, text).astype(object)


def _typical_frame(X: pd.DataFrame, fills: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series([f], dtype=X[c].dtype) for c, f in zip(X.columns, fills, strict=True)}
    )


def group_attributions(
    *,
    estimator: Any,
    sub: pd.DataFrame,
    base: np.ndarray,
    fills: list[Any],
    groups: FeatureGroups,
    scores: LinearScores | None,
) -> Attributions:
    """Each row's attribution per group (`scoring.ml.shapley`): exact for a linear model whose
    decision is a sum over inputs, exact (TreeSHAP, `scoring.ml.tree_reasons`) for a tree
    model, sampled otherwise."""
    columns = list(sub.columns)
    typical = _typical_frame(sub, fills)
    if scores is not None and len(sub):
        try:
            exact = linear_shapley(scores=scores, sub=sub, fills=fills)
        except (ValueError, TypeError) as exc:  # a transformer refusing a probe
            logger.info("reasons: linear closed form not usable (%s); sampling", exc)
            exact = None
        if exact is not None:
            phi, baseline = exact
            expected = scores.typical_probability
            if expected is None:
                expected = float(estimator.predict_proba(typical)[:, 1][0])
            if abs(baseline - expected) <= CHECK_TOLERANCE:
                return Attributions(phi @ groups.membership(columns), baseline, "exact-linear")
            logger.warning("reasons: linear baseline disagrees with predict_proba; sampling")
        else:
            logger.warning("reasons: the linear decision is not a sum over inputs; sampling")
    if len(sub):
        trees = tree_shapley(estimator=estimator, sub=sub, fills=fills)
        if trees is not None:
            phi, baseline = trees
            expected = float(estimator.predict_proba(typical)[:, 1][0])
            if abs(baseline - expected) <= CHECK_TOLERANCE:
                return Attributions(phi @ groups.membership(columns), baseline, "exact-tree")
            logger.warning("reasons: TreeSHAP baseline disagrees with predict_proba; sampling")
    position = {c: j for j, c in enumerate(columns)}
    members = [[position[c] for c in m] for m in groups.members]
    return sampled_shapley(estimator=estimator, sub=sub, typical=typical, base=base, groups=members)


def explain_customers(
    *,
    estimator: Any,
    X: pd.DataFrame,
    spec: FeatureSpec,
    reference: Mapping[str, Any],
    threshold: float = 0.0,
    top_k: int = 3,
    probabilities: np.ndarray | None = None,
    templates: Mapping[str, str] | None = None,
    groups: FeatureGroups | None = None,
    chart_items: int = WATERFALL_ITEMS,
) -> Explanations:
    """Attributions, top `top_k` reasons and waterfall steps for every row of X whose
    probability is >= `threshold`.

    `reference` is the training medians/modes (`TrainingResult.reference_values`), `groups`
    the model's groups of inputs (None: every input alone). The probabilities come from
    `estimator.predict_proba` (or, for a linear model, from the same closed form, checked
    against it) unless passed in as `probabilities`.
    """
    X = X.loc[:, list(spec.columns)]
    n = len(X)
    columns = list(spec.columns)
    groups = FeatureGroups.from_dict(groups.to_dict() if groups else None, columns)
    categorical = set(spec.categorical)
    fills = [
        reference.get(c) if c in categorical else np.float32(as_number(reference.get(c)))
        for c in columns
    ]
    # A linear model is transformed once, for both its probabilities and its reasons (and
    # the typical customer is predicted with the rows its closed form is checked on).
    scores = linear_scores(estimator, X, typical=_typical_frame(X, fills))
    if probabilities is not None:
        p = np.asarray(probabilities, dtype=np.float64)
    elif scores is not None and scores.exact:
        p = scores.probability()
    else:
        p = estimator.predict_proba(X)[:, 1] if n else np.zeros(0)
    rows = np.flatnonzero(p >= threshold)
    sub = X.iloc[rows] if len(rows) else X.iloc[:0]
    found = group_attributions(
        estimator=estimator,
        sub=sub,
        base=p[rows],
        fills=fills,
        groups=groups,
        scores=scores.rows(rows) if scores is not None else None,
    )
    values = found.values
    n_groups = len(groups.members)

    # A few spare candidates: two groups can read the same ("no orders yet"), and each row
    # keeps its top_k distinct phrases.
    k = min(top_k + 3, n_groups)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    top_values = np.take_along_axis(values, order, axis=1)
    keep = top_values > MIN_CONTRIBUTION
    w = min(chart_items, n_groups)
    chart_order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :w]
    chart_keep = np.abs(np.take_along_axis(values, chart_order, axis=1)) > MIN_CONTRIBUTION / 10
    phrase = partial(
        _phrase_codes,
        groups=groups,
        categorical=categorical,
        reference=reference,
        templates=templates,
    )
    # The first top_k candidates and the chart's steps are phrased; the spare candidates only
    # in the rows where one of the first has no text or reads like an earlier one (a few
    # percent of them: phrasing every spare was a quarter of the phrases' time).
    first = min(top_k, k)
    all_codes, phrases = phrase(
        sub=sub,
        order=np.concatenate([order[:, :first], chart_order], axis=1),
        keep=np.concatenate([keep[:, :first], chart_keep], axis=1),
    )
    codes = np.full(order.shape, -1, dtype=np.int64)
    codes[:, :first], chart_codes = all_codes[:, :first], all_codes[:, first:]
    short = (_distinct_valid(keep[:, :first], codes[:, :first]).sum(axis=1) < first) & keep[
        :, first:
    ].any(axis=1)
    if short.any():
        spare_rows = np.flatnonzero(short)
        spare_codes, spare_phrases = phrase(
            sub=sub.iloc[spare_rows], order=order[spare_rows, first:], keep=keep[spare_rows, first:]
        )
        # One numbering for both: the first pass's phrases keep theirs (distinct, and first).
        number, distinct = pd.factorize(
            np.asarray([*phrases, *spare_phrases], dtype=object), sort=False
        )
        spare_numbers = np.append(number[len(phrases) :], -1)  # code -1 picks -1
        codes[spare_rows, first:] = spare_numbers[spare_codes]
        phrases = list(distinct)
    # A candidate counts if it is kept and its text is not already earlier in its row; each
    # row keeps its first top_k such candidates, in order.
    valid = _distinct_valid(keep, codes)
    chosen = valid & (np.cumsum(valid, axis=1) <= top_k)
    width = min(top_k, k)
    position = np.argsort(~chosen, axis=1, kind="stable")[:, :width]
    present = np.take_along_axis(chosen, position, axis=1)

    def top(values: np.ndarray, fill: Any, dtype: Any) -> np.ndarray:
        """Each explained row's chosen candidates of `values`, `fill` past them; all rows."""
        out = np.full((n, width), fill, dtype=dtype)
        out[rows] = np.where(present, np.take_along_axis(values, position, axis=1), fill)
        return out

    def every(values: np.ndarray, fill: Any, dtype: Any) -> np.ndarray:
        out = np.full((n, *values.shape[1:]), fill, dtype=dtype)
        out[rows] = values
        return out

    explained = np.zeros(n, dtype=bool)
    explained[rows] = True
    return Explanations(
        index=X.index,
        probabilities=p,
        columns=groups.names,
        top_features=top(order, -1, np.int64),
        top_contributions=top(top_values, 0.0, np.float64),
        top_phrases=top(codes, -1, np.int64),
        phrases=np.asarray(phrases, dtype=object),
        baseline=found.baseline,
        method=found.method,
        attributions=every(values, 0.0, np.float64),
        errors=None if found.errors is None else every(found.errors, 0.0, np.float64),
        explained=explained,
        chart_groups=every(np.where(chart_keep, chart_order, -1), -1, np.int64),
        chart_phrases=every(np.where(chart_keep, chart_codes, -1), -1, np.int64),
        groups=groups,
    )


def _distinct_valid(keep: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Which candidates count: kept, with a text, and not the text of an earlier one in the
    row."""
    valid = keep & (codes >= 0)
    for c in range(1, codes.shape[1]):
        valid[:, c] &= ~(codes[:, :c] == codes[:, c : c + 1]).any(axis=1)
    return valid


def _member_texts(
    *,
    col: str,
    values: np.ndarray,
    categorical: set[str],
    reference: Mapping[str, Any],
    templates: Mapping[str, str] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The phrase of each distinct value of one input (an object array), the distinct values
    (as numbers where numeric) and each row's distinct number: plain floats are phrased all
    at once (`numeric_phrases_for`), other values with one phrase call per distinct value."""
    first, inverse = _distinct(values)
    if values.dtype.kind == "f" and col not in categorical and not (templates and col in templates):
        distinct = values[first].astype(np.float64)
        return numeric_phrases_for(col, reference.get(col))(distinct), distinct, inverse
    listed = values[first].astype(np.float64).tolist() if values.dtype.kind == "f" else None
    listed = listed if listed is not None else values[first].tolist()
    phrase = describer(
        name=col,
        reference=reference.get(col),
        categorical=col in categorical,
        templates=templates,
    )
    numbers = np.asarray([as_number(v) for v in listed] + [np.nan], dtype=np.float64)[:-1]
    return np.asarray([phrase(v) for v in listed] + [None], dtype=object)[:-1], numbers, inverse


def _distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct value, each row's distinct number); floats by bit pattern,
    so -0.0 and 0.0 stay apart."""
    if values.dtype.kind == "f":
        bits = np.ascontiguousarray(values).view(f"u{values.dtype.itemsize}")
        _, first, inverse = np.unique(bits, return_index=True, return_inverse=True)
        return first, np.asarray(inverse).reshape(-1)
    inverse = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)[0]
    first = np.unique(inverse, return_index=True)[1]
    return first, inverse


def _row_keys(codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """The rows of the columns `codes` (each column's values in 0 ≤ code < its size) as one
    int64 key each, ordered as the rows are (the first column the most significant), when
    the sizes allow it; else the rows themselves. np.unique sorts 1-d keys many times faster
    than rows (axis=0)."""
    if math.prod(max(size, 1) for size in sizes) >= 2**62:
        return np.stack(codes, axis=1)
    key = np.zeros(len(codes[0]), dtype=np.int64)
    for column, size in zip(codes, sizes, strict=True):
        key = key * max(size, 1) + column
    return key


def _phrase_codes(
    *,
    sub: pd.DataFrame,
    order: np.ndarray,
    keep: np.ndarray,
    groups: FeatureGroups,
    categorical: set[str],
    reference: Mapping[str, Any],
    templates: Mapping[str, str] | None,
) -> tuple[np.ndarray, list[str]]:
    """The phrase number of each kept candidate (`order` holds group positions; -1 where not
    kept) and the distinct phrases. Phrases are built per group for the distinct values (of
    all its members together) of the rows that cite it, and numbered globally: the same text
    from two groups gets one number."""
    codes = np.full(order.shape, -1, dtype=np.int64)
    found: list[np.ndarray] = []
    placed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    offset = 0
    for g in np.unique(order[keep]):
        members = groups.members[g]
        hit_rows, hit_cols = np.nonzero((order == g) & keep)
        # A row citing the group in two places (a reason and a waterfall step) is phrased once.
        rows, row_of_hit = np.unique(hit_rows, return_inverse=True)
        parts = [
            _member_texts(
                col=c,
                values=sub[c].to_numpy()[rows],
                categorical=categorical,
                reference=reference,
                templates=templates,
            )
            for c in members
        ]
        if len(members) == 1:
            texts, _, inverse = parts[0]
        else:
            _, first, inverse = np.unique(
                _row_keys([inv for _, _, inv in parts], [len(t) for t, _, _ in parts]),
                axis=0,
                return_index=True,
                return_inverse=True,
            )
            inverse = np.asarray(inverse).reshape(-1)
            _, lead_values, lead_inverse = parts[0]
            texts = group_phrases(
                lead=members[0],
                lead_values=lead_values[lead_inverse[first]],
                lead_reference=reference.get(members[0]),
                parts=[t[inv[first]] for t, _, inv in parts],
            )
        placed.append((hit_rows, hit_cols, offset + np.asarray(inverse).reshape(-1)[row_of_hit]))
        found.append(texts)
        offset += len(texts)
    if not found:
        return codes, []
    # Numbered in order of first appearance (one number per distinct text, across groups).
    number, distinct = pd.factorize(np.concatenate(found), sort=False)
    for hit_rows, hit_cols, position in placed:
        codes[hit_rows, hit_cols] = number[position]
    return codes, list(distinct)
