"""How the scoring admin shows things: probabilities as percentages, tiers as colour swatches
in severity order, drift as a table with plain guidance. HTML only; no writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from scoring.ml.drift import drift_guidance, drift_rows
from scoring.ml.tiers import NOT_SCORABLE
from scoring.models import RiskTier

NOT_SCORABLE_COLOR = "#9e9e9e"
_SWATCH = (
    '<span style="white-space:nowrap"><span style="display:inline-block;width:.9em;'
    'height:.9em;border-radius:2px;vertical-align:-.1em;margin-right:.35em;background:{}">'
    "</span>{}</span>"
)
_STATUS_COLORS = {"ok": "#2e7d32", "watch": "#b26a00", "alert": "#c62828"}


def percent(value: float | None, digits: int = 1) -> str:
    """0.734 → "73.4%"; None → "—"."""
    return "—" if value is None else f"{value:.{digits}%}"


def tier_label(name: str) -> str:
    return "Not scorable" if name == NOT_SCORABLE else name.replace("_", " ").capitalize()


def tier_colors() -> dict[str, str]:
    """Tier name → colour, most severe first, then "not scorable"."""
    colors = dict(RiskTier.objects.order_by("-severity").values_list("name", "color"))
    return {**colors, NOT_SCORABLE: NOT_SCORABLE_COLOR}


def tier_swatch(name: str, colors: Mapping[str, str] | None = None) -> SafeString:
    """The tier's name after a square of its colour (not the colour's hex code)."""
    color = (colors if colors is not None else tier_colors()).get(name, "#888888")
    return format_html(_SWATCH, color, tier_label(name) if name else "—")


def tier_counts_html(counts: Mapping[str, int], not_scorable: int = 0) -> SafeString:
    """Tier sizes in severity order with swatches, e.g. ▇ Critical 1,530 · ▇ High 3,061."""
    colors = tier_colors()
    order = [name for name in colors if name in counts] + [n for n in counts if n not in colors]
    items = [(tier_swatch(name, colors), f"{counts[name]:,}") for name in order]
    if not_scorable:
        items.append((tier_swatch(NOT_SCORABLE, colors), f"{not_scorable:,}"))
    return format_html_join(" · ", '<span style="white-space:nowrap">{} {}</span>', items)


def drift_table(report: Mapping[str, Any] | None) -> SafeString:
    """A run's drift as guidance and a table: what was compared, its PSI, and a status word."""
    if not report:
        return format_html("<p>{}</p>", drift_guidance(None))
    rows = format_html_join(
        "",
        '<tr><td>{}</td><td style="text-align:right">{}</td>'
        '<td style="color:{};font-weight:600">{}</td></tr>',
        (
            (row.name, f"{row.psi:.3f}", _STATUS_COLORS.get(row.status, "inherit"), row.word)
            for row in drift_rows(report)
        ),
    )
    return format_html(
        '<p style="font-weight:600;color:{}">{}</p>'
        "<p>Population stability index (PSI) against the training population, over "
        "{} scorable customers: below 0.10 stable, 0.10–0.25 shifting, above 0.25 changed.</p>"
        '<table style="max-width:640px"><thead><tr><th>Compared</th><th>PSI</th>'
        "<th>Status</th></tr></thead><tbody>{}</tbody></table>",
        _STATUS_COLORS.get(report.get("status", ""), "inherit"),
        drift_guidance(report.get("status")),
        f"{int(report.get('n_rows', 0)):,}",
        rows,
    )
