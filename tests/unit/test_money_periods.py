"""Calculation periods: the 10th to the 9th, to the last instant, in the configured zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.money.periods import Month, Period, periods_between
from app.settings import Settings

ZONES = [ZoneInfo("UTC"), ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")]


def test_named_after_the_month_it_starts_in() -> None:
    period = Period.parse("2016-09")
    assert period.start_date == date(2016, 9, 10)
    assert period.last_date == date(2016, 10, 9)
    assert str(period) == "2016-09"
    assert Period.parse("2016-12").next() == Period.parse("2017-01")
    assert Period.parse("2017-01").previous() == Period.parse("2016-12")


@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_boundary_between_the_9th_and_the_10th(tz: ZoneInfo) -> None:
    last_instant = datetime(2016, 10, 9, 23, 59, 59, 999_000, tzinfo=tz)
    first_instant = datetime(2016, 10, 10, 0, 0, tzinfo=tz)
    assert Period.containing(last_instant, tz) == Period.of(2016, 9)
    assert Period.containing(first_instant, tz) == Period.of(2016, 10)
    assert Period.of(2016, 9).ends_at(tz) == first_instant
    assert Period.of(2016, 10).starts_at(tz) == first_instant
    assert Period.of(2016, 9).starts_at(tz) <= last_instant < Period.of(2016, 9).ends_at(tz)


def test_the_zone_decides_which_day_it_is() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")  # UTC+8
    instant = datetime(2016, 10, 9, 17, 0, tzinfo=UTC)  # already 01:00 on the 10th there
    assert Period.containing(instant, UTC) == Period.of(2016, 9)
    assert Period.containing(instant, shanghai) == Period.of(2016, 10)


def test_year_end_and_bad_names() -> None:
    assert Period.containing(datetime(2017, 1, 5, tzinfo=UTC), UTC) == Period.of(2016, 12)
    assert Period.of(2016, 12).last_date == date(2017, 1, 9)
    for bad in ("2016-13", "2016-9", "16-09", "2016-09-10", "", "9999-12", "0000-01"):
        with pytest.raises(ValueError):
            Period.parse(bad)
    with pytest.raises(ValueError):
        Period.containing(datetime(2016, 10, 9), UTC)  # naive
    with pytest.raises(ValueError):
        Period.starting_on(date(2016, 9, 1))


def test_periods_between() -> None:
    assert [str(p) for p in periods_between(Period.of(2016, 11), Period.of(2017, 2))] == [
        "2016-11",
        "2016-12",
        "2017-01",
        "2017-02",
    ]
    assert periods_between(Period.of(2017, 2), Period.of(2016, 11)) == []


def test_months() -> None:
    assert Month.containing(datetime(2016, 10, 31, 23, 30, tzinfo=UTC), UTC) == Month(2016, 10)
    assert Month(2016, 12).next() == Month(2017, 1)
    assert Month(2017, 1).previous() == Month(2016, 12)
    assert Month(2016, 2).ends_at(UTC) - Month(2016, 2).starts_at(UTC) == timedelta(days=29)


instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


@given(instant=instants, tz=st.sampled_from(ZONES))
def test_every_instant_is_in_exactly_its_period(instant: datetime, tz: ZoneInfo) -> None:
    period = Period.containing(instant, tz)
    assert period.starts_at(tz) <= instant < period.ends_at(tz)
    assert Period.containing(period.starts_at(tz), tz) == period
    assert Period.containing(period.ends_at(tz), tz) == period.next()
    assert Period.containing(period.ends_at(tz) - timedelta(microseconds=1), tz) == period
    local = instant.astimezone(tz).date()
    assert period.start_date <= local <= period.last_date


@given(instant=instants, tz=st.sampled_from(ZONES))
def test_every_instant_is_in_exactly_its_month(instant: datetime, tz: ZoneInfo) -> None:
    month = Month.containing(instant, tz)
    assert month.starts_at(tz) <= instant < month.ends_at(tz)
    assert month.next().previous() == month


def test_the_period_time_zone_is_a_setting() -> None:
    assert Settings(period_timezone="Asia/Shanghai").period_tz == ZoneInfo("Asia/Shanghai")
    assert Settings().period_tz == ZoneInfo("UTC")
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(period_timezone="Mars/Olympus_Mons")
