"""Route: the overview (``/reports/overview``): the glossary's figures over a range."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from app.api.bodies import JsonRoute
from app.api.deps import PrincipalDep, ResourcesDep
from app.api.params import DayRange, PublisherChoice
from app.api.scope import acting_for
from app.api.zones import TimeZoneName
from app.reports import overview, ranges
from app.traffic.days import today, zone_name

router = APIRouter(prefix="/reports", route_class=JsonRoute, tags=["reports"])


class OverviewOut(BaseModel):
    publisher_id: int
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    time_zone: TimeZoneName
    this_month: str
    this_month_estimated_commission: Decimal
    last_month: str
    income_last_month: Decimal
    account_balance: Decimal
    clicks: int
    billable_clicks: int
    unique_clicks: int
    flagged_clicks: int
    orders: int = Field(description="Attributed orders placed in the range, every status")
    completed_orders: int = Field(
        description="Of those, the ones completed within 60 days of their purchase"
    )
    conversion_rate: Decimal | None = Field(
        description="completed_orders / billable_clicks, a fraction; null without clicks"
    )
    total_amount: Decimal = Field(description="Amount of the range's orders, refunds left out")
    held_orders: int = Field(
        description="Orders placed in the range held for review by a fraud rule (not in `orders`)"
    )
    declined_orders: int = Field(
        description="Orders placed in the range declined by a cap (not in `orders`)"
    )


@router.get("/overview", response_model_by_alias=True)
async def overview_report(
    principal: PrincipalDep,
    resources: ResourcesDep,
    days: Annotated[DayRange, Depends()],
    publisher: Annotated[PublisherChoice, Depends()],
) -> OverviewOut:
    """The glossary's figures: this month's estimated commission, last month's income, the
    balance, and clicks, orders, conversion rate and total amount over the range (days in
    the period time zone, named in ``time_zone``)."""
    tz = resources.settings.period_tz
    first, last = ranges.bounded_day_range(days.first, days.last, today(tz))
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher.publisher_id)
    found = await overview.overview(resources.pool, owner, first, last, tz, datetime.now(UTC))
    return overview_out(found)


def overview_out(found: overview.Overview) -> OverviewOut:
    return OverviewOut(
        publisher_id=found.publisher_id,
        first_day=found.first_day,
        last_day=found.last_day,
        time_zone=zone_name(found.tz),
        this_month=str(found.this_month),
        this_month_estimated_commission=found.this_month_estimated_commission,
        last_month=str(found.last_month),
        income_last_month=found.income_last_month,
        account_balance=found.account_balance,
        clicks=found.clicks,
        billable_clicks=found.billable_clicks,
        unique_clicks=found.unique_clicks,
        flagged_clicks=found.flagged_clicks,
        orders=found.orders.orders,
        completed_orders=found.orders.completed,
        conversion_rate=found.conversion_rate,
        total_amount=found.orders.amount,
        held_orders=found.screened.held,
        declined_orders=found.screened.declined,
    )
