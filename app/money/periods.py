"""Calculation periods and calendar months, in the program's time zone.

A calculation period runs from the 10th of a month, 00:00, to the 10th of the next month,
00:00 (exclusive): the 9th is its last day, to its last instant. A period is named after the
month it starts in: ``2016-09`` is 10 September 2016 to 9 October 2016.

A name that is not a month (``Month.parse``, ``Period.parse``) raises ``PeriodError``: an
``InvalidInput`` and a ``ValueError``, naming the input at fault when the caller says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo

from app.core.calendar import PERIOD_START_DAY
from app.errors import InvalidInput

START_DAY = PERIOD_START_DAY

_NAME = re.compile(r"^(\d{4})-(\d{2})$")
# Months a caller may name: wide enough for any real order, narrow enough that the next
# month of any of them is still a valid date.
FIRST_YEAR, LAST_YEAR = 1970, 2999


class PeriodError(InvalidInput, ValueError):
    """A month or period name that is not one (the message says why)."""


def _no_such_month(year: int, month: int) -> str | None:
    if not 1 <= month <= 12 or not 1 <= year <= 9998:
        return f"no such month: {year:04d}-{month:02d}"
    return None


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("a time without a time zone cannot be placed in a period")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month; also the month a calculation period starts in."""

    year: int
    month: int

    def __post_init__(self) -> None:
        problem = _no_such_month(self.year, self.month)
        if problem:  # a bug, not input: ``parse`` refuses such a name first
            raise ValueError(problem)

    @classmethod
    def parse(cls, text: str, *, field: str | None = None) -> Month:
        """``YYYY-MM``, or ``PeriodError`` naming ``field`` (the input the text came from)."""
        match = _NAME.fullmatch(text)
        if match is None:
            raise PeriodError(f"expected YYYY-MM, got {text!r}", field=field)
        year, month = int(match.group(1)), int(match.group(2))
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise PeriodError(
                f"expected a year from {FIRST_YEAR} to {LAST_YEAR}, got {year}", field=field
            )
        problem = _no_such_month(year, month)
        if problem:
            raise PeriodError(problem, field=field)
        return cls(year, month)

    @classmethod
    def containing(cls, instant: datetime, tz: tzinfo) -> Month:
        _require_aware(instant)
        local = instant.astimezone(tz)
        return cls(local.year, local.month)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def starts_at(self, tz: tzinfo) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=tz).astimezone(UTC)

    def ends_at(self, tz: tzinfo) -> datetime:
        return self.next().starts_at(tz)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True, order=True)
class Period:
    """The calculation period that starts on the 10th of ``month``."""

    month: Month

    @classmethod
    def parse(cls, text: str, *, field: str | None = None) -> Period:
        """``YYYY-MM``: the period starting in that month; else ``PeriodError`` (see Month)."""
        return cls(Month.parse(text, field=field))

    @classmethod
    def of(cls, year: int, month: int) -> Period:
        return cls(Month(year, month))

    @classmethod
    def containing(cls, instant: datetime, tz: tzinfo) -> Period:
        """The period an instant belongs to, judged by its local date in ``tz``."""
        _require_aware(instant)
        local = instant.astimezone(tz)
        month = Month(local.year, local.month)
        return cls(month if local.day >= START_DAY else month.previous())

    @classmethod
    def starting_on(cls, day: date) -> Period:
        if day.day != START_DAY:
            raise ValueError(f"a calculation period starts on the {START_DAY}th, not on {day}")
        return cls(Month(day.year, day.month))

    @property
    def start_date(self) -> date:
        return date(self.month.year, self.month.month, START_DAY)

    @property
    def last_date(self) -> date:
        """The last day of the period (the 9th of the next month), inclusive."""
        following = self.month.next()
        return date(following.year, following.month, START_DAY - 1)

    def next(self) -> Period:
        return Period(self.month.next())

    def previous(self) -> Period:
        return Period(self.month.previous())

    def starts_at(self, tz: tzinfo) -> datetime:
        """The first instant of the period, in UTC."""
        start = self.start_date
        return datetime(start.year, start.month, start.day, tzinfo=tz).astimezone(UTC)

    def ends_at(self, tz: tzinfo) -> datetime:
        """The first instant after the period (the next one's start), in UTC."""
        return self.next().starts_at(tz)

    def __str__(self) -> str:
        return str(self.month)


def periods_between(first: Period, last: Period) -> list[Period]:
    """``first`` to ``last``, both included, in order (empty when ``first`` is later)."""
    found = []
    period = first
    while period <= last:
        found.append(period)
        period = period.next()
    return found
