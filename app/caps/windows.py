"""The window a cap counts in: a day, a calendar month or a calculation period, in the period
time zone (CLICKTRACK_PERIOD_TZ). Pure rules.

A window is named by its first day: the day itself, the month's 1st, or the calculation
period's first day (the 10th, ``app/core/calendar.py``). The counters of one cap are kept per
window, so a new window starts from zero without anyone resetting anything.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum

from app.core.calendar import period_start


class CapPeriod(StrEnum):
    day = "day"
    month = "month"
    calculation_period = "calculation_period"


def window_start(period: CapPeriod, instant: datetime, tz: tzinfo) -> date:
    """The first day (in ``tz``) of the window of ``period`` holding ``instant`` (aware)."""
    local = instant.astimezone(tz).date()
    if period is CapPeriod.day:
        return local
    if period is CapPeriod.month:
        return local.replace(day=1)
    return period_start(local)


def window_end(period: CapPeriod, start: date) -> date:
    """The first day after the window of ``period`` that starts on ``start``."""
    if period is CapPeriod.day:
        return start + timedelta(days=1)
    # A month or a calculation period: the same day of the next month (the 1st or the 10th).
    return (start.replace(day=1) + timedelta(days=32)).replace(day=start.day)


def window_end_instant(period: CapPeriod, start: date, tz: tzinfo) -> datetime:
    """The instant the window of ``period`` starting on ``start`` ends (its next window's
    midnight in ``tz``): what a counter's expiry is set past."""
    return datetime.combine(window_end(period, start), time(), tz)
