"""Money: a publisher's balance, ledger, estimates and income; an admin closes calculation
periods. Withdrawals: ``app/api/withdrawals.py``."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from app.accounts.publishers import get_publisher
from app.api.bodies import JsonRoute
from app.api.deps import AdminDep, NowDep, PrincipalDep, ResourcesDep, actor_of
from app.api.params import PERIOD_PATTERN, Cursor, Id, PeriodText, PublisherId
from app.api.scope import acting_for
from app.api.zones import TimeZoneName, in_zone
from app.audit.fields import closes_recorder
from app.caps.screening import order_screening
from app.errors import NotFound
from app.money import closing, earnings, ledger
from app.money.closing import PeriodClose
from app.money.ledger import EntryKind
from app.money.periods import Month, Period
from app.reports.balance import balance_status
from app.traffic.days import zone_name

router = APIRouter(route_class=JsonRoute, tags=["money"])


class WithdrawalRulesOut(BaseModel):
    minimum_balance: Decimal = Field(description="The withdrawable balance must be above this.")
    fee: Decimal
    last_day: int = Field(description="Requests are taken on days 1 to this of a month.")
    next_request_day: date = Field(description="Today when requests are taken, else the 1st.")
    preceding_months_only: bool = Field(
        description="Only what was booked before this calendar month can be withdrawn."
    )
    payment_days: int = Field(description="A withdrawal is paid about this many days after.")


class BalanceOut(BaseModel):
    publisher_id: int
    balance: Decimal = Field(description="The sum of the ledger.")
    withdrawable: Decimal = Field(description="What a withdrawal may take now, fee included.")
    can_withdraw: bool = Field(description="Today is a request day and withdrawable > minimum.")
    withdrawal: WithdrawalRulesOut
    time_zone: TimeZoneName


class EstimateOut(BaseModel):
    publisher_id: int
    month: str
    orders: int
    sales: Decimal
    estimated_commission: Decimal
    orders_without_plan: int
    time_zone: TimeZoneName


class IncomeOut(BaseModel):
    publisher_id: int
    month: str
    credited: Decimal
    charged_back: Decimal = Field(description="Chargebacks and partial refunds.")
    adjusted: Decimal = Field(description="Incentive adjustments (signed).")
    net: Decimal
    time_zone: TimeZoneName


class SummaryOut(BaseModel):
    publisher_id: int
    balance: Decimal
    this_month: EstimateOut
    last_month: IncomeOut
    time_zone: TimeZoneName


class EntryOut(BaseModel):
    id: int
    kind: EntryKind
    amount: Decimal
    order_id: int | None
    withdrawal_id: int | None
    period: str | None
    effective_at: datetime
    detail: dict[str, str | bool]
    created_at: datetime


class EntryPage(BaseModel):
    items: list[EntryOut]
    next_after: int | None
    time_zone: TimeZoneName


class PeriodCloseOut(BaseModel):
    publisher_id: int
    period: str
    sales: Decimal = Field(
        description="The period's completed sales when it was closed: the next period's "
        "incentive (later refunds and late completions change them, and the incentive)."
    )
    credited: Decimal
    charged_back: Decimal = Field(description="Chargebacks and partial refunds (<= 0).")
    adjusted: Decimal = Field(description="Incentive adjustments (signed).")
    orders_credited: int
    orders_charged_back: int = Field(description="Orders charged back, fully or partly.")
    orders_adjusted: int
    orders_without_plan: int
    closed_at: datetime
    time_zone: TimeZoneName


class PublisherCloseOut(BaseModel):
    publisher_id: int
    outcome: closing.Outcome
    periods: list[str] = Field(description="The periods closed now, oldest first.")
    reason: str | None = Field(default=None, description="Why it failed.")


class CloseOut(BaseModel):
    period: str
    publishers: int = Field(description="Publishers closed, already closed, or failed.")
    already_closed: int
    skipped: int = Field(description="Publishers whose closed periods start after this one.")
    failed: int = Field(description="Publishers left as they were: close again to retry.")
    closed: list[PeriodCloseOut] = Field(description="Periods closed now (earlier ones too).")
    results: list[PublisherCloseOut] = Field(description="What the close did, per publisher.")
    time_zone: TimeZoneName


def _month(text: str | None, default: Month) -> Month:
    """The ``month`` parameter; a name that is not a month raises ``PeriodError`` (422)."""
    return default if text is None else Month.parse(text, field="month")


def _estimate_out(publisher_id: int, found: earnings.MonthEstimate, tz: tzinfo) -> EstimateOut:
    return EstimateOut(
        publisher_id=publisher_id,
        month=str(found.month),
        orders=found.orders,
        sales=found.sales,
        estimated_commission=found.estimated_commission,
        orders_without_plan=found.orders_without_plan,
        time_zone=zone_name(tz),
    )


def _income_out(publisher_id: int, found: earnings.MonthIncome, tz: tzinfo) -> IncomeOut:
    return IncomeOut(
        publisher_id=publisher_id,
        month=str(found.month),
        credited=found.credited,
        charged_back=found.charged_back,
        adjusted=found.adjusted,
        net=found.net,
        time_zone=zone_name(tz),
    )


def _close_out(found: PeriodClose, tz: tzinfo) -> PeriodCloseOut:
    return PeriodCloseOut(
        publisher_id=found.publisher_id,
        period=str(found.period),
        sales=found.sales,
        credited=found.credited,
        charged_back=found.charged_back,
        adjusted=found.adjusted,
        orders_credited=found.orders_credited,
        orders_charged_back=found.orders_charged_back,
        orders_adjusted=found.orders_adjusted,
        orders_without_plan=found.orders_without_plan,
        closed_at=in_zone(found.closed_at, tz),
        time_zone=zone_name(tz),
    )


@router.get("/money/balance")
async def get_balance(
    principal: PrincipalDep, resources: ResourcesDep, now: NowDep, publisher_id: PublisherId = None
) -> BalanceOut:
    """The account balance (the sum of the publisher's ledger) and the part of it that can be
    withdrawn now: what was booked before this calendar month."""
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        found = await balance_status(conn, owner, resources.settings, now)
    calendar = found.calendar
    return BalanceOut(
        publisher_id=owner,
        balance=found.balance,
        withdrawable=found.withdrawable,
        can_withdraw=found.can_withdraw,
        withdrawal=WithdrawalRulesOut(
            minimum_balance=found.minimum_balance,
            fee=found.fee,
            last_day=calendar.last_day,
            next_request_day=found.next_request_day,
            preceding_months_only=calendar.preceding_months_only,
            payment_days=calendar.payment_days,
        ),
        time_zone=zone_name(calendar.tz),
    )


@router.get("/money/estimate")
async def get_estimate(
    principal: PrincipalDep,
    resources: ResourcesDep,
    month: PeriodText = None,
    publisher_id: PublisherId = None,
) -> EstimateOut:
    """Estimated commission of the orders placed in a calendar month (default: this one)."""
    tz = resources.settings.period_tz
    now = datetime.now(UTC)
    wanted = _month(month, Month.containing(now, tz))
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        found = await earnings.estimate_month(conn, owner, wanted, tz, now)
    return _estimate_out(owner, found, tz)


@router.get("/money/income")
async def get_income(
    principal: PrincipalDep,
    resources: ResourcesDep,
    month: PeriodText = None,
    publisher_id: PublisherId = None,
) -> IncomeOut:
    """Credits and chargebacks booked in a calendar month (default: last month)."""
    tz = resources.settings.period_tz
    wanted = _month(month, Month.containing(datetime.now(UTC), tz).previous())
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        found = await earnings.income_month(conn, owner, wanted, tz)
    return _income_out(owner, found, tz)


@router.get("/money/summary")
async def get_summary(
    principal: PrincipalDep, resources: ResourcesDep, publisher_id: PublisherId = None
) -> SummaryOut:
    """Balance, this month's estimated commission and last month's income, in one call."""
    tz = resources.settings.period_tz
    now = datetime.now(UTC)
    this_month = Month.containing(now, tz)
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        current = await ledger.balance(conn, owner)
        estimate = await earnings.estimate_month(conn, owner, this_month, tz, now)
        income = await earnings.income_month(conn, owner, this_month.previous(), tz)
    return SummaryOut(
        publisher_id=owner,
        balance=current,
        this_month=_estimate_out(owner, estimate, tz),
        last_month=_income_out(owner, income, tz),
        time_zone=zone_name(tz),
    )


@router.get("/money/ledger")
async def get_ledger(
    principal: PrincipalDep,
    resources: ResourcesDep,
    publisher_id: PublisherId = None,
    after: Annotated[Cursor, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EntryPage:
    tz = resources.settings.period_tz
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        page = await ledger.list_entries(conn, owner, after=after, limit=limit)
    return EntryPage(
        items=[
            EntryOut(
                id=e.id,
                kind=e.kind,
                amount=e.amount,
                order_id=e.order_id,
                withdrawal_id=e.withdrawal_id,
                period=e.period,
                effective_at=in_zone(e.effective_at, tz),
                detail=e.detail,
                created_at=in_zone(e.created_at, tz),
            )
            for e in page
        ],
        next_after=page[-1].id if len(page) == limit else None,
        time_zone=zone_name(tz),
    )


@router.get("/money/periods")
async def get_periods(
    principal: PrincipalDep, resources: ResourcesDep, publisher_id: PublisherId = None
) -> list[PeriodCloseOut]:
    """The publisher's closed calculation periods, oldest first."""
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        closes = await closing.list_closes(conn, owner)
    return [_close_out(c, resources.settings.period_tz) for c in closes]


@router.post("/periods/{period}/close")
async def close_period(
    period: Annotated[str, Path(pattern=PERIOD_PATTERN, description="YYYY-MM: starts the 10th")],
    admin: AdminDep,
    resources: ResourcesDep,
    publisher_id: Annotated[Id | None, Query(description="Omitted: every publisher")] = None,
) -> CloseOut:
    """Close a calculation period: post chargebacks, partial refunds, incentive adjustments
    and credits. Idempotent; closes any earlier unclosed period of the publisher first. Each
    publisher in a transaction of its own: one that fails is reported (``failed``, with the
    reason) and left as it was, the others are closed; closing again retries it. A period not
    ended yet, or before the publisher's first close, is a conflict (409)."""
    wanted = Period.parse(period, field="period")
    if publisher_id is not None:
        async with resources.pool.acquire() as conn:
            if await get_publisher(conn, publisher_id) is None:
                raise NotFound(f"publisher {publisher_id} does not exist")
    tz = resources.settings.period_tz
    report = await closing.close_period(
        resources.pool,
        wanted,
        tz,
        datetime.now(UTC),
        publisher_id=publisher_id,
        on_closed=closes_recorder(actor_of(admin)),  # each close's entries in its transaction
        screening=order_screening(resources.settings),
    )
    return CloseOut(
        period=str(report.period),
        publishers=report.publishers,
        already_closed=report.already_closed,
        skipped=report.skipped,
        failed=len(report.failed),
        closed=[_close_out(c, tz) for c in report.closed],
        results=[
            PublisherCloseOut(
                publisher_id=r.publisher_id,
                outcome=r.outcome,
                periods=[str(c.period) for c in r.closes],
                reason=r.reason,
            )
            for r in report.results
        ],
        time_zone=zone_name(tz),
    )
