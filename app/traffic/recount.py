"""Recounts from raw clicks: the rollups' definition applied to the stored rows, to check the
rollups against (tests, ``bench/reports.py``) and for a publisher's counts per day and link.
Days are days in ``tz``, the zone the rollups were counted in (the period time zone)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any

from app.core.db import Conn
from app.traffic.days import span_bounds, zone_name
from app.traffic.rollups import DIMENSION_KEY, UNPIVOT

FineKey = tuple[int, date, int, str | None, str | None, str | None]
# (publisher, dimension, day, link, value): traffic_dimension_days' key
DimensionKey = tuple[int, str, date, int, str | None]
Counts = tuple[int, int, int]  # clicks, unique clicks, flagged


def _dimension_counts(records: list[Any]) -> dict[DimensionKey, Counts]:
    return {
        (
            r["publisher_id"],
            r["dimension"],
            r["day"],
            r["link_id"],
            r["value"],
        ): (r["clicks"], r["unique_clicks"], r["flagged"])
        for r in records
    }


async def recount_dimension_days(
    conn: Conn, first: date, last: date, tz: tzinfo
) -> dict[DimensionKey, Counts]:
    """Counts per traffic dimension and value, and (publisher, day, link),
    recounted from the raw clicks: a unique click under the value of its session's earliest
    billable click of the key (by time, then click id). The rollups hold the same when each
    session's clicks reached the flusher in time order (else their first batch's earliest
    won; ``backfill_day`` makes them equal again)."""
    start, end = span_bounds(first, last, tz)
    records = await conn.fetch(
        f"""SELECT {DIMENSION_KEY}, count(*) AS clicks,
                  count(*) FILTER (WHERE c.first) AS unique_clicks,
                  count(*) FILTER (WHERE c.flags <> 0) AS flagged
           FROM (
               SELECT *, (ts AT TIME ZONE $3::text)::date AS day,
                      flags = 0 AND row_number() OVER (
                          PARTITION BY (ts AT TIME ZONE $3::text)::date, link_id, af, cn, cv,
                                       session_id, flags = 0
                          ORDER BY ts, click_id) = 1 AS first
               FROM clicks WHERE ts >= $1 AND ts < $2
           ) AS c
           CROSS JOIN LATERAL (VALUES {UNPIVOT}) AS d(dimension, value)
           GROUP BY {DIMENSION_KEY}""",
        start,
        end,
        zone_name(tz),
    )
    return _dimension_counts(records)


async def rollup_dimension_days(conn: Conn, first: date, last: date) -> dict[DimensionKey, Counts]:
    """The same counts as ``recount_dimension_days``, read from the rollups."""
    records = await conn.fetch(
        f"""SELECT {DIMENSION_KEY}, clicks, unique_clicks, flagged
           FROM traffic_dimension_days WHERE day BETWEEN $1 AND $2""",
        first,
        last,
    )
    return _dimension_counts(records)


async def recount_tracking_days(
    conn: Conn, first: date, last: date, tz: tzinfo
) -> dict[FineKey, Counts]:
    """Counts per (publisher, day, link, af, cn, cv), recounted from the raw clicks."""
    start, end = span_bounds(first, last, tz)
    records = await conn.fetch(
        """SELECT publisher_id, (ts AT TIME ZONE $3::text)::date AS day, link_id, af, cn, cv,
                  count(*) AS clicks,
                  count(DISTINCT session_id) FILTER (WHERE flags = 0) AS unique_clicks,
                  count(*) FILTER (WHERE flags <> 0) AS flagged
           FROM clicks WHERE ts >= $1 AND ts < $2
           GROUP BY 1, 2, 3, 4, 5, 6""",
        start,
        end,
        zone_name(tz),
    )
    return {
        (r["publisher_id"], r["day"], r["link_id"], r["af"], r["cn"], r["cv"]): (
            r["clicks"],
            r["unique_clicks"],
            r["flagged"],
        )
        for r in records
    }


async def rollup_tracking_days(conn: Conn, first: date, last: date) -> dict[FineKey, Counts]:
    """The same counts as ``recount_tracking_days``, read from the rollups."""
    records = await conn.fetch(
        """SELECT publisher_id, day, link_id, af, cn, cv, clicks, unique_clicks, flagged
           FROM traffic_tracking_days WHERE day BETWEEN $1 AND $2""",
        first,
        last,
    )
    return {
        (r["publisher_id"], r["day"], r["link_id"], r["af"], r["cn"], r["cv"]): (
            r["clicks"],
            r["unique_clicks"],
            r["flagged"],
        )
        for r in records
    }


async def rollup_link_days(
    conn: Conn, first: date, last: date
) -> dict[tuple[int, date, int], Counts]:
    """Counts per (publisher, day, link) from the coarser rollup."""
    records = await conn.fetch(
        """SELECT publisher_id, day, link_id, clicks, unique_clicks, flagged
           FROM traffic_link_days WHERE day BETWEEN $1 AND $2""",
        first,
        last,
    )
    return {
        (r["publisher_id"], r["day"], r["link_id"]): (
            r["clicks"],
            r["unique_clicks"],
            r["flagged"],
        )
        for r in records
    }


@dataclass(frozen=True)
class LinkDay:
    day: date
    link_id: int
    clicks: int
    billable: int
    unique: int
    flagged: int


async def traffic_by_day_and_link(
    conn: Conn, publisher_id: int, first_day: date, last_day: date, tz: tzinfo
) -> list[LinkDay]:
    """One publisher's counts per (day, link), recounted from its raw clicks."""
    start, end = span_bounds(first_day, last_day, tz)
    rows = await conn.fetch(
        """SELECT (ts AT TIME ZONE $4::text)::date AS day, link_id,
                  count(*) AS clicks,
                  count(*) FILTER (WHERE flags = 0) AS billable,
                  count(DISTINCT (af, cn, cv, session_id)) FILTER (WHERE flags = 0)
                      AS unique_clicks,
                  count(*) FILTER (WHERE flags <> 0) AS flagged
           FROM clicks
           WHERE publisher_id = $1 AND ts >= $2 AND ts < $3
           GROUP BY 1, 2 ORDER BY 1, 2""",
        publisher_id,
        start,
        end,
        zone_name(tz),
    )
    return [
        LinkDay(
            r["day"], r["link_id"], r["clicks"], r["billable"], r["unique_clicks"], r["flagged"]
        )
        for r in rows
    ]
