"""Server-side SVG charts for the admin pages: no JavaScript, no CDN, so a page renders offline
and prints. Three kinds — a line chart, a horizontal bar chart with optional interval whiskers,
and an interval (forest) plot — drawn with one palette.

Each function returns the text of one <svg> element as a plain `str`: every text it holds
(titles, labels, series names) goes through `html.escape` and every number is formatted here,
so the caller may mark it safe (the admin wraps it with `mark_safe`). Every data point is an
element of class "point" with data-* attributes, so tests and users can read values back.
Pure Python: imports no app and no Django.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# One palette (matplotlib's "tab10" order): series take it in turn; the two arms of an
# experiment keep their colours in every chart.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
SERIES_COLOURS = {"treatment": PALETTE[0], "control": PALETTE[1]}
# An interval wholly above zero, wholly below, or across it.
POSITIVE, NEGATIVE, NEUTRAL = "#2e7d32", "#c62828", "#555555"
GRID, AXIS = "#eeeeee", "#333333"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'
LABEL_CHARS = 30

Point = tuple[float, float]


@dataclass(frozen=True)
class Interval:
    """One row of an interval plot: an estimate and its interval."""

    label: str
    estimate: float
    low: float
    high: float
    note: str = ""


@dataclass(frozen=True)
class Bar:
    """One bar; `low`/`high` draw an interval whisker, `series` picks the colour."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None
    series: str = ""


def colour(series: str, index: int = 0) -> str:
    return SERIES_COLOURS.get(series, PALETTE[index % len(PALETTE)])


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    if hi == lo:
        return (out_lo + out_hi) / 2
    return out_lo + (value - lo) * (out_hi - out_lo) / (hi - lo)


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    span = high - low or 1.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _svg(*, title: str, width: int, height: int, chart_id: str, parts: Sequence[str]) -> str:
    data = f' data-chart="{escape(chart_id)}"' if chart_id else ""
    return (
        f'<svg class="chart"{data} role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="8" y="18" {FONT} font-weight="bold">{escape(title)}</text>'
        + "".join(parts)
        + "</svg>"
    )


def _nothing(x: float, y: float) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" {FONT} fill="#888">Nothing to show yet.</text>'


def line_chart(
    series: Sequence[tuple[str, Sequence[Point]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
    y_percent: bool = False,
    chart_id: str = "",
    width: int = 420,
    height: int = 300,
) -> str:
    """Lines with a marker per point, a legend, and axes; ranges default to the data's (from 0
    on y). `diagonal` draws y = x (a perfectly calibrated model); `y_percent` labels y in %."""
    left, right, top, bottom = 56, width - 12, 44, height - 42
    xs = [x for _, points in series for x, _ in points]
    ys = [y for _, points in series for _, y in points]
    if not xs:
        return _svg(
            title=title, width=width, height=height, chart_id=chart_id, parts=[_nothing(left, 50)]
        )
    x_lo, x_hi = x_range or (min(xs), max(xs))
    y_lo, y_hi = y_range or (0.0, max(ys) * 1.1 or 1.0)

    def x_at(value: float) -> float:
        return _scale(value, x_lo, x_hi, left, right)

    def y_at(value: float) -> float:
        return _scale(value, y_lo, y_hi, bottom, top)

    parts = []
    for tick in ticks(y_lo, y_hi, 5):
        text = f"{tick * 100:.0f}%" if y_percent else f"{tick:.2g}"
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y_at(tick):.1f}" y2="{y_at(tick):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 5}" y="{y_at(tick) + 4:.1f}" text-anchor="end" '
            f'{FONT} fill="#555">{text}</text>'
        )
    for tick in ticks(x_lo, x_hi, 5):
        parts.append(
            f'<text x="{x_at(tick):.1f}" y="{bottom + 15}" text-anchor="middle" {FONT} '
            f'fill="#555">{tick:g}</text>'
        )
    middle_x, middle_y = (left + right) / 2, (top + bottom) / 2
    parts.append(
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{AXIS}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{AXIS}"/>'
        f'<text x="{middle_x:.1f}" y="{bottom + 32}" text-anchor="middle" {FONT}>'
        f"{escape(x_label)}</text>"
        f'<text x="12" y="{middle_y:.1f}" text-anchor="middle" {FONT} '
        f'transform="rotate(-90 12 {middle_y:.1f})">{escape(y_label)}</text>'
    )
    if diagonal:
        low, high = max(x_lo, y_lo), min(x_hi, y_hi)
        parts.append(
            f'<line class="diagonal" x1="{x_at(low):.1f}" y1="{y_at(low):.1f}" '
            f'x2="{x_at(high):.1f}" y2="{y_at(high):.1f}" stroke="#aaa" stroke-dasharray="4 3"/>'
        )
    for index, (name, points) in enumerate(series):
        parts.append(_line_series(name, points, colour(name, index), x_at, y_at, y_percent))
    # The legend has its own row under the title, right-aligned, so it never covers a line.
    legend_x = right
    for index, (name, _points) in reversed(list(enumerate(series))):
        parts.append(
            f'<text x="{legend_x}" y="{top - 12}" text-anchor="end" {FONT} '
            f'fill="{colour(name, index)}">{escape(name)}</text>'
        )
        legend_x -= 7 * len(name) + 14  # about 7 px a character at the chart's font size
    return _svg(title=title, width=width, height=height, chart_id=chart_id, parts=parts)


