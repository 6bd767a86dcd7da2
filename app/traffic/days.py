"""Days in the period time zone (``CLICKTRACK_PERIOD_TIMEZONE``), the unit of every report:
a traffic day, an order's day and a calculation period's days all run from 00:00 to 24:00
on the clock of that one zone. Clicks are stored by their UTC instant (their partitions are
UTC days, a storage matter); the rollups count them into the zone's days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The day in ``tz`` as ``[start, end)``: two aware UTC datetimes (24 hours apart, or 23
    or 25 on a daylight-saving change)."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=tz).astimezone(UTC)
    return start, end


def span_bounds(first: date, last: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The days ``first`` to ``last`` (both included) in ``tz`` as ``[start, end)``."""
    return day_bounds(first, tz)[0], day_bounds(last, tz)[1]


def day_of(at: datetime, tz: tzinfo) -> date:
    """The day the instant ``at`` falls on in ``tz``."""
    return at.astimezone(tz).date()


def today(tz: tzinfo) -> date:
    """The present day in ``tz``."""
    return day_of(datetime.now(UTC), tz)


def days_of(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def zone_name(tz: tzinfo) -> str:
    """The IANA name of ``tz``, as Postgres's ``AT TIME ZONE`` takes it (``UTC`` for
    ``datetime.UTC``). Raises ``ValueError`` for a zone without one (a fixed offset)."""
    if isinstance(tz, ZoneInfo):
        return tz.key
    if tz == UTC:
        return "UTC"
    raise ValueError(f"{tz!r} has no IANA name")


def zone_label(tz: tzinfo) -> str:
    """``zone_name`` as the end of a CSV column's name: lower case, ``/`` as ``_``
    (``utc``, ``asia_shanghai``)."""
    return zone_name(tz).lower().replace("/", "_")
