"""Route: Live Order Tracking, as CSV (``/reports/orders.csv``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from app.api.bodies import JsonRoute
from app.api.deps import PrincipalDep, ResourcesDep
from app.api.params import BomFlag, DayRange, OrderFilters, PublisherChoice
from app.api.reports.download import csv_response
from app.api.scope import acting_for
from app.orders.status import Attribution
from app.reports import exports, ranges
from app.reports.orders import DateBasis, OrderExport, ShownStatus
from app.traffic.days import today

router = APIRouter(prefix="/reports", route_class=JsonRoute, tags=["reports"])


class OrderSelection:
    """``date_type``, ``status`` and ``attribution``: which date the range is of, and which
    orders."""

    def __init__(
        self,
        date_type: Annotated[
            DateBasis,
            Query(description="`order`: by order time; `transaction`: by completion time"),
        ] = DateBasis.order,
        status: Annotated[
            list[ShownStatus] | None,
            Query(
                description="Any of these; `completed`: within 60 days of the purchase, "
                "`completed_late`: reported completed after that (never earns)"
            ),
        ] = None,
        attribution: Annotated[
            list[Attribution] | None,
            Query(
                description="Any of these; `held`: held for review by a fraud rule (column "
                "`held_rule`), `declined`: over a cap (column `declined_cap_id`); neither earns"
            ),
        ] = None,
    ) -> None:
        self.date_type = date_type
        self.statuses = tuple(status or ())
        self.attributions = tuple(attribution or ())


@router.get("/orders.csv", response_class=StreamingResponse)
async def live_order_tracking_csv(
    principal: PrincipalDep,
    resources: ResourcesDep,
    days: Annotated[DayRange, Depends()],
    selection: Annotated[OrderSelection, Depends()],
    tracking: Annotated[OrderFilters, Depends()],
    csv: Annotated[BomFlag, Depends()],
    publisher: Annotated[PublisherChoice, Depends()],
) -> StreamingResponse:
    """Live Order Tracking: one row per order with its order and transaction times, status,
    amount, commission, the tracking strings af, cn, cv, dp, and its attribution (held and
    declined orders with the fraud rule or the cap; they earn nothing); streamed. Days and times are
    in the period time zone, which the time columns' names and `X-Time-Zone` state."""
    tz, now = resources.settings.period_tz, datetime.now(UTC)
    first, last = ranges.day_range(days.first, days.last, today(tz))
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher.publisher_id)
    export = OrderExport(
        owner,
        first,
        last,
        basis=selection.date_type,
        statuses=selection.statuses,
        attributions=selection.attributions,
        link=tracking.link,
        af=tracking.af,
        cn=tracking.cn,
        cv=tracking.cv,
        dp=tracking.dp,
    )
    return csv_response(exports.orders_csv(resources.pool, export, tz, now, bom=csv.bom))
