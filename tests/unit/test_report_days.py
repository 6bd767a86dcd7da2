"""Days in the period time zone (``app/traffic/days.py``) and the CSV columns that name it
(``app/reports/csvout.py``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app.orders.status import OrderStatus
from app.reports import income, orders
from app.reports.csvout import zoned
from app.reports.traffic import csv_header
from app.traffic.counts import Dimension
from app.traffic.days import day_bounds, day_of, span_bounds, zone_label, zone_name

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def test_a_shanghai_day_starts_at_16_utc_the_day_before() -> None:
    start, end = day_bounds(date(2016, 10, 10), SHANGHAI)
    assert (start, end) == (
        datetime(2016, 10, 9, 16, tzinfo=UTC),
        datetime(2016, 10, 10, 16, tzinfo=UTC),
    )
    assert day_of(datetime(2016, 10, 9, 16, 30, tzinfo=UTC), SHANGHAI) == date(2016, 10, 10)
    assert day_of(datetime(2016, 10, 9, 15, 59, 59, tzinfo=UTC), SHANGHAI) == date(2016, 10, 9)
    assert day_bounds(date(2016, 10, 10), UTC)[0] == datetime(2016, 10, 10, tzinfo=UTC)


def test_a_span_runs_from_its_first_days_start_to_its_last_days_end() -> None:
    start, end = span_bounds(date(2016, 10, 10), date(2016, 11, 9), SHANGHAI)
    assert start == datetime(2016, 10, 9, 16, tzinfo=UTC)
    assert end == datetime(2016, 11, 9, 16, tzinfo=UTC)


@pytest.mark.parametrize(("day", "hours"), [(date(2016, 3, 13), 23), (date(2016, 11, 6), 25)])
def test_a_day_of_a_daylight_saving_change_is_as_long_as_the_clock_says(
    day: date, hours: int
) -> None:
    start, end = day_bounds(day, NEW_YORK)
    assert end - start == timedelta(hours=hours)
    assert day_bounds(day + timedelta(days=1), NEW_YORK)[0] == end


def test_a_zone_is_named_as_postgres_takes_it_and_as_a_column_ends() -> None:
    assert zone_name(SHANGHAI) == "Asia/Shanghai"
    assert zone_name(UTC) == "UTC"
    assert zone_name(ZoneInfo("UTC")) == "UTC"
    with pytest.raises(ValueError):
        zone_name(timezone(timedelta(hours=8)))
    assert zone_label(SHANGHAI) == "asia_shanghai"
    assert zone_label(ZoneInfo("America/Argentina/Buenos_Aires")) == (
        "america_argentina_buenos_aires"
    )
    assert zoned("order_time", UTC) == "order_time_utc"


def test_every_csv_day_or_time_column_names_the_zone() -> None:
    assert orders.columns(SHANGHAI)[:4] == (
        "order_id",
        "order_time_asia_shanghai",
        "transaction_time_asia_shanghai",
        "status",
    )
    assert orders.columns(UTC)[1:3] == ("order_time_utc", "transaction_time_utc")
    assert income.columns(SHANGHAI)[:4] == (
        "period",
        "first_day_asia_shanghai",
        "last_day_asia_shanghai",
        "state",
    )
    assert csv_header([Dimension.day, Dimension.af], SHANGHAI)[:2] == ["day_asia_shanghai", "af"]


def test_reports_show_every_order_status_and_completed_late() -> None:
    assert {s.value for s in orders.ShownStatus} == {s.value for s in OrderStatus} | {
        "completed_late"
    }
