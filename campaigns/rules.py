"""What a campaign rule matches, defined once: a rule's fields become a frozen `RuleSpec` (a
tuple of conditions on columns of the candidates frame), evaluated here with pandas.

Pure (pandas and numpy only, no Django): the dispatch evaluates specs on every chunk, and
`campaigns.selectors.rules_prefilter` builds its SQL from the same conditions through the
`lookup` of each operator in `OPERATORS`, so the two readings of a rule cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pandas as pd

from campaigns.suppression import consent_column

# Columns of the candidates frame that rule conditions read (campaigns.selectors.candidates_frame
# reads tier, probability and the attributes; the dispatch adds value and the consent columns).
TIER = "tier"
PROBABILITY = "probability"
VALUE = "value"  # completed-order revenue over selectors.VALUE_WINDOW_DAYS
ATTRIBUTE_PREFIX = "attr__"
# "<model version>#<leaf id>": the leaf of the scoring model's readable student the customer's
# latest score fell in (campaigns.selectors.candidates_frame); "" when none.
SEGMENT = "segment"


@dataclass(frozen=True)
class ModelSegment:
    """A rule of a churn model's readable student (scoring.ml.distill) used as a segment: the
    customers whose latest score, by model `model_version`, fell in leaf `leaf`. `text`, `risk`
    and `customers` are the rule's words and figures when it was chosen (for people only)."""

    model_version: str
    leaf: int
    text: str = ""
    risk: float | None = None
    customers: int | None = None

    @property
    def key(self) -> str:
        """The value of the candidates frame's SEGMENT column for this segment's customers."""
        return segment_key(self.model_version, self.leaf)

    def label(self) -> str:
        """'tenure < 6 and … (risk 62%, 840 customers)'."""
        figures = [
            *([f"risk {self.risk:.0%}"] if self.risk is not None else []),
            *([f"{self.customers:,} customers"] if self.customers is not None else []),
        ]
        words = self.text or f"leaf {self.leaf}"
        return f"{words} ({', '.join(figures)})" if figures else words

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "leaf": self.leaf,
            "text": self.text,
            "risk": self.risk,
            "customers": self.customers,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelSegment | None:
        """The segment a rule stores; None for none ({}). A malformed one is a ValueError."""
        if not data:
            return None
        if not isinstance(data, dict) or not data.get("model_version") or "leaf" not in data:
            raise ValueError(f"a segment needs model_version and leaf, not {data!r}")
        risk, customers = data.get("risk"), data.get("customers")
        return cls(
            model_version=str(data["model_version"]),
            leaf=int(data["leaf"]),
            text=str(data.get("text") or ""),
            risk=None if risk is None else float(risk),
            customers=None if customers is None else int(customers),
        )


def segment_key(model_version: str, leaf: int) -> str:
    return f"{model_version}#{int(leaf)}"


def segment_keys(model_versions: pd.Series, leaves: pd.Series) -> pd.Series:
    """The SEGMENT column from the customers' score model version and student leaf."""
    known = leaves.notna() & model_versions.fillna("").astype(str).ne("")
    whole = pd.to_numeric(leaves, errors="coerce").fillna(-1).astype(np.int64).astype(str)
    text = model_versions.fillna("").astype(str) + "#" + whole
    return text.where(known, "")


def attribute_column(field: str) -> str:
    """The candidates-frame column holding a customer attribute's raw JSON value (as text)."""
    return f"{ATTRIBUTE_PREFIX}{field}"


def _text(values: pd.Series) -> pd.Series:
    """Raw JSON values as stripped lower-case text; a missing attribute (None, or the NaN
    pandas puts in a column of strings) is "" — never the text "nan", which `contains "a"`
    would match."""
    return values.map(lambda v: "" if v is None or v != v else str(v).strip()).str.lower()


