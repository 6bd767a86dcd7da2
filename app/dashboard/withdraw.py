"""Withdrawals from the dashboard: what the withdrawals page shows, and a publisher's request.

A request calls the money functions the API's ``POST /api/v1/money/withdrawals`` calls
(``app.money.withdrawals.request_withdrawal`` with the plan's rules and the settings'
calendar), never the HTTP API, and appends its audit entry in the same transaction: a request
that is refused or rolled back leaves no entry, and none is made without one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.accounts.publishers import get_publisher
from app.audit.log import api_actor, record
from app.core.resources import Resources
from app.dashboard.sessions import DashboardSession
from app.money import withdrawals
from app.money.plans_store import withdrawal_rules
from app.money.withdrawal_rules import WithdrawalCalendar
from app.money.withdrawals import Withdrawal
from app.reports.balance import BalanceStatus, balance_status
from app.traffic.days import zone_name

PAGE = 500  # withdrawals read per query; a publisher makes at most one or two a month
SHOWN = 50  # the newest shown on the page


@dataclass(frozen=True)
class WithdrawalsView:
    publisher_name: str
    csrf: str
    time_zone: str  # the period time zone: the days shown are on its clock
    calendar: WithdrawalCalendar
    balance: BalanceStatus
    withdrawals: list[Withdrawal]  # newest first


async def request(
    resources: Resources, session: DashboardSession, amount: Decimal | None, now: datetime
) -> Withdrawal:
    """Request a withdrawal of ``amount`` (None: everything withdrawable) for the session's
    publisher. Raises ``WithdrawalRefused`` (409) saying which rule refuses it."""
    settings = resources.settings
    actor = api_actor(session.key_id, "publisher", session.publisher_id, via="dashboard")
    async with resources.pool.acquire() as conn, conn.transaction():
        rules = await withdrawal_rules(conn, now, settings.period_tz)
        made = await withdrawals.request_withdrawal(
            conn,
            session.publisher_id,
            amount,
            rules=rules,
            calendar=WithdrawalCalendar.from_settings(settings),
            now=now,
            actor=actor.name,
        )
        after = {"amount": made.amount, "fee": made.fee, "payout": made.payout}
        await record(
            conn,
            actor,
            "withdrawal.request",
            "withdrawal",
            made.id,
            after={**after, "status": made.status},
        )
    return made


async def _newest(resources: Resources, owner: int) -> list[Withdrawal]:
    """The publisher's newest ``SHOWN`` withdrawals, newest first (the store lists oldest
    first, by pages)."""
    found: list[Withdrawal] = []
    async with resources.pool.acquire() as conn:
        after = 0
        while True:
            page = await withdrawals.list_withdrawals(conn, owner, after=after, limit=PAGE)
            found = (found + page)[-SHOWN:]
            if len(page) < PAGE:
                return found[::-1]
            after = page[-1].id


async def withdrawals_view(
    resources: Resources, session: DashboardSession, now: datetime
) -> WithdrawalsView:
    """The withdrawals page at ``now``: the balance, what can be withdrawn, the list."""
    settings, owner = resources.settings, session.publisher_id
    async with resources.pool.acquire() as conn:
        publisher = await get_publisher(conn, owner)
        assert publisher is not None  # a key's publisher is never deleted
        status = await balance_status(conn, owner, settings, now)
    return WithdrawalsView(
        publisher_name=publisher.name,
        csrf=session.csrf,
        time_zone=zone_name(settings.period_tz),
        calendar=WithdrawalCalendar.from_settings(settings),
        balance=status,
        withdrawals=await _newest(resources, owner),
    )
