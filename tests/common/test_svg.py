"""The one SVG chart module: every chart is valid SVG (parsed by xml.etree), escapes what it is
given, carries its values on its points, and says so when there is nothing to draw."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from common.svg import (
    PALETTE,
    SERIES_COLOURS,
    Bar,
    Interval,
    bar_chart,
    interval_chart,
    line_chart,
    ticks,
)

SVG = "{http://www.w3.org/2000/svg}"
NASTY = "a <b> & \"c\" 'd'"


def parse(svg: str) -> ET.Element:
    assert isinstance(svg, str)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def points(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter() if "point" in (e.get("class") or "").split()]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]


def test_a_line_chart_draws_a_point_per_value_with_escaped_names() -> None:
    svg = line_chart(
        [(NASTY, [(0.0, 0.1), (0.5, 0.4), (1.0, 0.9)]), ("control", [(0.0, 0.2)])],
        title=f"title {NASTY}",
        x_label="recall <x>",
        y_label="precision & y",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        diagonal=True,
        chart_id="pr",
    )
    root = parse(svg)
    assert root.get("data-chart") == "pr"
    assert root.get("aria-label") == f"title {NASTY}"
    assert f"title {NASTY}" in texts(root) and "recall <x>" in texts(root)
    drawn = points(root)
    assert [p.get("data-series") for p in drawn] == [NASTY] * 3 + ["control"]
    assert [float(p.get("data-value") or "nan") for p in drawn] == [0.1, 0.4, 0.9, 0.2]
    assert drawn[-1].get("fill") == SERIES_COLOURS["control"]
    assert drawn[0].get("fill") == PALETTE[0]
    assert root.find(f".//{SVG}line[@class='diagonal']") is not None


def test_a_line_chart_in_percent_labels_its_axis_in_percent() -> None:
    root = parse(
        line_chart(
            [("treatment", [(0, 0.0), (15, 0.2), (30, 0.31)])],
            title="curve",
            x_label="day",
            y_label="share",
            y_percent=True,
        )
    )
    assert "30%" in texts(root) and "0%" in texts(root)
    assert points(root)[-1].get("data-x") == "30"


def test_a_bar_chart_draws_bars_and_whiskers_from_zero() -> None:
    bars = [
        Bar(NASTY, 25.5, 20.0, 31.0, series="treatment"),
        Bar("control", 30.0, 24.0, 36.0, series="control"),
        Bar("negative", -0.02),
    ]
    root = parse(bar_chart(bars, title="revenue", value_format=",.2f", chart_id="revenue"))
    drawn = points(root)
    assert [p.get("data-label") for p in drawn] == [NASTY, "control", "negative"]
    assert [float(p.get("data-value") or "nan") for p in drawn] == [25.5, 30.0, -0.02]
    assert [p.get("fill") for p in drawn] == [PALETTE[0], SERIES_COLOURS["control"], PALETTE[0]]
    assert len(root.findall(f".//{SVG}line[@class='whisker']")) == 2
    zero = float(root.find(f".//{SVG}line[@class='zero']").get("x1") or "nan")  # type: ignore[union-attr]
    # A negative bar ends at zero; a positive one starts there.
    assert float(drawn[2].get("x") or 0) + float(drawn[2].get("width") or 0) == pytest.approx(
        zero, abs=0.1
    )
    assert float(drawn[0].get("x") or 0) == pytest.approx(zero, abs=0.1)
    assert "25.50" in texts(root)


def test_an_interval_chart_colours_by_the_side_of_zero() -> None:
    rows = [
        Interval(NASTY, 0.05, 0.02, 0.08, note="small <n>"),
        Interval("across", 0.01, -0.02, 0.04),
        Interval("below", -0.05, -0.08, -0.01),
        Interval("infinite", 0.1, float("-inf"), 0.2),  # not drawable: left out
    ]
    root = parse(interval_chart(rows, title="lift"))
    drawn = points(root)
    assert [p.get("data-label") for p in drawn] == [NASTY, "across", "below"]
    assert [p.get("fill") for p in drawn] == ["#2e7d32", "#555555", "#c62828"]
    tooltip = "".join(drawn[0].itertext())
    assert tooltip == f"{NASTY}: +5.0 pp (+2.0 pp to +8.0 pp) — small <n>"


@pytest.mark.parametrize(
    "svg",
    [
        line_chart([], title="empty", x_label="x", y_label="y"),
        bar_chart([], title="empty"),
        interval_chart([], title="empty"),
    ],
)
def test_an_empty_chart_says_there_is_nothing_to_show(svg: str) -> None:
    root = parse(svg)
    assert "Nothing to show yet." in texts(root) and not points(root)


def test_ticks_are_round_numbers_covering_the_range() -> None:
    assert ticks(0.0, 1.0, 5) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert ticks(0.0, 0.6, 3) == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert ticks(-0.13, 0.07, 4) == pytest.approx([-0.1, -0.05, 0.0, 0.05])
