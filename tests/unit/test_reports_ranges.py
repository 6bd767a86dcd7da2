"""The ranges a report covers (``app/reports/ranges.py``) and the traffic report's grouping
(``app/reports/traffic.py``): defaults, and the field a bad input is blamed on."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app.errors import InvalidInput
from app.money.periods import Period
from app.reports import ranges
from app.reports.traffic import parse_group_by, traffic_query
from app.traffic.counts import FIRST_DAY, LAST_DAY, MAX_DAYS, Dimension, RangeError

TODAY = date(2026, 3, 15)


def test_a_day_range_defaults_to_the_last_30_days() -> None:
    assert ranges.day_range(None, None, TODAY) == (date(2026, 2, 14), TODAY)
    assert ranges.day_range(None, date(2026, 1, 30), TODAY) == (date(2026, 1, 1), date(2026, 1, 30))
    assert ranges.day_range(date(2026, 3, 1), None, TODAY) == (date(2026, 3, 1), TODAY)
    assert ranges.day_range(None, date(1970, 1, 5), TODAY) == (FIRST_DAY, date(1970, 1, 5))


@pytest.mark.parametrize(
    ("first", "last", "described"),
    [
        (date(2026, 3, 2), date(2026, 3, 1), "to: the range ends before it starts"),
        (date(1969, 12, 31), None, f"from: days run from {FIRST_DAY} to {LAST_DAY}"),
        (None, date(3000, 1, 1), f"to: days run from {FIRST_DAY} to {LAST_DAY}"),
    ],
)
def test_a_bad_day_range_names_its_field(
    first: date | None, last: date | None, described: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        ranges.day_range(first, last, TODAY)
    assert caught.value.describe() == described


def test_the_overviews_range_is_at_most_max_days() -> None:
    first = date(2025, 3, 15)
    assert (TODAY - first).days + 1 == MAX_DAYS
    assert ranges.bounded_day_range(first, None, TODAY) == (first, TODAY)
    with pytest.raises(InvalidInput) as caught:
        ranges.bounded_day_range(date(2025, 3, 14), None, TODAY)
    assert caught.value.describe() == f"from: at most {MAX_DAYS} days"


def test_a_period_range_defaults_to_the_last_12_periods() -> None:
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    first, last = ranges.period_range(None, None, now, UTC)
    assert (str(first), str(last)) == ("2025-04", "2026-03")
    assert ranges.period_range("2026-01", "2026-02", now, UTC) == (
        Period.parse("2026-01"),
        Period.parse("2026-02"),
    )


@pytest.mark.parametrize(
    ("first", "last", "starts"),
    [
        ("2026-13", None, "period: "),
        (None, "26-01", "period: expected YYYY-MM"),
        ("2026-02", "2026-01", "to: the range ends before it starts"),
        ("2020-01", "2026-01", "from: 73 periods; at most 36"),
    ],
)
def test_a_bad_period_range_names_its_field(
    first: str | None, last: str | None, starts: str
) -> None:
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    with pytest.raises(InvalidInput) as caught:
        ranges.period_range(first, last, now, UTC)
    assert caught.value.describe().startswith(starts)


def test_group_by_is_parsed_in_order() -> None:
    assert parse_group_by("") == ()
    assert parse_group_by("day") == (Dimension.day,)
    assert parse_group_by("cv,day,link") == (Dimension.cv, Dimension.day, Dimension.link)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("day,day", "a dimension is named twice"),
        ("week", "'week' is not one of day, link, af, cn, cv, dp"),
        ("day,,af", "'' is not one of"),
        (" day", "' day' is not one of"),
    ],
)
def test_a_bad_group_by_names_its_field(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_group_by(text)
    assert caught.value.field == "group_by" and problem in caught.value.message


def test_a_traffic_query_is_checked_when_built() -> None:
    query = traffic_query(7, date(2026, 3, 1), date(2026, 3, 31), UTC, "day,af")
    assert (query.publisher_id, query.group_by) == (7, (Dimension.day, Dimension.af))
    with pytest.raises(RangeError) as caught:
        traffic_query(7, date(2026, 1, 1), date(2026, 3, 1), UTC, "dp")
    assert caught.value.describe().startswith("from: the range covers 60 days; at most 31")
