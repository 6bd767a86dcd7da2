"""Traffic counts: clicks, unique clicks and flagged clicks, by day (in the period time
zone, ``app.traffic.days``), link, af, cn, cv, dp and the traffic dimensions (country,
device, browser, os, referrer host, language).

- *clicks*: every stored click; *flagged*: those with a quality flag (never billed);
  *billable*: clicks - flagged.
- *unique clicks*: the first billable click of each session per (day, link, af, cn, cv).
  A coarser row (a day, a link, an af) adds up the unique clicks of the keys it covers, so
  a session that clicks two links, or one link with two af values, is unique in each. By a
  traffic dimension, a unique click counts under the value of that first click (the
  earliest by time, then click id), so each dimension's values add up to the plain report.

Reports read the rollups the flusher maintains (``app/traffic/rollups.py``): by day and
link ``traffic_link_days``, by af, cn, cv ``traffic_tracking_days``, by or filtered on one
traffic dimension (with day and link) ``traffic_dimension_days``. Some reports count the
raw clicks, over at most ``MAX_RAW_DAYS`` days (``TrafficQuery.from_raw_clicks``): by ``dp``
(free text, often one value per click: not in the rollups; its unique clicks are per (day,
link, af, cn, cv, dp)), a report combining two traffic dimensions, or one with af, cn or cv
(the rollups keep each dimension alone, per link), or by a browser's or OS's version
(``VERSIONS``: the family and its major version). A traffic dimension's
NULL (a click stored without dimensions, or from which nothing could be told) is shown as
``UNKNOWN``; the filter value ``UNKNOWN`` keeps those clicks. ``app.traffic.recount`` counts
the raw clicks by the rollups' rules: what the rollups are checked against.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo
from enum import StrEnum
from typing import Any, NamedTuple

import asyncpg

from app.core.db import Conn, Pool
from app.core.dimension_values import DEVICE_TYPES
from app.errors import InvalidInput
from app.traffic.days import span_bounds, zone_name
from app.traffic.filters import UNKNOWN  # a traffic dimension's NULL, shown and asked for
from app.traffic.rollups import DIMENSIONS

MAX_DAYS = 366  # the longest range a report covers
# The days a report may name (as for months in money.periods).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)
MAX_RAW_DAYS = 31  # the longest range a report from raw clicks (by dp, ...) covers
PREFETCH = 2000
# The device types the flusher stores (app.dimensions.agent.DeviceType).
DEVICES = DEVICE_TYPES  # what the filter "device" may ask for


class Dimension(StrEnum):
    day = "day"
    link = "link"
    af = "af"
    cn = "cn"
    cv = "cv"
    dp = "dp"
    country = "country"
    device = "device"
    browser = "browser"
    os = "os"
    referrer = "referrer"
    language = "language"
    browser_version = "browser_version"
    os_version = "os_version"


TRACKING = (Dimension.af, Dimension.cn, Dimension.cv)
# The traffic dimensions: in traffic_dimension_days, one at a time.
TRAFFIC = (
    Dimension.country,
    Dimension.device,
    Dimension.browser,
    Dimension.os,
    Dimension.referrer,
    Dimension.language,
)
assert [d.value for d in TRAFFIC] == list(DIMENSIONS)
# A family with its major version ("Chrome Mobile 131", "iOS 18"; the family alone without
# one): from raw clicks only, like dp (versions change monthly; a rollup by them would add
# rows to every key for little use).
VERSIONS = (Dimension.browser_version, Dimension.os_version)


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
    link: str | None = None  # filters: exact values (UNKNOWN: a traffic dimension's NULL)
    af: str | None = None
    cn: str | None = None
    cv: str | None = None
    dp: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2, upper case
    device: str | None = None  # one of DEVICES
    browser: str | None = None
    os: str | None = None
    referrer: str | None = None  # a host name
    language: str | None = None  # a primary language subtag
    browser_version: str | None = None  # "Chrome Mobile 131"
    os_version: str | None = None  # "iOS 18"

    @property
    def traffic_dimensions(self) -> tuple[Dimension, ...]:
        """The traffic dimensions (and versions) grouped by or filtered on, each once, in
        ``Dimension`` order."""
        return tuple(
            d
            for d in (*TRAFFIC, *VERSIONS)
            if d in self.group_by or getattr(self, d.value) is not None
        )

    @property
    def by_dp(self) -> bool:
        return Dimension.dp in self.group_by or self.dp is not None

    @property
    def tracking(self) -> tuple[Dimension, ...]:
        """af, cn, cv grouped by or filtered on, each once."""
        return tuple(
            d for d in TRACKING if d in self.group_by or getattr(self, d.value) is not None
        )

    @property
    def from_raw_clicks(self) -> bool:
        """By dp, by a version, by two traffic dimensions, or by one with af, cn or cv: the
        rollups cannot answer (``traffic_dimension_days`` keeps each dimension per link)."""
        used = self.traffic_dimensions
        return (
            self.by_dp
            or len(used) > 1
            or any(d in VERSIONS for d in used)
            or bool(used and self.tracking)
        )

    def _raw_reason(self) -> str:
        if self.by_dp:
            return " (a report by dp counts raw clicks)"
        used = self.traffic_dimensions
        if len(used) == 1 and not self.tracking:
            return f" (a report by {used[0].value} counts raw clicks)"
        named = " and ".join(d.value for d in (*used, *self.tracking))
        return f" (a report combining {named} counts raw clicks)"

    def check(self) -> None:
        days = (self.last_day - self.first_day).days + 1
        limit = MAX_RAW_DAYS if self.from_raw_clicks else MAX_DAYS
        if days < 1:
            raise RangeError("the range ends before it starts", field="from")
        if self.first_day < FIRST_DAY or self.last_day > LAST_DAY:
            raise RangeError(f"days run from {FIRST_DAY} to {LAST_DAY}", field="from")
        if days > limit:
            why = self._raw_reason() if self.from_raw_clicks else ""
            raise RangeError(f"the range covers {days} days; at most {limit}{why}", field="from")


class TrafficRow(NamedTuple):
    """One row of a report; only the dimensions grouped by are set (a traffic dimension's
    NULL as ``UNKNOWN``). (A tuple: reports build tens of thousands of them.)"""

    day: date | None
    link: str | None
    af: str | None
    cn: str | None
    cv: str | None
    dp: str | None
    country: str | None
    device: str | None
    browser: str | None
    os: str | None
    referrer: str | None
    language: str | None
    browser_version: str | None
    os_version: str | None
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
_FIRST_TRAFFIC_SLOT = _SLOT[TRAFFIC[0]]
# Each traffic dimension's column in ``clicks``.
_CLICK_COLUMN = {d: DIMENSIONS[d.value] for d in TRAFFIC}
# Each traffic dimension's (and version's) value in a raw click.
_RAW_VALUES = {
    **{d: f"c.{column}" for d, column in _CLICK_COLUMN.items()},
    Dimension.browser_version: "(c.browser || coalesce(' ' || c.browser_major, ''))",
    Dimension.os_version: "(c.os || coalesce(' ' || c.os_major, ''))",
}
# Grouped by in byte order, as the rollups' text columns (COLLATE "C") are.
_RAW_COLUMNS = {d: f'{value} COLLATE "C"' for d, value in _RAW_VALUES.items()}


def empty_row() -> TrafficRow:
    """A row of no dimension and no clicks (the totals of nothing)."""
    return TrafficRow._make([None] * len(_SLOT) + [0, 0, 0])


def _equals(column: str, value: str, params: list[Any]) -> str:
    """``column`` equal to ``value``, ``UNKNOWN`` being NULL (traffic dimensions only)."""
    if value == UNKNOWN:
        return f"{column} IS NULL"
    params.append(value)
    return f"{column} = ${len(params)}"


def _tracking_filters(query: TrafficQuery, table: str, params: list[Any]) -> list[str]:
    conditions = []
    for name in ("af", "cn", "cv", "dp"):
        value = getattr(query, name)
        if value is not None:
            params.append(value)
            conditions.append(f"{table}.{name} = ${len(params)}")
    return conditions


def _link_filter(query: TrafficQuery, params: list[Any]) -> list[str]:
    if query.link is None:
        return []
    params.append(query.link)
    return [f"l.code = ${len(params)}"]


def _join_links(query: TrafficQuery, table: str) -> str:
    """The publisher's links, when grouped or filtered by link: a few rows by index."""
    if Dimension.link in query.group_by or query.link is not None:
        return f" JOIN links l ON l.id = {table}.link_id AND l.publisher_id = $1"
    return ""