def _line_series(
    name: str,
    points: Sequence[Point],
    stroke: str,
    x_at: Callable[[float], float],
    y_at: Callable[[float], float],
    y_percent: bool,
) -> str:
    coords = " ".join(f"{x_at(x):.1f},{y_at(y):.1f}" for x, y in points)
    parts = [
        f'<polyline class="series" data-series="{escape(name)}" fill="none" stroke="{stroke}" '
        f'stroke-width="2" points="{coords}"/>'
    ]
    for x, y in points:
        shown = f"{y * 100:.1f}%" if y_percent else f"{y:.3g}"
        parts.append(
            f'<circle class="point" data-series="{escape(name)}" data-x="{x:g}" '
            f'data-value="{y:.6f}" cx="{x_at(x):.1f}" cy="{y_at(y):.1f}" r="2.5" '
            f'fill="{stroke}"><title>{escape(name)}, {x:g}: {shown}</title></circle>'
        )
    return "".join(parts)


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    value_label: str = "",
    value_format: str = ".4f",
    chart_id: str = "",
    width: int = 420,
) -> str:
    """Horizontal bars from zero (negative values to the left), in the order given, each with
    its value and, where it has one, an interval whisker."""
    row, left, right = 22, 170, width - 70
    height = 40 + row * max(len(bars), 1) + (22 if value_label else 6)
    if not bars:
        return _svg(
            title=title, width=width, height=height, chart_id=chart_id, parts=[_nothing(left, 40)]
        )
    values = [v for b in bars for v in (b.value, b.low, b.high) if v is not None]
    lo, hi = min(0.0, *values), max(0.0, *values)

    def x_at(value: float) -> float:
        return _scale(value, lo, hi if hi > lo else lo + 1.0, left, right)

    parts = [
        f'<line class="zero" x1="{x_at(0):.1f}" x2="{x_at(0):.1f}" y1="26" '
        f'y2="{30 + row * len(bars)}" stroke="{AXIS}"/>'
    ]
    for index, bar in enumerate(bars):
        y = 30 + index * row
        start, end = sorted((x_at(0), x_at(bar.value)))
        interval = (
            ""
            if bar.low is None or bar.high is None
            else f" ({bar.low:{value_format}} to {bar.high:{value_format}})"
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" {FONT}>'
            f"{escape(_short(bar.label))}</text>"
            f'<rect class="bar point" data-label="{escape(bar.label)}" '
            f'data-value="{bar.value:.6f}" x="{start:.1f}" y="{y + 3}" width="{end - start:.1f}" '
            f'height="{row - 6}" fill="{colour(bar.series)}" opacity="0.85">'
            f"<title>{escape(bar.label)}: {bar.value:{value_format}}{interval}</title></rect>"
        )
        if bar.low is not None and bar.high is not None:
            parts.append(
                f'<line class="whisker" x1="{x_at(bar.low):.1f}" x2="{x_at(bar.high):.1f}" '
                f'y1="{y + row / 2:.1f}" y2="{y + row / 2:.1f}" stroke="#222" stroke-width="1.5"/>'
            )
        end_x = max(x_at(v) for v in (bar.value, bar.high) if v is not None)
        parts.append(
            f'<text x="{end_x + 4:.1f}" y="{y + 14}" {FONT} fill="#555">'
            f"{bar.value:{value_format}}</text>"
        )
    if value_label:
        parts.append(
            f'<text x="{left}" y="{height - 8}" {FONT} fill="#555">{escape(value_label)}</text>'
        )
    return _svg(title=title, width=width, height=height, chart_id=chart_id, parts=parts)


def _interval_text(value: float, percent: bool) -> str:
    return f"{value * 100:+.1f} pp" if percent else f"{value:+,.2f}"


