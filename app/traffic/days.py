"""UTC days, the unit of every traffic count (clicks are stored and rolled up by UTC day)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC day as ``[start, end)``: two aware datetimes 24 hours apart."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def days_of(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
