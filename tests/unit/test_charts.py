"""The dashboard's SVG charts: round axes, marks carrying their numbers, text escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from app.dashboard import charts


@pytest.mark.parametrize(
    ("value", "top"), [(0, 4), (1, 4), (5, 8), (65, 80), (100, 100), (101, 200), (999, 1000)]
)
def test_axes_end_on_round_whole_steps(value: float, top: float) -> None:
    assert charts.nice_ceiling(value) == top
    assert (charts.nice_ceiling(value) / charts.TICKS).is_integer()


def test_fraction_axes() -> None:
    assert charts.nice_ceiling(0.028, whole_steps=False) == pytest.approx(0.04)


def test_stacked_bars_carry_their_numbers_and_escape_labels() -> None:
    svg = charts.stacked_bars(
        "Clicks <by day>",
        ["2026-01-01", "2026-01-02", "<b>"],
        [
            charts.Series("billable", "billable", [3, 0, 1]),
            charts.Series("flagged", "flagged", [1, 2, 0]),
        ],
    )
    root = ET.fromstring(svg)  # well-formed
    ns = {"s": "http://www.w3.org/2000/svg"}
    bars = root.findall(".//s:g[@class='bar']", ns)
    assert [(b.get("data-label"), b.get("data-billable"), b.get("data-flagged")) for b in bars] == [
        ("2026-01-01", "3", "1"),
        ("2026-01-02", "0", "2"),
        ("<b>", "1", "0"),
    ]
    assert "<b>" not in svg.replace('data-label="&lt;b&gt;"', "")
    heights = [float(r.get("height", 0)) for r in bars[0].findall("s:rect", ns)]
    assert heights[0] == pytest.approx(3 * heights[1])  # 3 billable over 1 flagged
    assert re.search(r">4<", svg)  # the axis tops at 4


def test_ranking_lists_items_in_order() -> None:
    svg = charts.ranking("Top", [("news", 30), ("video", 10)], "billable")
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    ranks = root.findall(".//s:g[@class='rank']", ns)
    assert [(g.get("data-label"), g.get("data-billable")) for g in ranks] == [
        ("news", "30"),
        ("video", "10"),
    ]