def interval_chart(
    rows: Sequence[Interval],
    *,
    title: str,
    percent: bool = True,
    chart_id: str = "lift",
    width: int = 640,
) -> str:
    """A forest plot: one row per group, the estimate as a dot and its interval as a line,
    green above zero, red below, grey across; a dashed line at zero (no effect)."""
    rows = [r for r in rows if all(math.isfinite(v) for v in (r.estimate, r.low, r.high))]
    left, right, row_h, top = 190, width - 30, 26, 34
    height = top + row_h * max(len(rows), 1) + 34
    if not rows:
        return _svg(
            title=title,
            width=width,
            height=height,
            chart_id=chart_id,
            parts=[_nothing(left, top + 16)],
        )
    low = min(0.0, *(r.low for r in rows))
    high = max(0.0, *(r.high for r in rows))
    pad = (high - low) * 0.08 or 0.01
    low, high = low - pad, high + pad

    def x_at(value: float) -> float:
        return _scale(value, low, high, left, right)

    axis_y = top + row_h * len(rows) + 6
    parts = [
        f'<line x1="{x_at(tick):.1f}" x2="{x_at(tick):.1f}" y1="{top - 6}" y2="{axis_y}" '
        f'stroke="{GRID}"/><text x="{x_at(tick):.1f}" y="{axis_y + 14}" text-anchor="middle" '
        f'{FONT} fill="#555">{escape(_interval_text(tick, percent))}</text>'
        for tick in ticks(low, high)
    ]
    parts.append(
        f'<line class="zero" x1="{x_at(0):.1f}" x2="{x_at(0):.1f}" y1="{top - 8}" '
        f'y2="{axis_y}" stroke="{AXIS}" stroke-dasharray="4 3"/>'
    )
    for index, row in enumerate(rows):
        y = top + row_h * index + row_h / 2
        stroke = POSITIVE if row.low > 0 else NEGATIVE if row.high < 0 else NEUTRAL
        estimate, low_text, high_text = (
            _interval_text(v, percent) for v in (row.estimate, row.low, row.high)
        )
        note = f" — {row.note}" if row.note else ""
        tooltip = f"{row.label}: {estimate} ({low_text} to {high_text}){note}"
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{escape(_short(row.label))}</text>"
            f'<line class="interval" x1="{x_at(row.low):.1f}" x2="{x_at(row.high):.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="{stroke}" stroke-width="2"/>'
            f'<circle class="point" data-label="{escape(row.label)}" '
            f'data-value="{row.estimate:.6f}" data-low="{row.low:.6f}" '
            f'data-high="{row.high:.6f}" cx="{x_at(row.estimate):.1f}" cy="{y:.1f}" r="4.5" '
            f'fill="{stroke}"><title>{escape(tooltip)}</title></circle>'
        )
    return _svg(title=title, width=width, height=height, chart_id=chart_id, parts=parts)


@dataclass(frozen=True)
class Step:
    """One step of a waterfall: what moved the value, and by how much."""

    label: str
    value: float


def waterfall_chart(
    steps: Sequence[Step],
    *,
    start: Step,
    end_label: str,
    title: str,
    chart_id: str = "",
    width: int = 640,
) -> str:
    """A horizontal waterfall in percentage points: the `start` bar from zero, each step a
    floating bar from the running total (red when it raises the value, green when it lowers
    it), and the end bar from zero to where the steps lead. Values are fractions (0.12 = 12%)."""
    row, left, right = 22, 300, width - 80
    label_chars = 46
    totals = [start.value]
    for step in steps:
        totals.append(totals[-1] + step.value)
    end = totals[-1]
    lo, hi = min(0.0, *totals), max(0.0, *totals)
    hi = hi if hi > lo else lo + 0.01
    height = 44 + row * (len(steps) + 2)

    def x_at(value: float) -> float:
        return _scale(value, lo, hi, left, right)

    def short(label: str) -> str:
        return label if len(label) <= label_chars else label[: label_chars - 1] + "…"

    def bar(y: float, a: float, b: float, fill: str, label: str, text: str, kind: str) -> str:
        x0, x1 = sorted((x_at(a), x_at(b)))
        return (
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" {FONT}>'
            f"{escape(short(label))}</text>"
            f'<rect class="{kind} point" data-label="{escape(label)}" data-value="{b - a:.6f}" '
            f'x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 1.0):.1f}" height="{row - 6}" '
            f'fill="{fill}" opacity="0.9"><title>{escape(label)}: {escape(text)}</title></rect>'
            f'<text x="{x1 + 4:.1f}" y="{y + 14}" {FONT} fill="#555">{escape(text)}</text>'
        )

    parts = [
        f'<line class="zero" x1="{x_at(0):.1f}" x2="{x_at(0):.1f}" y1="26" '
        f'y2="{30 + row * (len(steps) + 2)}" stroke="{AXIS}"/>'
    ]
    parts.append(bar(30, 0.0, start.value, "#888888", start.label, f"{start.value:.1%}", "start"))
    for index, step in enumerate(steps):
        y = 30 + (index + 1) * row
        a = totals[index]
        fill = NEGATIVE if step.value > 0 else POSITIVE
        parts.append(bar(y, a, a + step.value, fill, step.label, _points(step.value), "step"))
    y = 30 + (len(steps) + 1) * row
    parts.append(bar(y, 0.0, end, PALETTE[0], end_label, f"{end:.1%}", "end"))
    parts.append(
        f'<text x="8" y="{height - 6}" {FONT} fill="#555">'
        "Churn probability: red steps raise it, green steps lower it "
        "(pp = percentage points).</text>"
    )
    return _svg(title=title, width=width, height=height, chart_id=chart_id, parts=parts)


def _points(value: float) -> str:
    return f"{value * 100:+.1f} pp"
