"""The windows caps count in (app/caps/windows.py): a day, a calendar month, a calculation
period (10th to 9th), all in the period time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.caps.windows import CapPeriod, window_end, window_end_instant, window_start

LA = ZoneInfo("America/Los_Angeles")
ZONES = [UTC, LA, ZoneInfo("Asia/Shanghai"), ZoneInfo("Pacific/Kiritimati")]

instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2998, 12, 1), timezones=st.just(UTC)
)


@given(instant=instants, period=st.sampled_from(list(CapPeriod)), tz=st.sampled_from(ZONES))
def test_a_window_holds_the_local_date_of_its_instant(
    instant: datetime, period: CapPeriod, tz: ZoneInfo
) -> None:
    local = instant.astimezone(tz).date()
    start = window_start(period, instant, tz)
    end = window_end(period, start)
    assert start <= local < end
    # The next window starts where this one ends, and the instant is before its end.
    assert window_start(period, datetime.combine(end, datetime.min.time(), tz), tz) == end
    assert instant < window_end_instant(period, start, tz)


@given(instant=instants, period=st.sampled_from(list(CapPeriod)))
def test_windows_start_on_their_first_day(instant: datetime, period: CapPeriod) -> None:
    start = window_start(period, instant, UTC)
    first_day = {CapPeriod.day: instant.day, CapPeriod.month: 1, CapPeriod.calculation_period: 10}
    assert start.day == first_day[period]


@pytest.mark.parametrize(
    ("local", "start", "end"),
    [
        (datetime(2026, 3, 9, 23, 59, 59), date(2026, 2, 10), date(2026, 3, 10)),
        (datetime(2026, 3, 10, 0, 0), date(2026, 3, 10), date(2026, 4, 10)),
        (datetime(2026, 12, 31, 12, 0), date(2026, 12, 10), date(2027, 1, 10)),
        (datetime(2026, 1, 1, 0, 0), date(2025, 12, 10), date(2026, 1, 10)),
    ],
)
def test_a_calculation_period_turns_on_the_10th_in_the_zone(
    local: datetime, start: date, end: date
) -> None:
    instant = local.replace(tzinfo=LA)
    assert window_start(CapPeriod.calculation_period, instant, LA) == start
    assert window_end(CapPeriod.calculation_period, start) == end
    # In UTC the same instant of 9 March 23:59 Los Angeles is already the 10th.
    if local.day == 9:
        assert window_start(CapPeriod.calculation_period, instant, UTC) == date(2026, 3, 10)


def test_months_turn_on_the_1st_in_the_zone() -> None:
    last_minute = datetime(2026, 1, 31, 23, 59, tzinfo=LA)  # 1 February in UTC
    assert window_start(CapPeriod.month, last_minute, LA) == date(2026, 1, 1)
    assert window_end(CapPeriod.month, date(2026, 1, 1)) == date(2026, 2, 1)
    assert window_start(CapPeriod.month, last_minute, UTC) == date(2026, 2, 1)
    assert window_end(CapPeriod.month, date(2026, 12, 1)) == date(2027, 1, 1)


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 3, 9), 24)],
)
def test_dst_days_in_los_angeles_are_one_window_of_23_or_25_hours(day: date, hours: int) -> None:
    # In UTC: arithmetic between times of one zone is on the wall clock.
    start = datetime.combine(day, datetime.min.time(), LA).astimezone(UTC)
    end = window_end_instant(CapPeriod.day, day, LA).astimezone(UTC)
    assert end - start == timedelta(hours=hours)
    # Every instant of the day, on either side of the change, is in that day's window.
    step = start
    while step < end:
        assert window_start(CapPeriod.day, step, LA) == day
        step += timedelta(minutes=30)
    assert window_start(CapPeriod.day, end, LA) == day + timedelta(days=1)
    assert window_start(CapPeriod.day, end - timedelta(microseconds=1), LA) == day
