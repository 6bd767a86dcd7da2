"""Routes: the traffic report, as JSON (``/reports/traffic``) and CSV
(``/reports/traffic.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from app.api.bodies import JsonRoute
from app.api.deps import PrincipalDep, ResourcesDep
from app.api.params import BomFlag, DayRange, PublisherChoice, TrafficFilters, TrafficGrouping
from app.api.reports.download import csv_response
from app.api.scope import acting_for
from app.api.zones import TimeZoneName
from app.reports import exports, ranges, traffic
from app.traffic.counts import Dimension, TrafficQuery, TrafficRow
from app.traffic.days import today, zone_name

router = APIRouter(prefix="/reports", route_class=JsonRoute, tags=["reports"])


class RowLimit:
    """``limit``: the most rows a JSON report holds."""

    def __init__(self, limit: Annotated[int, Query(ge=1, le=50_000)] = 5000) -> None:
        self.limit = limit


class TrafficRowOut(BaseModel):
    day: date | None = None
    link: str | None = None
    af: str | None = None
    cn: str | None = None
    cv: str | None = None
    dp: str | None = None
    country: str | None = Field(None, description="`unknown`: clicks without one")
    device: str | None = None
    browser: str | None = None
    os: str | None = None
    referrer: str | None = None
    language: str | None = None
    browser_version: str | None = Field(None, description="`Chrome Mobile 131`: raw clicks")
    os_version: str | None = Field(None, description="`iOS 18`: raw clicks")
    clicks: int
    billable_clicks: int
    unique_clicks: int
    flagged_clicks: int


class TrafficOut(BaseModel):
    publisher_id: int
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    time_zone: TimeZoneName
    group_by: list[Dimension]
    source: str = Field(
        description="`rollups`, or `clicks` for a report by dp, by a version or by two "
        "traffic dimensions"
    )
    rows: list[TrafficRowOut]
    truncated: bool = Field(description="More rows than `limit`: ask for the CSV")
    totals: TrafficRowOut


async def _query(
    principal: PrincipalDep,
    resources: ResourcesDep,
    days: DayRange,
    grouping: TrafficGrouping,
    tracking: TrafficFilters,
    publisher: PublisherChoice,
) -> TrafficQuery:
    """The checked query: the range first, then the publisher, then the grouping."""
    tz = resources.settings.period_tz
    first, last = ranges.day_range(days.first, days.last, today(tz))
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher.publisher_id)
    return traffic.traffic_query(owner, first, last, tz, grouping.group_by, tracking.filters)


def traffic_row_json(row: TrafficRow, group_by: Sequence[Dimension]) -> dict[str, Any]:
    """A row as ``TrafficRowOut`` serialises it: only the grouped dimensions, then counts."""
    found: dict[str, Any] = {}
    for dimension in group_by:
        value = row.value(dimension)
        found[dimension.value] = value.isoformat() if isinstance(value, date) else value
    found["clicks"] = row.clicks
    found["billable_clicks"] = row.billable
    found["unique_clicks"] = row.unique_clicks
    found["flagged_clicks"] = row.flagged
    return found


def traffic_json(report: traffic.TrafficReport) -> dict[str, Any]:
    """The same document as ``TrafficOut``, built directly (tens of thousands of rows)."""
    query = report.query
    return {
        "publisher_id": query.publisher_id,
        "from": query.first_day.isoformat(),
        "to": query.last_day.isoformat(),
        "time_zone": zone_name(query.tz),
        "group_by": [d.value for d in query.group_by],
        "source": "clicks" if query.from_raw_clicks else "rollups",
        "rows": [traffic_row_json(r, query.group_by) for r in report.rows],
        "truncated": report.truncated,
        "totals": traffic_row_json(report.totals, ()),
    }


@router.get("/traffic", response_model=TrafficOut, response_model_exclude_unset=True)
async def traffic_report(
    principal: PrincipalDep,
    resources: ResourcesDep,
    days: Annotated[DayRange, Depends()],
    grouping: Annotated[TrafficGrouping, Depends()],
    tracking: Annotated[TrafficFilters, Depends()],
    limit: Annotated[RowLimit, Depends()],
    publisher: Annotated[PublisherChoice, Depends()],
) -> Response:
    """Clicks, billable, unique and flagged clicks per group, from the rollups (by dp, a
    version or two traffic dimensions: from raw clicks, at most 31 days). Unique clicks:
    first billable click of a session per (day, link, af, cn, cv), added up over the
    groups; by a traffic dimension, under that first click's value. A traffic dimension's
    missing value is `unknown`. Days are those of the period time zone (``time_zone``)."""
    query = await _query(principal, resources, days, grouping, tracking, publisher)
    report = await traffic.traffic_report(resources.pool, query, limit.limit)
    return Response(orjson.dumps(traffic_json(report)), media_type="application/json")


@router.get("/traffic.csv", response_class=StreamingResponse)
async def traffic_csv(
    principal: PrincipalDep,
    resources: ResourcesDep,
    days: Annotated[DayRange, Depends()],
    grouping: Annotated[TrafficGrouping, Depends()],
    tracking: Annotated[TrafficFilters, Depends()],
    csv: Annotated[BomFlag, Depends()],
    publisher: Annotated[PublisherChoice, Depends()],
) -> StreamingResponse:
    """The traffic report as CSV: the group's columns, then clicks, billable_clicks,
    unique_clicks, flagged_clicks; every row, streamed."""
    query = await _query(principal, resources, days, grouping, tracking, publisher)
    return csv_response(exports.traffic_csv(resources.pool, query, bom=csv.bom))
