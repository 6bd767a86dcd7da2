"""Traffic counts: clicks, billable clicks (no quality flag) and unique clicks (distinct
sessions among the billable ones), by UTC day and link."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from app.db import Conn


@dataclass(frozen=True)
class TrafficRow:
    day: date
    link_id: int
    clicks: int
    billable: int
    unique: int
    flagged: int


async def traffic_by_day_and_link(
    conn: Conn, publisher_id: int, first_day: date, last_day: date
) -> list[TrafficRow]:
    rows = await conn.fetch(
        """SELECT (ts AT TIME ZONE 'UTC')::date AS day, link_id,
                  count(*) AS clicks,
                  count(*) FILTER (WHERE flags = 0) AS billable,
                  count(DISTINCT session_id) FILTER (WHERE flags = 0) AS unique_clicks,
                  count(*) FILTER (WHERE flags <> 0) AS flagged
           FROM clicks
           WHERE publisher_id = $1
             AND ts >= ($2::date::timestamp AT TIME ZONE 'UTC')
             AND ts < (($3::date + 1)::timestamp AT TIME ZONE 'UTC')
           GROUP BY 1, 2 ORDER BY 1, 2""",
        publisher_id,
        first_day,
        last_day,
    )
    return [
        TrafficRow(
            r["day"], r["link_id"], r["clicks"], r["billable"], r["unique_clicks"], r["flagged"]
        )
        for r in rows
    ]
