"""Money: a publisher's balance, ledger, estimates, income and withdrawals; an admin closes
calculation periods."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from app.accounts.publishers import get_publisher
from app.api.deps import AdminDep, PrincipalDep, ResourcesDep
from app.api.params import PERIOD_PATTERN, PeriodText, PublisherId
from app.api.scope import acting_for
from app.errors import NotFound
from app.money import closing, earnings, ledger
from app.money.closing import PeriodClose
from app.money.ledger import EntryKind
from app.money.periods import Month, Period
from app.money.plans_store import withdrawal_rules

router = APIRouter(tags=["money"])


class WithdrawalRulesOut(BaseModel):
    minimum_balance: Decimal = Field(description="The balance must be above this.")
    fee: Decimal


class BalanceOut(BaseModel):
    publisher_id: int
    balance: Decimal
    can_withdraw: bool
    withdrawal: WithdrawalRulesOut


class EstimateOut(BaseModel):
    publisher_id: int
    month: str
    orders: int
    sales: Decimal
    estimated_commission: Decimal
    orders_without_plan: int


class IncomeOut(BaseModel):
    publisher_id: int
    month: str
    credited: Decimal
    charged_back: Decimal
    net: Decimal


class SummaryOut(BaseModel):
    publisher_id: int
    balance: Decimal
    this_month: EstimateOut
    last_month: IncomeOut


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


class WithdrawalIn(BaseModel):
    amount: Decimal | None = Field(
        default=None, gt=0, max_digits=14, decimal_places=2, description="Default: everything."
    )
    publisher_id: int | None = Field(default=None, ge=1, description="Admin keys only")


class WithdrawalOut(BaseModel):
    id: int
    publisher_id: int
    amount: Decimal = Field(description="Taken from the balance, fee included.")
    fee: Decimal
    payout: Decimal = Field(description="Paid to the publisher: amount - fee.")
    status: str
    requested_at: datetime


class WithdrawalPage(BaseModel):
    items: list[WithdrawalOut]
    next_after: int | None


class PeriodCloseOut(BaseModel):
    publisher_id: int
    period: str
    sales: Decimal = Field(description="Completed sales credited: the next period's incentive.")
    credited: Decimal
    charged_back: Decimal
    orders_credited: int
    orders_charged_back: int
    orders_without_plan: int
    closed_at: datetime


class CloseOut(BaseModel):
    period: str
    publishers: int
    already_closed: int
    skipped: int = Field(description="Publishers whose closed periods start after this one.")
    closed: list[PeriodCloseOut] = Field(description="Periods closed now (earlier ones too).")


def _month(text: str | None, default: Month) -> Month:
    """The ``month`` parameter; a name that is not a month raises ``PeriodError`` (422)."""
    return default if text is None else Month.parse(text, field="month")


def _estimate_out(publisher_id: int, found: earnings.MonthEstimate) -> EstimateOut:
    return EstimateOut(
        publisher_id=publisher_id,
        month=str(found.month),
        orders=found.orders,
        sales=found.sales,
        estimated_commission=found.estimated_commission,
        orders_without_plan=found.orders_without_plan,
    )


def _income_out(publisher_id: int, found: earnings.MonthIncome) -> IncomeOut:
    return IncomeOut(
        publisher_id=publisher_id,
        month=str(found.month),
        credited=found.credited,
        charged_back=found.charged_back,
        net=found.net,
    )


def _close_out(found: PeriodClose) -> PeriodCloseOut:
    return PeriodCloseOut(
        publisher_id=found.publisher_id,
        period=str(found.period),
        sales=found.sales,
        credited=found.credited,
        charged_back=found.charged_back,
        orders_credited=found.orders_credited,
        orders_charged_back=found.orders_charged_back,
        orders_without_plan=found.orders_without_plan,
        closed_at=found.closed_at,
    )


def _withdrawal_out(found: ledger.Withdrawal) -> WithdrawalOut:
    return WithdrawalOut(
        id=found.id,
        publisher_id=found.publisher_id,
        amount=found.amount,
        fee=found.fee,
        payout=found.payout,
        status=found.status,
        requested_at=found.requested_at,
    )


@router.get("/money/balance")
async def get_balance(
    principal: PrincipalDep, resources: ResourcesDep, publisher_id: PublisherId = None
) -> BalanceOut:
    """The account balance: the sum of the publisher's ledger, available to withdraw."""
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        current = await ledger.balance(conn, owner)
        rules = await withdrawal_rules(conn, datetime.now(UTC), resources.settings.period_tz)
    return BalanceOut(
        publisher_id=owner,
        balance=current,
        can_withdraw=current > rules.minimum_balance,
        withdrawal=WithdrawalRulesOut(minimum_balance=rules.minimum_balance, fee=rules.fee),
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
    return _estimate_out(owner, found)


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
    return _income_out(owner, found)


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
        this_month=_estimate_out(owner, estimate),
        last_month=_income_out(owner, income),
    )


