"""Reports: traffic (JSON and CSV), Live Order Tracking (CSV), income by period (JSON and
CSV) and the overview. A publisher key reads its own; an admin key names the publisher.
Days are UTC days; ranges include both ends."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from app.api.deps import PrincipalDep, ResourcesDep
from app.api.params import PRINTABLE
from app.api.scope import acting_for
from app.errors import InvalidInput
from app.money.periods import Period, periods_between
from app.orders.status import OrderStatus
from app.reports import csvout, income, orders, overview
from app.traffic import counts
from app.traffic.counts import Dimension, TrafficQuery, TrafficRow

router = APIRouter(prefix="/reports", tags=["reports"])

DEFAULT_DAYS = 30
DIMENSIONS = "|".join(d.value for d in Dimension)
PublisherParam = Annotated[int | None, Query(ge=1, description="Admin keys only")]
FromParam = Annotated[
    date | None,
    Query(alias="from", description="First UTC day (default: 29 days before `to`)"),
]
ToParam = Annotated[date | None, Query(alias="to", description="Last UTC day, included (today)")]
Tracking = Annotated[str | None, Query(max_length=128, pattern=PRINTABLE)]
LinkParam = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,32}$", description="Link code")]
GroupBy = Annotated[
    str,
    Query(
        pattern=rf"^(({DIMENSIONS})(,({DIMENSIONS}))*)?$",
        description="Comma-separated, in order: day, link, af, cn, cv, dp (dp: raw clicks, "
        "at most 31 days); empty: totals only",
    ),
]
BomParam = Annotated[
    bool, Query(description="Start with a UTF-8 byte order mark (for Excel on Windows)")
]


def day_range(first: date | None, last: date | None) -> tuple[date, date]:
    """The range asked for; by default the last 30 days (today included)."""
    for name, day in (("from", first), ("to", last)):
        if day is not None and not counts.FIRST_DAY <= day <= counts.LAST_DAY:
            raise InvalidInput(f"{name}: days run from {counts.FIRST_DAY} to {counts.LAST_DAY}")
    last = last or datetime.now(UTC).date()
    first = first or max(counts.FIRST_DAY, last - timedelta(days=DEFAULT_DAYS - 1))
    if last < first:
        raise InvalidInput("to: the range ends before it starts")
    return first, last


def parse_group_by(text: str) -> tuple[Dimension, ...]:
    dims = tuple(Dimension(part) for part in text.split(",") if part)
    if len(set(dims)) != len(dims):
        raise InvalidInput("group_by: a dimension is named twice")
    return dims


def json_response(document: dict[str, Any]) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


def csv_response(chunks: AsyncIterator[bytes], filename: str) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# -- traffic ---------------------------------------------------------------------------------


class TrafficRowOut(BaseModel):
    day: date | None = None
    link: str | None = None
    af: str | None = None
    cn: str | None = None
    cv: str | None = None
    dp: str | None = None
    clicks: int
    billable_clicks: int
    unique_clicks: int
    flagged_clicks: int


class TrafficOut(BaseModel):
    publisher_id: int
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    group_by: list[Dimension]
    source: str = Field(description="`rollups`, or `clicks` for a report by dp")
    rows: list[TrafficRowOut]
    truncated: bool = Field(description="More rows than `limit`: ask for the CSV")
    totals: TrafficRowOut


def traffic_header(group_by: Sequence[Dimension]) -> list[str]:
    counts = ["clicks", "billable_clicks", "unique_clicks", "flagged_clicks"]
    return [d.value for d in group_by] + counts


async def traffic_cells(
    rows: AsyncIterable[TrafficRow], group_by: Sequence[Dimension]
) -> AsyncIterator[list[csvout.Cell]]:
    async for row in rows:
        dims: list[csvout.Cell] = [row.value(d) for d in group_by]
        yield [*dims, row.clicks, row.billable, row.unique_clicks, row.flagged]


async def _traffic_query(
    principal: PrincipalDep,
    resources: ResourcesDep,
    first: date | None,
    last: date | None,
    group_by: str,
    publisher_id: int | None,
    filters: dict[str, str | None],
) -> TrafficQuery:
    first, last = day_range(first, last)
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
    query = TrafficQuery(owner, first, last, parse_group_by(group_by), **filters)
    try:
        query.check()
    except counts.RangeError as exc:
        raise InvalidInput(f"from: {exc}") from None
    return query


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


@router.get("/traffic", response_model=TrafficOut, response_model_exclude_unset=True)
async def traffic_report(
    principal: PrincipalDep,
    resources: ResourcesDep,
    first: FromParam = None,
    last: ToParam = None,
    group_by: GroupBy = "day",
    link: LinkParam = None,
    af: Tracking = None,
    cn: Tracking = None,
    cv: Tracking = None,
    dp: Tracking = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 5000,
    publisher_id: PublisherParam = None,
) -> Response:
    """Clicks, billable, unique and flagged clicks per group, from the rollups (by dp: from
    raw clicks). Unique clicks: first billable click of a session per (day, link, af, cn,
    cv), added up over the groups."""
    filters = {"link": link, "af": af, "cn": cn, "cv": cv, "dp": dp}
    query = await _traffic_query(principal, resources, first, last, group_by, publisher_id, filters)
    async with resources.pool.acquire() as conn:
        rows = await counts.traffic_report(conn, query, limit=limit + 1)
        if len(rows) > limit:  # else the rows add up to the totals
            whole = dataclasses.replace(query, group_by=())
            total = counts.totals(await counts.traffic_report(conn, whole))
        else:
            total = counts.totals(rows)
    # Built directly (tens of thousands of rows): the same document as ``TrafficOut``.
    return json_response(
        {
            "publisher_id": query.publisher_id,
            "from": query.first_day.isoformat(),
            "to": query.last_day.isoformat(),
            "group_by": [d.value for d in query.group_by],
            "source": "clicks" if query.from_raw_clicks else "rollups",
            "rows": [traffic_row_json(r, query.group_by) for r in rows[:limit]],
            "truncated": len(rows) > limit,
            "totals": traffic_row_json(total, ()),
        }
    )


@router.get("/traffic.csv", response_class=StreamingResponse)
async def traffic_csv(
    principal: PrincipalDep,
    resources: ResourcesDep,
    first: FromParam = None,
    last: ToParam = None,
    group_by: GroupBy = "day",
    link: LinkParam = None,
    af: Tracking = None,
    cn: Tracking = None,
    cv: Tracking = None,
    dp: Tracking = None,
    bom: BomParam = False,
    publisher_id: PublisherParam = None,
) -> StreamingResponse:
    """The traffic report as CSV: the group's columns, then clicks, billable_clicks,
    unique_clicks, flagged_clicks; every row, streamed."""
    filters = {"link": link, "af": af, "cn": cn, "cv": cv, "dp": dp}
    query = await _traffic_query(principal, resources, first, last, group_by, publisher_id, filters)
    rows = traffic_cells(counts.iter_traffic(resources.pool, query), query.group_by)
    chunks = csvout.csv_chunks(traffic_header(query.group_by), rows, bom=bom)
    return csv_response(chunks, f"traffic-{query.first_day}-{query.last_day}.csv")


# -- Live Order Tracking ---------------------------------------------------------------------


@router.get("/orders.csv", response_class=StreamingResponse)
async def live_order_tracking_csv(
    principal: PrincipalDep,
    resources: ResourcesDep,
    first: FromParam = None,
    last: ToParam = None,
    date_type: Annotated[
        orders.DateBasis,
        Query(description="`order`: by order time; `transaction`: by completion time"),
    ] = orders.DateBasis.order,
    status: Annotated[list[OrderStatus] | None, Query(description="Any of these")] = None,
    link: LinkParam = None,
    af: Annotated[
        str | None, Query(max_length=128, pattern=PRINTABLE, description="Tracking id")
    ] = None,
    cn: Tracking = None,
    cv: Tracking = None,
    dp: Tracking = None,
    bom: BomParam = False,
    publisher_id: PublisherParam = None,
) -> StreamingResponse:
    """Live Order Tracking: one row per order with its order and transaction times (UTC),
    status, amount, commission and the tracking strings af, cn, cv, dp; streamed."""
    first, last = day_range(first, last)
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
    export = orders.OrderExport(
        owner,
        first,
        last,
        basis=date_type,
        statuses=tuple(status or ()),
        link=link,
        af=af,
        cn=cn,
        cv=cv,
        dp=dp,
    )
    settings = resources.settings
    rows = orders.order_rows(resources.pool, export, settings.period_tz, datetime.now(UTC))
    chunks = csvout.csv_chunks(orders.COLUMNS, rows, bom=bom)
    return csv_response(chunks, f"live-orders-{first}-{last}.csv")


# -- income ----------------------------------------------------------------------------------

PeriodParam = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")]


class PeriodIncomeOut(BaseModel):
    period: str = Field(description="YYYY-MM: from the 10th of that month to the 9th of the next")
    first_day: date
    last_day: date
    closed: bool
    state: str = Field(description="`closed`, `running` (not ended) or `ended` (to close)")
    closed_at: datetime | None
    orders: int = Field(description="Attributed orders placed in the period")
    order_amount: Decimal
    completed_sales: Decimal = Field(description="Credited by the close; open: would be now")
    credited: Decimal
    charged_back: Decimal
    net: Decimal
    estimated_commission: Decimal | None = Field(description="Open periods only")


class IncomeOut(BaseModel):
    publisher_id: int
    periods: list[PeriodIncomeOut]


async def _income(
    principal: PrincipalDep,
    resources: ResourcesDep,
    first: str | None,
    last: str | None,
    publisher_id: int | None,
) -> tuple[int, list[income.PeriodIncome]]:
    tz = resources.settings.period_tz
    now = datetime.now(UTC)
    default_first, default_last = income.default_periods(now, tz)
    try:
        last_period = Period.parse(last) if last else default_last
        first_period = Period.parse(first) if first else default_first
    except ValueError as exc:
        raise InvalidInput(f"period: {exc}") from None
    if last_period < first_period:
        raise InvalidInput("to: the range ends before it starts")
    count = len(periods_between(first_period, last_period))
    if count > income.MAX_PERIODS:
        raise InvalidInput(f"from: {count} periods; at most {income.MAX_PERIODS}")
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        found = await income.income_by_period(conn, owner, first_period, last_period, tz, now)
    return owner, found


@router.get("/income")
async def income_report(
    principal: PrincipalDep,
    resources: ResourcesDep,
    first: Annotated[PeriodParam, Query(alias="from")] = None,
    last: Annotated[PeriodParam, Query(alias="to")] = None,
    publisher_id: PublisherParam = None,
) -> IncomeOut:
    """Income by calculation period (default: the last 12, the current one included)."""
    owner, found = await _income(principal, resources, first, last, publisher_id)
    return IncomeOut(
        publisher_id=owner,
        periods=[
            PeriodIncomeOut(
                period=str(p.period),
                first_day=p.period.start_date,
                last_day=p.period.last_date,
                closed=p.closed,
                state=p.state,
                closed_at=p.closed_at,
                orders=p.orders,
                order_amount=p.order_amount,
                completed_sales=p.completed_sales,
                credited=p.credited,
                charged_back=p.charged_back,
                net=p.net,
                estimated_commission=p.estimated_commission,
            )
            for p in found
        ],
    )


async def _income_cells(found: list[income.PeriodIncome]) -> AsyncIterator[list[csvout.Cell]]:
    for period in found:
        yield list(period.cells())


@router.get("/income.csv", response_class=StreamingResponse)
async def income_csv(
    principal: PrincipalDep,
    resources: ResourcesDep,
    first: Annotated[PeriodParam, Query(alias="from")] = None,
    last: Annotated[PeriodParam, Query(alias="to")] = None,
    bom: BomParam = False,
    publisher_id: PublisherParam = None,
) -> StreamingResponse:
    _, found = await _income(principal, resources, first, last, publisher_id)
    chunks = csvout.csv_chunks(income.COLUMNS, _income_cells(found), bom=bom)
    name = f"income-{found[0].period}-{found[-1].period}.csv"
    return csv_response(chunks, name)


# -- overview --------------------------------------------------------------------------------


class OverviewOut(BaseModel):
    publisher_id: int
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
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
    completed_orders: int
    conversion_rate: Decimal | None = Field(
        description="completed_orders / billable_clicks, a fraction; null without clicks"
    )
    total_amount: Decimal = Field(description="Amount of the range's orders, refunds left out")


@router.get("/overview", response_model_by_alias=True)
async def overview_report(
    principal: PrincipalDep,
    resources: ResourcesDep,
    first: FromParam = None,
    last: ToParam = None,
    publisher_id: PublisherParam = None,
) -> OverviewOut:
    """The glossary's figures: this month's estimated commission, last month's income, the
    balance, and clicks, orders, conversion rate and total amount over the range."""
    first, last = day_range(first, last)
    if (last - first).days + 1 > counts.MAX_DAYS:
        raise InvalidInput(f"from: at most {counts.MAX_DAYS} days")
    tz = resources.settings.period_tz
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
    found = await overview.overview(resources.pool, owner, first, last, tz, datetime.now(UTC))
    return overview_out(found)


def overview_out(found: overview.Overview) -> OverviewOut:
    return OverviewOut(
        publisher_id=found.publisher_id,
        first_day=found.first_day,
        last_day=found.last_day,
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
    )
