"""Small server-side SVG charts for admin pages: no JavaScript, no CDN, printable.

Each function returns a SafeString holding one <svg> element. Numbers are formatted here and
every text (titles, labels, names) goes through `escape`.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
Point = tuple[float, float]


def _scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    if hi == lo:
        return (out_lo + out_hi) / 2
    return out_lo + (value - lo) * (out_hi - out_lo) / (hi - lo)


def line_chart(
    series: Sequence[tuple[str, Sequence[Point]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    diagonal: bool = False,
    width: int = 420,
    height: int = 300,
) -> SafeString:
    """Lines with markers; `diagonal` draws y = x (a perfectly calibrated model)."""
    left, right, top, bottom = 50, width - 10, 30, height - 40

    def xy(point: Point) -> tuple[float, float]:
        return (
            _scale(point[0], *x_range, left, right),
            _scale(point[1], *y_range, bottom, top),
        )

    parts = [_axes(left, right, top, bottom, x_range, y_range, x_label, y_label)]
    if diagonal:
        (x0, y0), (x1, y1) = xy((x_range[0], y_range[0])), xy((x_range[1], y_range[1]))
        parts.append(
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#aaa" '
            'stroke-dasharray="4 3"/>'
        )
    for index, (name, points) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        coords = [xy(p) for p in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(
            f'<polyline class="series" data-name="{escape(name)}" points="{path}" fill="none" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        parts.extend(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>'
            for x, y in coords
        )
        parts.append(
            f'<text x="{left + 8}" y="{top + 14 + 14 * index}" font-size="11" fill="{color}">'
            f"{escape(name)}</text>"
        )
    if not any(points for _, points in series):
        parts.append(
            f'<text x="{(left + right) / 2:.1f}" y="{(top + bottom) / 2:.1f}" font-size="12" '
            'text-anchor="middle" fill="#888">no data</text>'
        )
    return _svg(title, width, height, parts)


def bar_chart(
    items: Sequence[tuple[str, float]], *, title: str, value_label: str, width: int = 420
) -> SafeString:
    """Horizontal bars, in the order given."""
    row = 18
    label_width = 170
    height = 40 + row * max(len(items), 1)
    hi = max((abs(v) for _, v in items), default=1.0) or 1.0
    parts = []
    for index, (name, value) in enumerate(items):
        y = 30 + index * row
        length = _scale(abs(value), 0, hi, 0, width - label_width - 60)
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 12}" font-size="11" text-anchor="end">'
            f"{escape(name[:28])}</text>"
            f'<rect class="bar" x="{label_width}" y="{y + 2}" width="{length:.1f}" '
            f'height="{row - 5}" fill="{PALETTE[0]}"/>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + 12}" font-size="10">'
            f"{value:.4f}</text>"
        )
    if not items:
        parts.append(
            f'<text x="{width / 2:.1f}" y="32" text-anchor="middle" fill="#888">no data</text>'
        )
    parts.append(
        f'<text x="{label_width}" y="{height - 6}" font-size="11" fill="#555">'
        f"{escape(value_label)}</text>"
    )
    return _svg(title, width, height, parts)


def _axes(
    left: float,
    right: float,
    top: float,
    bottom: float,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    x_label: str,
    y_label: str,
) -> str:
    ticks = []
    for step in range(6):
        fx = x_range[0] + (x_range[1] - x_range[0]) * step / 5
        fy = y_range[0] + (y_range[1] - y_range[0]) * step / 5
        x = _scale(fx, *x_range, left, right)
        y = _scale(fy, *y_range, bottom, top)
        ticks.append(
            f'<text x="{x:.1f}" y="{bottom + 14:.1f}" font-size="10" text-anchor="middle">'
            f"{fx:.2g}</text>"
            f'<text x="{left - 4:.1f}" y="{y + 3:.1f}" font-size="10" text-anchor="end">'
            f"{fy:.2g}</text>"
            f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
    middle_x, middle_y = (left + right) / 2, (top + bottom) / 2
    axes = (
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333"/>'
        f'<text x="{middle_x:.1f}" y="{bottom + 32}" font-size="11" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text x="12" y="{middle_y:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {middle_y:.1f})">{escape(y_label)}</text>'
    )
    return "".join(ticks) + axes


def _svg(title: str, width: int, height: int, parts: Sequence[str]) -> SafeString:
    # Every part above was built from formatted numbers and escaped text.
    return mark_safe(
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><text x="{width / 2:.1f}" y="16" font-size="13" '
        f'font-weight="bold" text-anchor="middle">{escape(title)}</text>{"".join(parts)}</svg>'
    )
