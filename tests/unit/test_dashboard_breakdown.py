"""The Traffic page's pieces without a database: the values beyond the chart's ten summed as
one "Other" bar, the values beyond the table's limit summed in one row, the labels of
values, and the reading of the page's query."""

from __future__ import annotations

import re
from datetime import date

import pytest

from app.dashboard import breakdown
from app.dashboard.breakdown import Asked, Breakdown, Line, asked, label
from app.dashboard.breakdown_page import CHART_BARS, breakdown_page
from app.dashboard.inputs import BadQuery
from app.traffic.counts import Dimension, empty_row

BAR = re.compile(r'<g class="hbar" data-label="([^"]*)" data-value="([^"]*)" data-clicks="(\d+)"')


def line(value: str, clicks: int, flagged: int = 0) -> Line:
    return Line(value, value, clicks, clicks - flagged, clicks - flagged, flagged)


def shown(lines: list[Line], rest: Line | None = None) -> Breakdown:
    total = sum(n.clicks for n in lines) + (rest.clicks if rest else 0)
    flagged = sum(n.flagged for n in lines) + (rest.flagged if rest else 0)
    return Breakdown(
        "Blog",
        "token",
        date(2026, 11, 1),
        date(2026, 11, 30),
        "UTC",
        Asked(Dimension.referrer, {}),
        lines,
        rest,
        Line("", "Total", total, total - flagged, total - flagged, flagged),
    )


def test_the_values_beyond_the_chart_make_one_other_bar() -> None:
    lines = [line(f"h{n}.example.com", 100 - n) for n in range(CHART_BARS + 4)]
    page = breakdown_page(shown(lines, rest=line("", 7)))
    bars = BAR.findall(page)
    assert [v for _, v, _ in bars[:CHART_BARS]] == [n.value for n in lines[:CHART_BARS]]
    assert len(bars) == CHART_BARS + 1
    other_label, _, other_clicks = bars[-1]
    assert other_label == "Other (5 values)"  # four lines and the table's own rest
    assert int(other_clicks) == sum(n.clicks for n in lines[CHART_BARS:]) + 7
    assert page.count('<tr class="value"') == len(lines)
    assert page.count('<tr class="other"') == 1 and page.count('<tr class="total"') == 1


def test_a_few_values_draw_no_other_bar() -> None:
    page = breakdown_page(shown([line("a.example.com", 3, 1), line("b.example.com", 1)]))
    assert len(BAR.findall(page)) == 2 and "Other" not in page
    assert 'data-billable="2"' in page and 'data-flagged="1"' in page
    assert 'data-share="0.750000"' in page and ">75.00 %</td>" in page


def test_the_table_keeps_the_most_clicked_values_and_sums_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(breakdown, "MAX_LINES", 3)
    top = breakdown._Top([])
    for n, clicks in enumerate([5, 9, 1, 9, 7, 2]):
        top.add(empty_row()._replace(referrer=f"h{n}", clicks=clicks, unique_clicks=1))
    assert [r.referrer for r in top.top()] == ["h1", "h3", "h4"]  # ties: the report's order
    assert (top.rows, top.clicks, top.unique) == (6, 33, 6)


@pytest.mark.parametrize(
    ("dimension", "value", "words"),
    [
        (Dimension.country, "unknown", "Unknown"),
        (Dimension.device, "unknown", "Unknown"),
        (Dimension.referrer, None, "Unknown"),
        (Dimension.af, None, "(none)"),
        (Dimension.af, "", "(empty)"),
        (Dimension.day, date(2026, 11, 3), "2026-11-03"),
        (Dimension.os, "iOS", "iOS"),
    ],
)
def test_values_in_words(dimension: Dimension, value: str | date | None, words: str) -> None:
    assert label(dimension, value) == words


def test_the_query_is_read_as_the_report_compares() -> None:
    found = asked("device", {"country": "de", "af": "", "referrer": "news.example.com"})
    assert found.by is Dimension.device
    assert dict(found.filters) == {"country": "DE", "referrer": "news.example.com"}
    assert asked(None, {}).by is Dimension.country
    assert asked("os", {"device": "unknown", "country": "unknown"}).filters == {
        "country": "unknown",
        "device": "unknown",
    }
    with pytest.raises(BadQuery, match="not one of"):
        asked("dp", {})  # a filter only
