"""What a rule matches (campaigns.rules), on DataFrames alone: no database, no Django."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from campaigns.rules import (
    OPERATORS,
    Condition,
    RuleSpec,
    attribute_fields,
    first_matching_rule,
    needs_value,
    rule_mask,
    rule_spec,
)
from tests.campaigns.conftest import modules_loaded_by


@dataclass(frozen=True)
class FakeRule:
    """The fields of a campaigns.models.Rule that say whom it matches."""

    tiers: list[str] = field(default_factory=list)
    min_probability: float | None = None
    max_probability: float | None = None
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    attribute_conditions: list[dict[str, Any]] = field(default_factory=list)
    consent_channel: str = ""
    segment: dict[str, Any] = field(default_factory=dict)


def customers() -> pd.DataFrame:
    """Five candidates as the dispatch sees them (attributes are raw JSON values as text)."""
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "tier": ["critical", "high", "critical", "low", "high"],
            "probability": [0.9, 0.6, 0.8, 0.1, 0.5],
            "value": [600.0, 0.0, 120.0, 50.0, 500.0],
            "attr__Contract": ["Month-to-month", " month-to-month ", "One year", None, "Two year"],
            "attr__tenure": ["3", "24", "abc", None, "12"],
            "attr__vip": ["true", "false", "1", None, "0"],
            "consent_sms": [True, False, True, False, True],
        }
    )


def matched(spec: RuleSpec) -> list[int]:
    frame = customers()
    return frame.loc[rule_mask(frame, spec), "customer_id"].tolist()


def test_a_rule_without_conditions_matches_everyone() -> None:
    spec = rule_spec(FakeRule())
    assert spec == RuleSpec() and matched(spec) == [1, 2, 3, 4, 5]


def test_tiers_probability_and_value_bounds_are_inclusive() -> None:
    assert matched(rule_spec(FakeRule(tiers=["critical", "high"]))) == [1, 2, 3, 5]
    assert matched(rule_spec(FakeRule(min_probability=0.6, max_probability=0.8))) == [2, 3]
    assert matched(rule_spec(FakeRule(min_value=Decimal("120"), max_value=Decimal("500")))) == [
        3,
        5,
    ]
    both = FakeRule(tiers=["high"], min_probability=0.55, min_value=Decimal("0"))
    assert matched(rule_spec(both)) == [2]


def test_a_rules_fields_become_its_conditions_in_one_place() -> None:
    rule = FakeRule(
        tiers=["high"],
        min_probability=0.5,
        max_value=Decimal("99.5"),
        attribute_conditions=[{"field": "tenure", "operator": "lt", "value": 12}],
        consent_channel="sms",
    )
    assert rule_spec(rule).conditions == (
        Condition("tier", "one_of", ("high",)),
        Condition("probability", "gte", 0.5),
        Condition("value", "lte", 99.5),
        Condition("attr__tenure", "lt", 12),
        Condition("consent_sms", "is_true"),
    )


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # Text compares stripped and case-insensitively.
        ({"field": "Contract", "operator": "eq", "value": "MONTH-TO-MONTH"}, [1, 2]),
        ({"field": "Contract", "operator": "ne", "value": "month-to-month"}, [3, 4, 5]),
        ({"field": "Contract", "operator": "contains", "value": "YEAR"}, [3, 5]),
        ({"field": "Contract", "operator": "in", "value": "one year, two year"}, [3, 5]),
        ({"field": "Contract", "operator": "in", "value": ["One Year"]}, [3]),
        # A number compares as a number; what is not a number never matches a comparison.
        ({"field": "tenure", "operator": "eq", "value": 24}, [2]),
        ({"field": "tenure", "operator": "ne", "value": 24}, [1, 3, 4, 5]),
        ({"field": "tenure", "operator": "gt", "value": 3}, [2, 5]),
        ({"field": "tenure", "operator": "gte", "value": "12"}, [2, 5]),
        ({"field": "tenure", "operator": "lt", "value": 12}, [1]),
        ({"field": "tenure", "operator": "lte", "value": 12}, [1, 5]),
        # A boolean matches true/1 or false/0.
        ({"field": "vip", "operator": "eq", "value": True}, [1, 3]),
        ({"field": "vip", "operator": "eq", "value": False}, [2, 5]),
    ],
)
def test_attribute_conditions_read_raw_json_values(
    condition: dict[str, Any], expected: list[int]
) -> None:
    assert matched(rule_spec(FakeRule(attribute_conditions=[condition]))) == expected


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_a_missing_attribute_never_matches_a_text_condition(missing: Any) -> None:
    frame = pd.DataFrame({"customer_id": [1, 2], "attr__Contract": ["Month-to-month", missing]})
    for operator, value in [("contains", "a"), ("contains", "n"), ("eq", "nan"), ("in", ["nan"])]:
        spec = rule_spec(
            FakeRule(
                attribute_conditions=[{"field": "Contract", "operator": operator, "value": value}]
            )
        )
        assert 2 not in frame.loc[rule_mask(frame, spec), "customer_id"].tolist()


def test_every_attribute_condition_must_hold_and_consent_routes() -> None:
    rule = FakeRule(
        attribute_conditions=[
            {"field": "Contract", "operator": "eq", "value": "month-to-month"},
            {"field": "tenure", "operator": "lt", "value": 12},
        ]
    )
    assert matched(rule_spec(rule)) == [1]
    assert matched(rule_spec(FakeRule(consent_channel="sms"))) == [1, 3, 5]


def test_the_first_matching_rule_takes_the_customer() -> None:
    specs = [
        rule_spec(FakeRule(min_value=Decimal("500"))),
        rule_spec(FakeRule(tiers=["critical"])),
        rule_spec(FakeRule(tiers=["nobody"])),
    ]
    assert first_matching_rule(customers(), specs).tolist() == [0, -1, 1, -1, 0]
    assert first_matching_rule(customers().iloc[:0], specs).tolist() == []


def test_what_the_rules_read_is_known_before_reading() -> None:
    specs = [
        rule_spec(FakeRule(attribute_conditions=[{"field": "b", "operator": "eq", "value": 1}])),
        rule_spec(
            FakeRule(
                attribute_conditions=[
                    {"field": "a", "operator": "eq", "value": 1},
                    {"field": "b", "operator": "ne", "value": 2},
                ]
            )
        ),
    ]
    assert attribute_fields(specs) == ["a", "b"] and not needs_value(specs)
    assert needs_value([rule_spec(FakeRule(max_value=Decimal("1")))])


def test_only_operators_with_the_same_meaning_in_sql_name_a_lookup() -> None:
    # Attribute text comparisons strip and ignore case: no plain SQL lookup means the same.
    lookups = {name: op.lookup for name, op in OPERATORS.items()}
    assert lookups == {
        "eq": None,
        "ne": None,
        "gt": "gt",
        "gte": "gte",
        "lt": "lt",
        "lte": "lte",
        "in": None,
        "contains": None,
        "one_of": "in",
        "is_true": None,
        "segment_is": None,  # campaigns.selectors.rules_prefilter reads a segment's two columns
    }


def test_every_operator_a_rule_may_name_is_defined() -> None:
    from campaigns.models import AttributeOperator

    assert set(AttributeOperator.values) <= set(OPERATORS)


def test_rules_import_no_django() -> None:
    loaded = modules_loaded_by("campaigns.rules")
    assert "pandas" in loaded
    assert not loaded & {"django", "rest_framework", "celery", "retention", "customers", "scoring"}
