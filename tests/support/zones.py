"""Days and times in a report's time zone, worked out for tests with the standard library
alone (not with the code under test)."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo


def local_day(at: datetime, tz: tzinfo) -> date:
    """The day the instant ``at`` falls on in ``tz``."""
    return at.astimezone(tz).date()


def local_today(tz: tzinfo) -> date:
    return local_day(datetime.now(UTC), tz)


def local_time(at: datetime, tz: tzinfo) -> str:
    """``at`` as a CSV export writes it: the wall clock of ``tz``."""
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def label(tz: tzinfo) -> str:
    """The end of a day or time column's name: ``utc``, ``asia_shanghai``."""
    return str(tz).lower().replace("/", "_")
