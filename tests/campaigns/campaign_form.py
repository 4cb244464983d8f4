"""The admin's campaign form as a browser posts it (campaign fields, the rules formset's
management form and one rule), for the tests of the rule builder and of model segments."""

from __future__ import annotations

from typing import Any


def campaign_form(name: str, rule: dict[str, Any], /, **overrides: Any) -> dict[str, Any]:
    """A draft scheduled campaign `name` with one new rule; `rule` holds the rule's fields
    without the formset's "rules-0-" prefix; `overrides` replaces posted keys as they are (a
    `name` among them too)."""
    data: dict[str, Any] = {
        "name": name,
        "status": "draft",
        "cadence_minutes": "1440",
        "mode": "scheduled",
        "reentry_days": "30",
        "targeting": "rules",
        "exploration_percentage": "5",
        "control_percentage": "10",
        "salt": f"{name.lower().replace(' ', '-')}-salt",
        "attribution_window_days": "30",
        "cooldown_days": "14",
        "priority": "100",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "rules-0-position": "1",
        **{f"rules-0-{key}": value for key, value in rule.items()},
    }
    data.update(overrides)
    return data
