"""Times in answers: on the clock of the period time zone (``CLICKTRACK_PERIOD_TIMEZONE``),
with its offset (``2016-10-10T00:30:00+08:00``), and the zone named in ``time_zone``. Every
date and time a publisher reads is on that clock (docs/reports.md)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated, overload

from pydantic import Field

TimeZoneName = Annotated[
    str,
    Field(
        description="IANA name of the zone every day and time of the answer is in: the period "
        "time zone (CLICKTRACK_PERIOD_TIMEZONE)"
    ),
]


@overload
def in_zone(at: datetime, tz: tzinfo) -> datetime: ...


@overload
def in_zone(at: None, tz: tzinfo) -> None: ...


def in_zone(at: datetime | None, tz: tzinfo) -> datetime | None:
    """``at`` on the clock of ``tz`` (the same instant); None stays None."""
    return None if at is None else at.astimezone(tz)
