"""Withdrawals: a publisher requests and lists its own; an admin approves, pays or rejects.

requested ─▶ approved ─▶ paid            POST /withdrawals/{id}/approve, /pay
    └────────────┴─────▶ rejected        POST /withdrawals/{id}/reject (money given back)
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app.accounts.apikeys import Principal
from app.api.bodies import JsonRoute
from app.api.deps import AdminDep, NowDep, PrincipalDep, ResourcesDep, actor_of
from app.api.params import PRINTABLE, Cursor, Id, PublisherId
from app.api.scope import acting_for
from app.api.zones import TimeZoneName, in_zone
from app.audit.fields import WITHDRAWAL, record_change
from app.core.db import Conn
from app.errors import NotFound
from app.money import withdrawals
from app.money.plans_store import withdrawal_rules
from app.money.withdrawal_rules import (
    MAX_REASON_LENGTH,
    MAX_REFERENCE_LENGTH,
    WithdrawalCalendar,
    WithdrawalStatus,
    api_actor,
)
from app.settings import Settings
from app.traffic.days import zone_name

router = APIRouter(route_class=JsonRoute, tags=["withdrawals"])

WithdrawalId = Annotated[Id, Path(description="The withdrawal's id")]
Statuses = Annotated[
    list[WithdrawalStatus] | None,
    Query(alias="status", description="Repeat for several; default: every status"),
]


class WithdrawalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    amount: Decimal | None = Field(
        default=None,
        gt=0,
        max_digits=14,
        decimal_places=2,
        description="Default: everything withdrawable.",
    )
    publisher_id: Id | None = Field(default=None, description="Admin keys only")


class PayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    reference: str = Field(
        min_length=1,
        max_length=MAX_REFERENCE_LENGTH,
        pattern=PRINTABLE,
        description="The bank transfer's reference.",
    )


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    reason: str = Field(
        min_length=1, max_length=MAX_REASON_LENGTH, pattern=PRINTABLE, description="Why."
    )


class WithdrawalOut(BaseModel):
    id: int
    publisher_id: int
    amount: Decimal = Field(description="Taken from the balance, fee included.")
    fee: Decimal
    payout: Decimal = Field(description="Paid to the publisher: amount - fee.")
    status: WithdrawalStatus
    requested_at: datetime
    requested_by: str | None = Field(description="'key:<id>' of the API key; null: unknown")
    payment_due: date = Field(description="About CLICKTRACK_WITHDRAWAL_PAYMENT_DAYS after.")
    approved_at: datetime | None
    approved_by: str | None = Field(description="'key:<id>' or 'cli'")
    paid_at: datetime | None
    paid_by: str | None
    payment_reference: str | None
    rejected_at: datetime | None
    rejected_by: str | None
    reject_reason: str | None
    time_zone: TimeZoneName


class WithdrawalPage(BaseModel):
    items: list[WithdrawalOut]
    next_after: int | None
    time_zone: TimeZoneName


def withdrawal_out(found: withdrawals.Withdrawal, settings: Settings) -> WithdrawalOut:
    """The withdrawal as answered: its times and days on the clock of the period time zone."""
    tz = settings.period_tz
    due = WithdrawalCalendar.from_settings(settings).payment_due(found.requested_at)
    return WithdrawalOut(
        id=found.id,
        publisher_id=found.publisher_id,
        amount=found.amount,
        fee=found.fee,
        payout=found.payout,
        status=found.status,
        requested_at=in_zone(found.requested_at, tz),
        requested_by=found.requested_by,
        payment_due=due,
        approved_at=in_zone(found.approved_at, tz),
        approved_by=found.approved_by,
        paid_at=in_zone(found.paid_at, tz),
        paid_by=found.paid_by,
        payment_reference=found.payment_reference,
        rejected_at=in_zone(found.rejected_at, tz),
        rejected_by=found.rejected_by,
        reject_reason=found.reject_reason,
        time_zone=zone_name(tz),
    )


async def record_step(
    conn: Conn,
    principal: Principal,
    verb: str,
    before: withdrawals.Withdrawal | None,
    after: withdrawals.Withdrawal,
) -> None:
    """The audit entry of a withdrawal's step ``verb`` (request, approve, pay, reject), in
    the caller's transaction."""
    await record_change(
        conn,
        actor_of(principal),
        "withdrawal",
        verb,
        before,
        after,
        WITHDRAWAL,
        publisher_id=after.publisher_id,
    )


def _page(found: list[withdrawals.Withdrawal], limit: int, settings: Settings) -> WithdrawalPage:
    return WithdrawalPage(
        items=[withdrawal_out(w, settings) for w in found],
        next_after=found[-1].id if len(found) == limit else None,
        time_zone=zone_name(settings.period_tz),
    )


