"""Traffic counts: clicks, unique clicks and flagged clicks, by day (in the period time
zone, ``app.traffic.days``), link, af, cn, cv.

- *clicks*: every stored click; *flagged*: those with a quality flag (never billed);
  *billable*: clicks - flagged.
- *unique clicks*: the first billable click of each session per (day, link, af, cn, cv).
  A coarser row (a day, a link, an af) adds up the unique clicks of the keys it covers, so
  a session that clicks two links, or one link with two af values, is unique in each.

Reports read the rollups the flusher maintains (``app/traffic/rollups.py``), never the raw
clicks, except for ``dp``: it is not in the rollups (it is free text, often one value per
click), so a report by dp counts raw clicks, over at most ``MAX_RAW_DAYS`` days, and its
unique clicks are per (day, link, af, cn, cv, dp). ``app.traffic.recount`` counts the raw
clicks by the rollups' rules: what the rollups are checked against.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo
from enum import StrEnum
from typing import Any, NamedTuple

import asyncpg

from app.core.db import Conn, Pool
from app.errors import InvalidInput
from app.traffic.days import span_bounds, zone_name

MAX_DAYS = 366  # the longest range a report covers
# The days a report may name (as for months in money.periods).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)
MAX_RAW_DAYS = 31  # the longest range a report by dp (raw clicks) covers
PREFETCH = 2000


class Dimension(StrEnum):
    day = "day"
    link = "link"
    af = "af"
    cn = "cn"
    cv = "cv"
    dp = "dp"


TRACKING = (Dimension.af, Dimension.cn, Dimension.cv)


class RangeError(InvalidInput, ValueError):
    """A report's range is reversed or too long (the message says which); its field is
    ``from``."""


@dataclass(frozen=True)
class TrafficQuery:
    publisher_id: int
    first_day: date
    last_day: date  # included
    tz: tzinfo  # whose days these are: the zone the rollups count in (the period time zone)
    group_by: tuple[Dimension, ...] = (Dimension.day,)
    link: str | None = None  # filters: exact values
    af: str | None = None
    cn: str | None = None
    cv: str | None = None
    dp: str | None = None

    @property
    def from_raw_clicks(self) -> bool:
        return Dimension.dp in self.group_by or self.dp is not None

    def check(self) -> None:
        days = (self.last_day - self.first_day).days + 1
        limit = MAX_RAW_DAYS if self.from_raw_clicks else MAX_DAYS
        if days < 1:
            raise RangeError("the range ends before it starts", field="from")
        if self.first_day < FIRST_DAY or self.last_day > LAST_DAY:
            raise RangeError(f"days run from {FIRST_DAY} to {LAST_DAY}", field="from")
        if days > limit:
            why = " (a report by dp counts raw clicks)" if self.from_raw_clicks else ""
            raise RangeError(f"the range covers {days} days; at most {limit}{why}", field="from")


class TrafficRow(NamedTuple):
    """One row of a report; only the dimensions grouped by are set. (A tuple: reports build
    tens of thousands of them.)"""

    day: date | None
    link: str | None
    af: str | None
    cn: str | None
    cv: str | None
    dp: str | None
    clicks: int
    unique_clicks: int
    flagged: int

    @property
    def billable(self) -> int:
        return self.clicks - self.flagged

    def value(self, dimension: Dimension) -> date | str | None:
        found: date | str | None = getattr(self, dimension.value)
        return found


# Where each dimension sits in a TrafficRow.
_SLOT = {dimension: n for n, dimension in enumerate(Dimension)}


def _filters(query: TrafficQuery, table: str, params: list[Any]) -> list[str]:
    conditions = []
    for name in ("af", "cn", "cv", "dp"):
        value = getattr(query, name)
        if value is not None:
            params.append(value)
            conditions.append(f"{table}.{name} = ${len(params)}")
    if query.link is not None:
        params.append(query.link)
        conditions.append(f"l.code = ${len(params)}")
    return conditions


def _report_sql(query: TrafficQuery, params: list[Any]) -> str:
    by_tracking = any(d in TRACKING for d in query.group_by) or any(
        getattr(query, d.value) is not None for d in TRACKING
    )
    join_links = Dimension.link in query.group_by or query.link is not None
    if query.from_raw_clicks:
        start, end = span_bounds(query.first_day, query.last_day, query.tz)
        params += [query.publisher_id, start, end, zone_name(query.tz)]
        table = "c"
        day = "(c.ts AT TIME ZONE $4::text)::date"
        source = "clicks c"
        where = ["c.publisher_id = $1", "c.ts >= $2", "c.ts < $3"]
        sessions = f"({day}, c.link_id, c.af, c.cn, c.cv, c.dp, c.session_id)"
        counts = (
            f"count(*), count(DISTINCT {sessions}) FILTER (WHERE c.flags = 0), "
            "count(*) FILTER (WHERE c.flags <> 0)"
        )
    else:
        params += [query.publisher_id, query.first_day, query.last_day]
        table = "r"
        day = "r.day"
        source = "traffic_tracking_days r" if by_tracking else "traffic_link_days r"
        where = ["r.publisher_id = $1", "r.day BETWEEN $2 AND $3"]
        counts = "sum(r.clicks)::bigint, sum(r.unique_clicks)::bigint, sum(r.flagged)::bigint"
    if join_links:  # the publisher's links only: a few rows by index, not the whole table
        source += f" JOIN links l ON l.id = {table}.link_id AND l.publisher_id = $1"
    where += _filters(query, table, params)
    columns = {Dimension.day: day, Dimension.link: "l.code"}
    dims = [columns.get(d, f"{table}.{d.value}") for d in query.group_by]
    select = ", ".join([*dims, counts])
    sql = f"SELECT {select} FROM {source} WHERE {' AND '.join(where)}"
    if dims:
        positions = ", ".join(str(n + 1) for n in range(len(dims)))
        order = ", ".join(f"{n + 1} NULLS FIRST" for n in range(len(dims)))
        sql += f" GROUP BY {positions} ORDER BY {order}"
    return sql


def _row(record: asyncpg.Record, slots: Sequence[int]) -> TrafficRow | None:
    """The row of a record holding the dimensions at ``slots``, then the three counts."""
    width = len(slots)
    clicks = record[width]
    if not clicks:  # the one row of totals (no dimension) of an empty range
        return None
    values: list[Any] = [None] * len(_SLOT)
    for n, slot in enumerate(slots):
        values[slot] = record[n]
    return TrafficRow._make([*values, clicks, record[width + 1], record[width + 2]])


async def traffic_report(
    conn: Conn, query: TrafficQuery, *, limit: int | None = None
) -> list[TrafficRow]:
    """The rows of a traffic report (the first ``limit`` of them), ordered by the dimensions
    grouped by. Raises ``RangeError`` for a range that is reversed or too long."""
    query.check()
    params: list[Any] = []
    sql = _report_sql(query, params)
    if limit is not None:
        params.append(limit)
        sql += f" LIMIT ${len(params)}"
    slots = [_SLOT[d] for d in query.group_by]
    rows = [_row(record, slots) for record in await conn.fetch(sql, *params)]
    return [row for row in rows if row is not None]


async def iter_traffic(pool: Pool, query: TrafficQuery) -> AsyncIterator[TrafficRow]:
    """Every row of a traffic report, from a server-side cursor (for CSV exports). Call
    ``query.check()`` first."""
    params: list[Any] = []
    sql = _report_sql(query, params)
    slots = [_SLOT[d] for d in query.group_by]
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        async for record in conn.cursor(sql, *params, prefetch=PREFETCH):
            row = _row(record, slots)
            if row is not None:
                yield row


def totals(rows: list[TrafficRow]) -> TrafficRow:
    return TrafficRow(
        None,
        None,
        None,
        None,
        None,
        None,
        clicks=sum(r.clicks for r in rows),
        unique_clicks=sum(r.unique_clicks for r in rows),
        flagged=sum(r.flagged for r in rows),
    )
