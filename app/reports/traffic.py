"""The traffic report as the API and the dashboard ask for it: the grouping parsed from its
text, the query built and checked, its rows with the totals, and its CSV columns. The counting
itself is ``app/traffic/counts.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo

from app.core.db import Pool
from app.errors import InvalidInput
from app.reports.csvout import Cell, zoned
from app.traffic import counts
from app.traffic.counts import Dimension, TrafficQuery, TrafficRow

COUNT_COLUMNS = ("clicks", "billable_clicks", "unique_clicks", "flagged_clicks")
_DIMENSIONS = {d.value: d for d in Dimension}


@dataclass(frozen=True)
class Filters:
    """Exact values a report keeps: a link's code, the tracking strings and the traffic
    dimensions (``filters.UNKNOWN`` keeps a traffic dimension's NULL; country in upper case,
    device one of ``counts.DEVICES``: the API checks them)."""

    link: str | None = None
    af: str | None = None
    cn: str | None = None
    cv: str | None = None
    dp: str | None = None
    country: str | None = None
    device: str | None = None
    browser: str | None = None
    os: str | None = None
    referrer: str | None = None
    language: str | None = None
    browser_version: str | None = None
    os_version: str | None = None


NO_FILTERS = Filters()


def parse_group_by(text: str) -> tuple[Dimension, ...]:
    """Dimension names (``day,link,af,cn,cv,dp,country,device,browser,os,referrer,language,
    browser_version,os_version``) comma-separated, each at most once; empty: totals only.
    Raises ``InvalidInput``."""
    if not text:
        return ()
    dims = []
    for part in text.split(","):
        if part not in _DIMENSIONS:
            names = ", ".join(_DIMENSIONS)
            raise InvalidInput(f"{part!r} is not one of {names}", field="group_by")
        dims.append(_DIMENSIONS[part])
    if len(set(dims)) != len(dims):
        raise InvalidInput("a dimension is named twice", field="group_by")
    return tuple(dims)


def traffic_query(
    publisher_id: int,
    first: date,
    last: date,
    tz: tzinfo,
    group_by: str,
    filters: Filters = NO_FILTERS,
) -> TrafficQuery:
    """The query for a publisher's days in ``tz`` (see ``ranges.day_range``), checked: an
    unknown or repeated dimension raises ``InvalidInput``, a range too long
    ``counts.RangeError`` (the message says why: by dp, or by two traffic dimensions, at
    most ``counts.MAX_RAW_DAYS``)."""
    query = TrafficQuery(
        publisher_id, first, last, tz, parse_group_by(group_by), **dataclasses.asdict(filters)
    )
    query.check()
    return query


@dataclass(frozen=True)
class TrafficReport:
    query: TrafficQuery
    rows: list[TrafficRow]  # the first ``limit``
    truncated: bool  # there were more
    totals: TrafficRow  # of every row, not only the first ``limit``


async def traffic_report(pool: Pool, query: TrafficQuery, limit: int) -> TrafficReport:
    """The first ``limit`` rows and the totals. When rows were left out, the totals come from
    a second query without grouping; else the rows add up to them."""
    async with pool.acquire() as conn:
        rows = await counts.traffic_report(conn, query, limit=limit + 1)
        if len(rows) > limit:
            whole = dataclasses.replace(query, group_by=())
            total = counts.totals(await counts.traffic_report(conn, whole))
        else:
            total = counts.totals(rows)
    return TrafficReport(query, rows[:limit], len(rows) > limit, total)


def csv_header(group_by: Sequence[Dimension], tz: tzinfo) -> list[str]:
    """The grouped dimensions, then ``COUNT_COLUMNS``; the day's column names its zone
    (``day_asia_shanghai``)."""
    names = [zoned("day", tz) if d is Dimension.day else d.value for d in group_by]
    return names + list(COUNT_COLUMNS)


async def csv_rows(
    rows: AsyncIterable[TrafficRow], group_by: Sequence[Dimension]
) -> AsyncIterator[list[Cell]]:
    """Each row's cells under ``csv_header(group_by)``."""
    async for row in rows:
        dims: list[Cell] = [row.value(d) for d in group_by]
        yield [*dims, row.clicks, row.billable, row.unique_clicks, row.flagged]
