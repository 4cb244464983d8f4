"""Small server-side SVG charts for admin pages: no JavaScript, no CDN, printable.

Each function returns a SafeString holding one <svg> element; every value shown is
escaped through format_html.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
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

    parts: list[str] = [_axes(left, right, top, bottom, x_range, y_range, x_label, y_label)]
    if diagonal:
        (x0, y0), (x1, y1) = xy((x_range[0], y_range[0])), xy((x_range[1], y_range[1]))
        parts.append(
            format_html(
                '<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#aaa" '
                'stroke-dasharray="4 3"/>',
                x0,
                y0,
                x1,
                y1,
            )
        )
    for index, (name, points) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        coords = [xy(p) for p in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(
            format_html(
                '<polyline class="series" data-name="{}" points="{}" fill="none" stroke="{}" '
                'stroke-width="2"/>',
                name,
                path,
                color,
            )
        )
        parts.append(
            format_html_join(
                "",
                '<circle class="point" cx="{:.1f}" cy="{:.1f}" r="2.5" fill="{}"/>',
                ((x, y, color) for x, y in coords),
            )
        )
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="11" fill="{}">{}</text>',
                left + 8,
                top + 14 + 14 * index,
                color,
                name,
            )
        )
    return _svg(title, width, height, parts)


def bar_chart(
    items: Sequence[tuple[str, float]], *, title: str, value_label: str, width: int = 420
) -> SafeString:
    """Horizontal bars, largest first as given."""
    row = 18
    label_width = 170
    height = 40 + row * len(items)
    hi = max((abs(v) for _, v in items), default=1.0) or 1.0
    parts = []
    for index, (name, value) in enumerate(items):
        y = 30 + index * row
        length = _scale(abs(value), 0, hi, 0, width - label_width - 60)
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>'
                '<rect class="bar" x="{}" y="{}" width="{:.1f}" height="{}" fill="{}"/>'
                '<text x="{:.1f}" y="{}" font-size="10">{:.4f}</text>',
                label_width - 6,
                y + 12,
                name[:28],
                label_width,
                y + 2,
                length,
                row - 5,
                PALETTE[0],
                label_width + length + 4,
                y + 12,
                value,
            )
        )
    parts.append(
        format_html(
            '<text x="{}" y="{}" font-size="11" fill="#555">{}</text>',
            label_width,
            height - 6,
            value_label,
        )
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
            format_html(
                '<text x="{:.1f}" y="{:.1f}" font-size="10" text-anchor="middle">{:.2g}</text>'
                '<text x="{:.1f}" y="{:.1f}" font-size="10" text-anchor="end">{:.2g}</text>'
                '<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#eee"/>',
                x,
                bottom + 14,
                fx,
                left - 4,
                y + 3,
                fy,
                left,
                y,
                right,
                y,
            )
        )
    axes = format_html(
        '<line x1="{0}" y1="{2}" x2="{1}" y2="{2}" stroke="#333"/>'
        '<line x1="{0}" y1="{3}" x2="{0}" y2="{2}" stroke="#333"/>'
        '<text x="{4:.1f}" y="{5}" font-size="11" text-anchor="middle">{6}</text>'
        '<text x="12" y="{7:.1f}" font-size="11" text-anchor="middle" '
        'transform="rotate(-90 12 {7:.1f})">{8}</text>',
        left,
        right,
        bottom,
        top,
        (left + right) / 2,
        bottom + 32,
        x_label,
        (top + bottom) / 2,
        y_label,
    )
    return "".join(ticks) + axes


def _svg(title: str, width: int, height: int, parts: Sequence[str]) -> SafeString:
    return format_html(
        '<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
        'viewBox="0 0 {} {}" role="img" aria-label="{}"><text x="{}" y="16" font-size="13" '
        'font-weight="bold" text-anchor="middle">{}</text>{}</svg>',
        width,
        height,
        width,
        height,
        title,
        width / 2,
        title,
        mark_safe("".join(parts)),
    )
