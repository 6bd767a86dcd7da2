"""The ranges a report covers, from what a caller asked for: days (traffic, Live Order
Tracking, the overview) or calculation periods (income), both in the period time zone: the
caller gives ``today`` as ``app.traffic.days.today(tz)``. Both ends are included; a bad range
raises ``InvalidInput`` naming the field at fault."""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo

from app.errors import InvalidInput
from app.money.periods import Period, periods_between
from app.reports import income
from app.traffic import counts

DEFAULT_DAYS = 30  # a day range asked for without `from`: these many days up to `to`


def day_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """The days asked for; by default the last ``DEFAULT_DAYS`` (today included)."""
    for name, day in (("from", first), ("to", last)):
        if day is not None and not counts.FIRST_DAY <= day <= counts.LAST_DAY:
            raise InvalidInput(f"days run from {counts.FIRST_DAY} to {counts.LAST_DAY}", field=name)
    last = last or today
    first = first or max(counts.FIRST_DAY, last - timedelta(days=DEFAULT_DAYS - 1))
    if last < first:
        raise InvalidInput("the range ends before it starts", field="to")
    return first, last


def bounded_day_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """As ``day_range``, and at most ``counts.MAX_DAYS`` days (the overview's rule)."""
    first, last = day_range(first, last, today)
    if (last - first).days + 1 > counts.MAX_DAYS:
        raise InvalidInput(f"at most {counts.MAX_DAYS} days", field="from")
    return first, last


def period_range(
    first: str | None, last: str | None, now: datetime, tz: tzinfo
) -> tuple[Period, Period]:
    """The calculation periods asked for (``YYYY-MM``); by default the last 12, the current
    one included; at most ``income.MAX_PERIODS``."""
    default_first, default_last = income.default_periods(now, tz)
    # A bad name raises PeriodError naming "period", whichever end it is (as the API says).
    last_period = Period.parse(last, field="period") if last else default_last
    first_period = Period.parse(first, field="period") if first else default_first
    if last_period < first_period:
        raise InvalidInput("the range ends before it starts", field="to")
    count = len(periods_between(first_period, last_period))
    if count > income.MAX_PERIODS:
        raise InvalidInput(f"{count} periods; at most {income.MAX_PERIODS}", field="from")
    return first_period, last_period