@router.get("/money/ledger")
async def get_ledger(
    principal: PrincipalDep,
    resources: ResourcesDep,
    publisher_id: PublisherId = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EntryPage:
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
                effective_at=e.effective_at,
                detail=e.detail,
                created_at=e.created_at,
            )
            for e in page
        ],
        next_after=page[-1].id if len(page) == limit else None,
    )


@router.get("/money/periods")
async def get_periods(
    principal: PrincipalDep, resources: ResourcesDep, publisher_id: PublisherId = None
) -> list[PeriodCloseOut]:
    """The publisher's closed calculation periods, oldest first."""
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        closes = await closing.list_closes(conn, owner)
    return [_close_out(c) for c in closes]


@router.post("/money/withdrawals", status_code=201)
async def create_withdrawal(
    body: WithdrawalIn, principal: PrincipalDep, resources: ResourcesDep
) -> WithdrawalOut:
    """Withdraw from the balance (default: all of it); the fee is part of the amount."""
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, body.publisher_id)
        rules = await withdrawal_rules(conn, datetime.now(UTC), resources.settings.period_tz)
        made = await ledger.request_withdrawal(
            conn, owner, body.amount, minimum_balance=rules.minimum_balance, fee=rules.fee
        )
    return _withdrawal_out(made)


@router.get("/money/withdrawals")
async def list_withdrawals(
    principal: PrincipalDep,
    resources: ResourcesDep,
    publisher_id: PublisherId = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> WithdrawalPage:
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        page = await ledger.list_withdrawals(conn, owner, after=after, limit=limit)
    return WithdrawalPage(
        items=[_withdrawal_out(w) for w in page],
        next_after=page[-1].id if len(page) == limit else None,
    )


@router.post("/periods/{period}/close")
async def close_period(
    period: Annotated[str, Path(pattern=PERIOD_PATTERN, description="YYYY-MM: starts the 10th")],
    _admin: AdminDep,
    resources: ResourcesDep,
    publisher_id: Annotated[int | None, Query(ge=1, description="Omitted: every publisher")] = None,
) -> CloseOut:
    """Close a calculation period: post chargebacks and credits. Idempotent; closes any
    earlier unclosed period of the publisher first. A period not ended yet, or before the
    publisher's first close, is a conflict (409)."""
    wanted = Period.parse(period, field="period")
    if publisher_id is not None:
        async with resources.pool.acquire() as conn:
            if await get_publisher(conn, publisher_id) is None:
                raise NotFound(f"publisher {publisher_id} does not exist")
    report = await closing.close_period(
        resources.pool,
        wanted,
        resources.settings.period_tz,
        datetime.now(UTC),
        publisher_id=publisher_id,
    )
    return CloseOut(
        period=str(report.period),
        publishers=report.publishers,
        already_closed=report.already_closed,
        skipped=report.skipped,
        closed=[_close_out(c) for c in report.closed],
    )
