"""Read-only panels that the apps above customers (scoring, campaigns) add to the customer's
admin page, without customers importing them (the floors forbid it).

An app registers a `CustomerPanel` in its AppConfig.ready(); `CustomerAdmin` shows each one
as a fieldset of its own, after the churn score, in key order. Like customers/privacy.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.safestring import SafeString

from customers.models import Customer

PANEL_PREFIX = "panel_"


@dataclass(frozen=True)
class CustomerPanel:
    """`render(customer)` returns the panel's HTML (escaped by the caller's format_html)."""

    key: str
    title: str
    render: Callable[[Customer], SafeString | str]

    @property
    def field(self) -> str:
        """The read-only field name the admin shows the panel under."""
        return PANEL_PREFIX + self.key


_PANELS: dict[str, CustomerPanel] = {}


def customer_panel_register(panel: CustomerPanel) -> None:
    """Add (or replace, on a second ready()) one app's panel; keys are unique."""
    if not panel.key.isidentifier():
        raise ValueError(f"panel key '{panel.key}': expected a Python identifier")
    _PANELS[panel.key] = panel


def customer_panels() -> tuple[CustomerPanel, ...]:
    return tuple(_PANELS[key] for key in sorted(_PANELS))


def customer_panel(field: str) -> CustomerPanel | None:
    """The panel shown under the read-only field `field` (panel_<key>), if registered."""
    if not field.startswith(PANEL_PREFIX):
        return None
    return _PANELS.get(field.removeprefix(PANEL_PREFIX))