@router.post("/money/withdrawals", status_code=201)
async def create_withdrawal(
    principal: PrincipalDep,
    resources: ResourcesDep,
    now: NowDep,
    sent: Annotated[WithdrawalIn | None, Body()] = None,
) -> WithdrawalOut:
    """Withdraw from the balance (default: all that is withdrawable); the fee is part of the
    amount. Only on days 1 to CLICKTRACK_WITHDRAWAL_LAST_DAY of a month (409 otherwise)."""
    settings = resources.settings
    body = sent or WithdrawalIn()  # no body: the whole withdrawable balance
    async with resources.pool.acquire() as conn, conn.transaction():
        # Strict: a network's key reads its members' money but never requests theirs (each
        # publisher's balance is its own to withdraw).
        owner = await acting_for(conn, principal, body.publisher_id, allow_members=False)
        rules = await withdrawal_rules(conn, now, settings.period_tz)
        made = await withdrawals.request_withdrawal(
            conn,
            owner,
            body.amount,
            rules=rules,
            calendar=WithdrawalCalendar.from_settings(settings),
            now=now,
            actor=api_actor(principal.key_id),
        )
        await record_step(conn, principal, "request", None, made)
    return withdrawal_out(made, settings)


@router.get("/money/withdrawals")
async def list_own_withdrawals(
    principal: PrincipalDep,
    resources: ResourcesDep,
    publisher_id: PublisherId = None,
    status: Statuses = None,
    after: Annotated[Cursor, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> WithdrawalPage:
    """The publisher's withdrawals, oldest first."""
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        page = await withdrawals.list_withdrawals(
            conn, owner, statuses=status or (), after=after, limit=limit
        )
    return _page(page, limit, resources.settings)


@router.get("/withdrawals")
async def list_all_withdrawals(
    _admin: AdminDep,
    resources: ResourcesDep,
    status: Statuses = None,
    publisher_id: Annotated[Id | None, Query(description="Default: everyone")] = None,
    after: Annotated[Cursor, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> WithdrawalPage:
    """Every publisher's withdrawals, oldest first (admin). The operators' queue:
    ``?status=requested&status=approved``."""
    async with resources.pool.acquire() as conn:
        page = await withdrawals.list_withdrawals(
            conn, publisher_id, statuses=status or (), after=after, limit=limit
        )
    return _page(page, limit, resources.settings)


@router.get("/withdrawals/{withdrawal_id}")
async def get_withdrawal(
    withdrawal_id: WithdrawalId, _admin: AdminDep, resources: ResourcesDep
) -> WithdrawalOut:
    async with resources.pool.acquire() as conn:
        found = await withdrawals.get_withdrawal(conn, withdrawal_id)
    if found is None:
        raise NotFound(f"withdrawal {withdrawal_id} does not exist")
    return withdrawal_out(found, resources.settings)


@router.post("/withdrawals/{withdrawal_id}/approve")
async def approve_withdrawal(
    withdrawal_id: WithdrawalId, admin: AdminDep, resources: ResourcesDep, now: NowDep
) -> WithdrawalOut:
    """A requested withdrawal, approved for payment (409 from any other status)."""
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await withdrawals.get_withdrawal(conn, withdrawal_id)
        done = await withdrawals.approve(
            conn, withdrawal_id, actor=api_actor(admin.key_id), now=now
        )
        await record_step(conn, admin, "approve", before, done)
    return withdrawal_out(done, resources.settings)


@router.post("/withdrawals/{withdrawal_id}/pay")
async def pay_withdrawal(
    withdrawal_id: WithdrawalId, body: PayIn, admin: AdminDep, resources: ResourcesDep, now: NowDep
) -> WithdrawalOut:
    """An approved withdrawal, paid out: records the transfer's reference (409 from any
    other status). The money left the balance when it was requested."""
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await withdrawals.get_withdrawal(conn, withdrawal_id)
        done = await withdrawals.pay(
            conn, withdrawal_id, body.reference, actor=api_actor(admin.key_id), now=now
        )
        await record_step(conn, admin, "pay", before, done)
    return withdrawal_out(done, resources.settings)


@router.post("/withdrawals/{withdrawal_id}/reject")
async def reject_withdrawal(
    withdrawal_id: WithdrawalId,
    body: RejectIn,
    admin: AdminDep,
    resources: ResourcesDep,
    now: NowDep,
) -> WithdrawalOut:
    """A requested or approved withdrawal, refused: its amount and fee go back to the balance
    as two ledger rows (409 once paid or rejected)."""
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await withdrawals.get_withdrawal(conn, withdrawal_id)
        done = await withdrawals.reject(
            conn, withdrawal_id, body.reason, actor=api_actor(admin.key_id), now=now
        )
        await record_step(conn, admin, "reject", before, done)
    return withdrawal_out(done, resources.settings)