def _number(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")  # not a number: NaN, which compares False


def _equal(values: pd.Series, expected: Any) -> pd.Series:
    """A number compares as a number, a boolean as true/1 or false/0, anything else as text."""
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return _number(values).eq(float(expected))
    if isinstance(expected, bool):
        return _text(values).isin(["true", "1"] if expected else ["false", "0"])
    return _text(values).eq(str(expected).strip().lower())


def _one_of_text(values: pd.Series, expected: Any) -> pd.Series:
    options = expected if isinstance(expected, list) else str(expected).split(",")
    return _text(values).isin([str(o).strip().lower() for o in options])


@dataclass(frozen=True)
class Operator:
    """How a condition tests a column: `test(values, expected)` → boolean Series. `lookup` is
    the Django field lookup with the same meaning on a typed column of the customer row (None:
    no SQL equivalent, checked in pandas only)."""

    test: Callable[[pd.Series, Any], pd.Series]
    lookup: str | None = None


# The operators of attribute conditions (campaigns.models.AttributeOperator) and the ones the
# score, value and consent conditions use. Attribute values are raw JSON, hence the coercions.
OPERATORS: dict[str, Operator] = {
    "eq": Operator(_equal),
    "ne": Operator(lambda values, expected: ~_equal(values, expected)),
    "gt": Operator(lambda values, bound: _number(values) > float(bound), "gt"),
    "gte": Operator(lambda values, bound: _number(values) >= float(bound), "gte"),
    "lt": Operator(lambda values, bound: _number(values) < float(bound), "lt"),
    "lte": Operator(lambda values, bound: _number(values) <= float(bound), "lte"),
    "in": Operator(_one_of_text),  # case-insensitive text: a list or "a,b,c"
    "contains": Operator(
        lambda values, part: _text(values).str.contains(str(part).lower(), regex=False)
    ),
    "one_of": Operator(lambda values, options: values.isin(list(options)), "in"),  # exact
    "is_true": Operator(lambda values, _unused: values.astype(bool)),
    # A ModelSegment: the customer's latest score fell in its model's leaf.
    "segment_is": Operator(lambda values, segment: values.eq(segment.key)),
}


@dataclass(frozen=True)
class Condition:
    """A customer matches when OPERATORS[operator] holds for their `column` and `value`."""

    column: str
    operator: str
    value: Any = None  # attribute conditions: the JSON value as the rule stores it


@dataclass(frozen=True)
class RuleSpec:
    """Everything a rule requires of a customer; all conditions must hold (none: everyone)."""

    conditions: tuple[Condition, ...] = ()


class RuleFields(Protocol):
    """The fields that say whom a rule matches (campaigns.models.Rule has them)."""

    @property
    def tiers(self) -> Any: ...
    @property
    def min_probability(self) -> float | None: ...
    @property
    def max_probability(self) -> float | None: ...
    @property
    def min_value(self) -> Decimal | float | None: ...
    @property
    def max_value(self) -> Decimal | float | None: ...
    @property
    def attribute_conditions(self) -> Any: ...
    @property
    def consent_channel(self) -> str: ...
    @property
    def segment(self) -> Any: ...


def rule_spec(rule: RuleFields) -> RuleSpec:
    """The conditions a rule's fields state: the student segment, tiers (empty: any),
    probability and value bounds (inclusive), attribute conditions and the consent the rule
    routes on."""
    conditions: list[Condition] = []
    segment = ModelSegment.from_dict(rule.segment)
    if segment is not None:
        conditions.append(Condition(SEGMENT, "segment_is", segment))
    if rule.tiers:
        conditions.append(Condition(TIER, "one_of", tuple(rule.tiers)))
    if rule.min_probability is not None:
        conditions.append(Condition(PROBABILITY, "gte", float(rule.min_probability)))
    if rule.max_probability is not None:
        conditions.append(Condition(PROBABILITY, "lte", float(rule.max_probability)))
    if rule.min_value is not None:
        conditions.append(Condition(VALUE, "gte", float(rule.min_value)))
    if rule.max_value is not None:
        conditions.append(Condition(VALUE, "lte", float(rule.max_value)))
    conditions += [
        Condition(attribute_column(item["field"]), item["operator"], item["value"])
        for item in rule.attribute_conditions or []
    ]
    if rule.consent_channel:
        conditions.append(Condition(consent_column(rule.consent_channel), "is_true"))
    return RuleSpec(tuple(conditions))


def attribute_fields(specs: Iterable[RuleSpec]) -> list[str]:
    """The customer attributes any of the rules reads, sorted (one frame column each)."""
    return sorted(
        {
            c.column.removeprefix(ATTRIBUTE_PREFIX)
            for spec in specs
            for c in spec.conditions
            if c.column.startswith(ATTRIBUTE_PREFIX)
        }
    )


def needs_value(specs: Iterable[RuleSpec]) -> bool:
    """Whether any rule has a customer-value bound (else the value is not read at all)."""
    return any(c.column == VALUE for spec in specs for c in spec.conditions)


def rule_mask(frame: pd.DataFrame, spec: RuleSpec) -> pd.Series:
    """Rows of the candidates frame the rule matches."""
    mask = pd.Series(True, index=frame.index)
    for condition in spec.conditions:
        mask &= OPERATORS[condition.operator].test(frame[condition.column], condition.value)
    return mask


def first_matching_rule(frame: pd.DataFrame, specs: Sequence[RuleSpec]) -> np.ndarray:
    """Per row, the index of the first rule (in the given order) that matches it; -1: none."""
    matched = np.full(len(frame), -1)
    for index, spec in enumerate(specs):
        mask = rule_mask(frame, spec).to_numpy() & (matched == -1)
        matched[mask] = index
    return matched


# --- reading a rule back to a person (the rule builder's live counts) --------------------------

_OPERATOR_WORDS = {
    "eq": "=",
    "ne": "≠",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "in": "is one of",
    "contains": "contains",
}


def condition_label(condition: Condition) -> str:
    """A condition in words: 'risk tier is high or critical', 'Contract = "Two year"'."""
    column, operator, value = condition.column, condition.operator, condition.value
    if column == TIER:
        return "risk tier is " + " or ".join(str(v) for v in value)
    if column == PROBABILITY:
        return f"churn probability {_OPERATOR_WORDS[operator]} {float(value):.0%}"
    if column == VALUE:
        return f"customer value {_OPERATOR_WORDS[operator]} {float(value):,.2f}"
    if column.startswith(ATTRIBUTE_PREFIX):
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        return f"{column.removeprefix(ATTRIBUTE_PREFIX)} {_OPERATOR_WORDS[operator]} {shown!r}"
    if column == SEGMENT:
        return f"{value.label()} — a rule of model {value.model_version}"
    if column.startswith("consent_"):
        return f"consents to {column.removeprefix('consent_')}"
    return f"{column} {operator} {value!r}"


@dataclass(frozen=True)
class RuleStep:
    """One step of a rule read in order: the score conditions together (tier and probability,
    which the SQL prefilter applies), then each other condition; `conditions` empty: everyone."""

    label: str
    conditions: tuple[Condition, ...]


def rule_steps(spec: RuleSpec) -> list[RuleStep]:
    """The rule's conditions as cumulative steps (each narrows the one before)."""
    score = tuple(c for c in spec.conditions if c.column in (TIER, PROBABILITY))
    steps = [RuleStep(" and ".join(condition_label(c) for c in score), score)] if score else []
    steps += [RuleStep(condition_label(c), (c,)) for c in spec.conditions if c not in score]
    return steps or [RuleStep("every scored customer", ())]


def steps_mask(frame: pd.DataFrame, step: RuleStep) -> np.ndarray:
    """Rows of the candidates frame meeting every condition of one step."""
    mask = np.ones(len(frame), dtype=bool)
    for condition in step.conditions:
        mask &= (
            OPERATORS[condition.operator]
            .test(frame[condition.column], condition.value)
            .to_numpy(dtype=bool)
        )
    return mask
