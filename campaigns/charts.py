"""Inline SVG charts of the uplift report, drawn on the server: no JavaScript, no CDN, so the
admin page renders offline and prints. Pure Python (html.escape only); each data point is an
element with a class and data-* attributes, so tests and users can read values back."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

TREATMENT_COLOUR = "#1f6fb2"
CONTROL_COLOUR = "#d9822b"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass(frozen=True)
class Interval:
    label: str
    estimate: float
    low: float
    high: float
    note: str = ""


def _fmt(value: float, percent: bool) -> str:
    return f"{value * 100:+.1f} pp" if percent else f"{value:+,.2f}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low or 1.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def interval_chart(
    rows: Sequence[Interval], *, title: str, percent: bool = True, chart_id: str = "lift"
) -> str:
    """A forest plot: one row per group, the estimate as a dot and its 95% interval as a line,
    with a dashed line at zero (no effect)."""
    rows = [r for r in rows if all(math.isfinite(v) for v in (r.estimate, r.low, r.high))]
    width, left, right, row_h, top = 640, 190, 30, 26, 34
    height = top + row_h * max(len(rows), 1) + 34
    parts = [
        f'<svg class="chart" data-chart="{escape(chart_id)}" role="img" '
        f'aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="8" y="18" {FONT} font-weight="bold">{escape(title)}</text>',
    ]
    if not rows:
        parts.append(f'<text x="{left}" y="{top + 16}" {FONT}>Nothing to show yet.</text></svg>')
        return "".join(parts)
    low = min(0.0, *(r.low for r in rows))
    high = max(0.0, *(r.high for r in rows))
    pad = (high - low) * 0.08 or 0.01
    low, high = low - pad, high + pad

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (width - left - right)

    axis_y = top + row_h * len(rows) + 6
    for tick in _ticks(low, high):
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 6}" y2="{axis_y}" '
            'stroke="#eee"/>'
            f'<text x="{x(tick):.1f}" y="{axis_y + 14}" text-anchor="middle" {FONT} '
            f'fill="#555">{escape(_fmt(tick, percent))}</text>'
        )
    parts.append(
        f'<line class="zero" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top - 8}" y2="{axis_y}" '
        'stroke="#333" stroke-dasharray="4 3"/>'
    )
    for index, row in enumerate(rows):
        y = top + row_h * index + row_h / 2
        colour = "#2e7d32" if row.low > 0 else "#c62828" if row.high < 0 else "#555"
        label = row.label if len(row.label) <= 30 else row.label[:29] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{escape(label)}</text>"
            f'<line class="interval" x1="{x(row.low):.1f}" x2="{x(row.high):.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="2"/>'
            f'<circle class="point" data-label="{escape(row.label)}" '
            f'data-value="{row.estimate:.6f}" data-low="{row.low:.6f}" '
            f'data-high="{row.high:.6f}" cx="{x(row.estimate):.1f}" cy="{y:.1f}" r="4.5" '
            f'fill="{colour}"><title>{escape(row.label)}: {escape(_fmt(row.estimate, percent))}'
            f" ({escape(_fmt(row.low, percent))} to {escape(_fmt(row.high, percent))})"
            f"{escape(' — ' + row.note if row.note else '')}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def curve_chart(
    days: Sequence[int],
    series: dict[str, Sequence[float]],
    *,
    title: str,
    chart_id: str = "curve",
) -> str:
    """Cumulative share retained by day of the attribution window, one line per arm."""
    width, height, left, right, top, bottom = 640, 260, 50, 110, 30, 34
    colours = {"treatment": TREATMENT_COLOUR, "control": CONTROL_COLOUR}
    parts = [
        f'<svg class="chart" data-chart="{escape(chart_id)}" role="img" '
        f'aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="8" y="18" {FONT} font-weight="bold">{escape(title)}</text>',
    ]
    values = [v for s in series.values() for v in s]
    if not days or not values:
        parts.append(f'<text x="{left}" y="{top + 20}" {FONT}>Nothing to show yet.</text></svg>')
        return "".join(parts)
    top_value = max(values) * 1.1 or 0.01
    last_day = max(days) or 1

    def x(day: float) -> float:
        return left + day / last_day * (width - left - right)

    def y(value: float) -> float:
        return top + (1 - value / top_value) * (height - top - bottom)

    for tick in _ticks(0, top_value, 4):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
            f'{FONT} fill="#555">{tick * 100:.0f}%</text>'
        )
    for tick in _ticks(0, last_day, 6):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle" {FONT} '
            f'fill="#555">day {tick:g}</text>'
        )
    for position, (arm, points) in enumerate(series.items()):
        colour = colours.get(arm, "#555")
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in zip(days, points, strict=False))
        parts.append(
            f'<polyline class="series" data-arm="{escape(arm)}" fill="none" stroke="{colour}" '
            f'stroke-width="2" points="{coords}"/>'
        )
        for d, v in zip(days, points, strict=False):
            parts.append(
                f'<circle class="point" data-arm="{escape(arm)}" data-day="{d}" '
                f'data-value="{v:.6f}" cx="{x(d):.1f}" cy="{y(v):.1f}" r="2" fill="{colour}">'
                f"<title>{escape(arm)}, day {d}: {v * 100:.1f}%</title></circle>"
            )
        legend_y = top + 10 + 18 * position
        parts.append(
            f'<line x1="{width - right + 10}" x2="{width - right + 30}" y1="{legend_y}" '
            f'y2="{legend_y}" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{width - right + 36}" y="{legend_y + 4}" {FONT}>{escape(arm)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(bars: Sequence[Interval], *, title: str, chart_id: str = "revenue") -> str:
    """Vertical bars (e.g. revenue per customer per arm) with 95% interval whiskers."""
    width, height, left, top, bottom = 640, 240, 60, 30, 40
    parts = [
        f'<svg class="chart" data-chart="{escape(chart_id)}" role="img" '
        f'aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="8" y="18" {FONT} font-weight="bold">{escape(title)}</text>',
    ]
    if not bars:
        parts.append(f'<text x="{left}" y="{top + 20}" {FONT}>Nothing to show yet.</text></svg>')
        return "".join(parts)
    top_value = max(max(b.high, b.estimate) for b in bars) * 1.15 or 1.0
    slot = (width - left - 20) / len(bars)

    def y(value: float) -> float:
        return top + (1 - max(value, 0) / top_value) * (height - top - bottom)

    for tick in _ticks(0, top_value, 4):
        parts.append(
            f'<line x1="{left}" x2="{width - 20}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
            f'{FONT} fill="#555">{tick:,.2f}</text>'
        )
    for index, bar in enumerate(bars):
        centre = left + slot * index + slot / 2
        colour = CONTROL_COLOUR if "control" in bar.label.lower() else TREATMENT_COLOUR
        bar_w = min(slot * 0.5, 80)
        parts.append(
            f'<rect class="bar point" data-label="{escape(bar.label)}" '
            f'data-value="{bar.estimate:.6f}" x="{centre - bar_w / 2:.1f}" '
            f'y="{y(bar.estimate):.1f}" width="{bar_w:.1f}" '
            f'height="{y(0) - y(bar.estimate):.1f}" fill="{colour}" opacity="0.85">'
            f"<title>{escape(bar.label)}: {bar.estimate:,.2f} ({bar.low:,.2f} to "
            f"{bar.high:,.2f})</title></rect>"
            f'<line class="whisker" x1="{centre:.1f}" x2="{centre:.1f}" y1="{y(bar.low):.1f}" '
            f'y2="{y(bar.high):.1f}" stroke="#222" stroke-width="1.5"/>'
            f'<text x="{centre:.1f}" y="{height - bottom + 16}" text-anchor="middle" {FONT}>'
            f"{escape(bar.label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