def _rollup_source(query: TrafficQuery, params: list[Any]) -> tuple[str, list[str]]:
    """The rollup table a query reads and its conditions (after publisher and days)."""
    if query.traffic_dimensions:
        dimension = query.traffic_dimensions[0]
        params.append(dimension.value)
        where = [f"r.dimension = ${len(params)}"]
        value = getattr(query, dimension.value)
        if value is not None:
            where.append(_equals("r.value", value, params))
        return "traffic_dimension_days r", where
    by_tracking = any(d in TRACKING for d in query.group_by) or any(
        getattr(query, d.value) is not None for d in TRACKING
    )
    return ("traffic_tracking_days r" if by_tracking else "traffic_link_days r"), []


def _rollup_sql(query: TrafficQuery, params: list[Any]) -> tuple[str, list[str]]:
    """FROM … WHERE … over the rollups, and the grouped columns."""
    params += [query.publisher_id, query.first_day, query.last_day]
    where = ["r.publisher_id = $1", "r.day BETWEEN $2 AND $3"]
    source, conditions = _rollup_source(query, params)
    where += conditions + _tracking_filters(query, "r", params) + _link_filter(query, params)
    columns = {Dimension.day: "r.day", Dimension.link: "l.code"}
    dims = [columns.get(d, "r.value" if d in TRAFFIC else f"r.{d.value}") for d in query.group_by]
    counts = "sum(r.clicks)::bigint, sum(r.unique_clicks)::bigint, sum(r.flagged)::bigint"
    body = f"{counts} FROM {source}{_join_links(query, 'r')} WHERE {' AND '.join(where)}"
    return body, dims


