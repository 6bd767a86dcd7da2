"""Routes: income by calculation period, as JSON (``/reports/income``) and CSV
(``/reports/income.csv``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from app.api.bodies import JsonRoute
from app.api.deps import PrincipalDep, ResourcesDep
from app.api.params import BomFlag, PeriodRange, PublisherChoice
from app.api.reports import IncomeOut, PeriodIncomeOut
from app.api.reports.download import csv_response
from app.api.scope import acting_for
from app.reports import exports, income, ranges
from app.traffic.days import zone_name

router = APIRouter(prefix="/reports", route_class=JsonRoute, tags=["reports"])


async def _income(
    principal: PrincipalDep,
    resources: ResourcesDep,
    periods: PeriodRange,
    publisher: PublisherChoice,
) -> tuple[int, list[income.PeriodIncome]]:
    """The publisher and its periods: the range checked first, then the publisher."""
    tz, now = resources.settings.period_tz, datetime.now(UTC)
    first, last = ranges.period_range(periods.first, periods.last, now, tz)
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher.publisher_id)
        found = await income.income_by_period(conn, owner, first, last, tz, now)
    return owner, found


def period_out(found: income.PeriodIncome) -> PeriodIncomeOut:
    return PeriodIncomeOut(
        period=str(found.period),
        first_day=found.period.start_date,
        last_day=found.period.last_date,
        closed=found.closed,
        state=found.state,
        closed_at=found.closed_at,
        orders=found.orders,
        order_amount=found.order_amount,
        completed_sales=found.completed_sales,
        credited=found.credited,
        charged_back=found.charged_back,
        partial_refunds=found.partial_refunds,
        incentive_adjustments=found.incentive_adjustments,
        net=found.net,
        estimated_commission=found.estimated_commission,
        rate_source=found.rate_source.value,
        credited_at_override=found.credited_at_override,
    )


@router.get("/income")
async def income_report(
    principal: PrincipalDep,
    resources: ResourcesDep,
    periods: Annotated[PeriodRange, Depends()],
    publisher: Annotated[PublisherChoice, Depends()],
) -> IncomeOut:
    """Income by calculation period (default: the last 12, the current one included); the
    periods' days and times are in the period time zone, named in ``time_zone``."""
    owner, found = await _income(principal, resources, periods, publisher)
    return IncomeOut(
        publisher_id=owner,
        time_zone=zone_name(resources.settings.period_tz),
        periods=[period_out(p) for p in found],
    )


@router.get("/income.csv", response_class=StreamingResponse)
async def income_csv(
    principal: PrincipalDep,
    resources: ResourcesDep,
    periods: Annotated[PeriodRange, Depends()],
    csv: Annotated[BomFlag, Depends()],
    publisher: Annotated[PublisherChoice, Depends()],
) -> StreamingResponse:
    _, found = await _income(principal, resources, periods, publisher)
    tz = resources.settings.period_tz
    return csv_response(exports.income_csv(found, tz, bom=csv.bom))