def _raw_sql(query: TrafficQuery, params: list[Any]) -> tuple[str, list[str]]:
    """FROM … WHERE … over the raw clicks, and the grouped columns. Each billable click is
    marked ``first`` when it is the earliest (by time, then click id) of its session per
    (day, link, af, cn, cv[, dp]): the unique click, as the rollups count it. Filters on the
    traffic dimensions apply after the marking, as the rollups' do."""
    start, end = span_bounds(query.first_day, query.last_day, query.tz)
    params += [query.publisher_id, start, end, zone_name(query.tz)]
    day = "(c.ts AT TIME ZONE $4::text)::date"
    key = f"{day}, c.link_id, c.af, c.cn, c.cv{', c.dp' if query.by_dp else ''}"
    inner = ["c.publisher_id = $1", "c.ts >= $2", "c.ts < $3"]
    inner += _tracking_filters(query, "c", params)
    traffic = ", ".join(f"c.{column}" for column in _CLICK_COLUMN.values())
    traffic += ", c.browser_major, c.os_major"
    marked = f"""(SELECT {day} AS day, c.link_id, c.af, c.cn, c.cv, c.dp, c.flags, {traffic},
            c.flags = 0 AND row_number() OVER (
                PARTITION BY {key}, c.session_id, c.flags = 0 ORDER BY c.ts, c.click_id
            ) = 1 AS first
        FROM clicks c WHERE {" AND ".join(inner)}) c"""
    where = ["TRUE", *_link_filter(query, params)]
    for dimension in query.traffic_dimensions:
        value = getattr(query, dimension.value)
        if value is not None:
            where.append(_equals(_RAW_VALUES[dimension], value, params))
    columns = {Dimension.day: "c.day", Dimension.link: "l.code", **_RAW_COLUMNS}
    dims = [columns.get(d, f"c.{d.value}") for d in query.group_by]
    counts = "count(*), count(*) FILTER (WHERE c.first), count(*) FILTER (WHERE c.flags <> 0)"
    body = f"{counts} FROM {marked}{_join_links(query, 'c')} WHERE {' AND '.join(where)}"
    return body, dims


def _report_sql(query: TrafficQuery, params: list[Any]) -> str:
    body, dims = (_raw_sql if query.from_raw_clicks else _rollup_sql)(query, params)
    sql = f"SELECT {', '.join([*dims, body])}"
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
        found = record[n]
        values[slot] = UNKNOWN if found is None and slot >= _FIRST_TRAFFIC_SLOT else found
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
    return empty_row()._replace(
        clicks=sum(r.clicks for r in rows),
        unique_clicks=sum(r.unique_clicks for r in rows),
        flagged=sum(r.flagged for r in rows),
    )
