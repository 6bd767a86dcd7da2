"""Withdrawals in Postgres: requested by a publisher, approved, paid or rejected by an operator.

A request takes its amount off the balance at once, as two ledger rows (the payout and the
fee). Paying changes no money: the transfer is made outside clicktrack and its reference
recorded. Rejecting gives the money back with two more rows (``withdrawal_reversal``,
``fee_reversal``), so the ledger stays append-only and the balance its sum.

Locks, in this order: the publisher's ``accounts`` row (``ledger.lock_account``, whatever
posts to the ledger), then the withdrawal's row. A request and a rejection of one publisher
run one after the other; two operators' steps on one withdrawal too, the second seeing the
first's status.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from app.core.db import Conn
from app.errors import NotFound
from app.money.commission import ZERO, is_cents
from app.money.ledger import EntryKind, balance, lock_account
from app.money.plan import WithdrawalRules
from app.money.withdrawal_rules import (
    MAX_REASON_LENGTH,
    MAX_REFERENCE_LENGTH,
    Step,
    WithdrawalCalendar,
    WithdrawalRefused,
    WithdrawalStatus,
    check_step,
    operator_note,
)

# Kinds that give back what a withdrawal took: withdrawable at once, whenever booked.
_GIVEN_BACK = (EntryKind.withdrawal_reversal.value, EntryKind.fee_reversal.value)


@dataclass(frozen=True)
class Withdrawal:
    id: int
    publisher_id: int
    amount: Decimal  # taken from the balance
    fee: Decimal
    payout: Decimal  # what the publisher receives: amount - fee
    status: WithdrawalStatus
    requested_at: datetime
    requested_by: str | None  # None: made before steps were recorded
    approved_at: datetime | None = None
    approved_by: str | None = None
    paid_at: datetime | None = None
    paid_by: str | None = None
    payment_reference: str | None = None
    rejected_at: datetime | None = None
    rejected_by: str | None = None
    reject_reason: str | None = None


def _withdrawal(row: asyncpg.Record) -> Withdrawal:
    return Withdrawal(
        id=row["id"],
        publisher_id=row["publisher_id"],
        amount=row["amount"],
        fee=row["fee"],
        payout=row["payout"],
        status=WithdrawalStatus(row["status"]),
        requested_at=row["requested_at"],
        requested_by=row["requested_by"],
        approved_at=row["approved_at"],
        approved_by=row["approved_by"],
        paid_at=row["paid_at"],
        paid_by=row["paid_by"],
        payment_reference=row["payment_reference"],
        rejected_at=row["rejected_at"],
        rejected_by=row["rejected_by"],
        reject_reason=row["reject_reason"],
    )


async def withdrawable(
    conn: Conn, publisher_id: int, booked_before: datetime | None
) -> tuple[Decimal, Decimal]:
    """``(balance, withdrawable)``. Withdrawable: the balance less the money booked since
    ``booked_before`` (credits and any other entry that adds to the balance, except what a
    rejected withdrawal gave back), never below zero; the whole balance when None. Money
    taken out since (withdrawals, chargebacks) comes off what was booked before."""
    current = await balance(conn, publisher_id)
    if booked_before is None:
        return current, max(current, ZERO)
    fresh: Decimal = await conn.fetchval(
        """SELECT coalesce(sum(amount), 0.00) FROM ledger
           WHERE publisher_id = $1 AND effective_at >= $2 AND amount > 0
             AND kind <> ALL($3::text[])""",
        publisher_id,
        booked_before,
        list(_GIVEN_BACK),
    )
    return current, max(current - fresh, ZERO)


def _too_little(available: Decimal, current: Decimal, minimum: Decimal, note: str) -> str:
    if available == current:
        return f"the balance ({current}) must be above {minimum} to withdraw"
    return (
        f"the withdrawable balance ({available} of a balance of {current}; {note}) must be "
        f"above {minimum} to withdraw"
    )


async def request_withdrawal(
    conn: Conn,
    publisher_id: int,
    amount: Decimal | None,
    *,
    rules: WithdrawalRules,
    calendar: WithdrawalCalendar,
    now: datetime,
    actor: str,
) -> Withdrawal:
    """Withdraw ``amount`` (default: all that is withdrawable), of which the fee is the
    processing fee and the rest is paid out. Only on the days of the month the calendar
    allows; needs a withdrawable balance above the minimum; never overdraws."""
    if amount is not None and (not is_cents(amount) or amount <= 0):
        raise WithdrawalRefused("amount must be a positive number of dollars and cents")
    calendar.check_open(now)
    note = calendar.withheld_note(now)
    async with conn.transaction():
        await lock_account(conn, publisher_id)
        current, available = await withdrawable(conn, publisher_id, calendar.booked_before(now))
        if available <= rules.minimum_balance:
            raise WithdrawalRefused(_too_little(available, current, rules.minimum_balance, note))
        taken = available if amount is None else amount
        if taken > available:
            what = "the balance" if available == current else "the withdrawable balance"
            extra = "" if available == current else f"; {note}"
            raise WithdrawalRefused(f"amount {taken} is more than {what} ({available}{extra})")
        if taken <= rules.fee:
            raise WithdrawalRefused(f"amount {taken} does not cover the {rules.fee} withdrawal fee")
        row = await conn.fetchrow(
            """INSERT INTO withdrawals (publisher_id, amount, fee, payout, requested_at,
                   requested_by)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
            publisher_id,
            taken,
            rules.fee,
            taken - rules.fee,
            now,
            actor,
        )
        assert row is not None
        await _post(conn, row, EntryKind.withdrawal, EntryKind.fee, -1, now, {})
    return _withdrawal(row)


async def _post(
    conn: Conn,
    row: asyncpg.Record,
    payout_kind: EntryKind,
    fee_kind: EntryKind,
    sign: int,
    at: datetime,
    detail: dict[str, str],
) -> None:
    """The two ledger rows of a withdrawal: its payout and its fee, with ``sign``."""
    await conn.executemany(
        """INSERT INTO ledger (publisher_id, kind, amount, withdrawal_id, effective_at, detail)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (row["publisher_id"], kind.value, sign * part, row["id"], at, json.dumps(detail))
            for kind, part in ((payout_kind, row["payout"]), (fee_kind, row["fee"]))
        ],
    )


# What each step writes besides the status: its time ($3), who made it ($4), and its note
# ($5) when it has one.
_STEP_COLUMNS = {
    Step.approve: "approved_at = $3, approved_by = $4",
    Step.pay: "paid_at = $3, paid_by = $4, payment_reference = $5",
    Step.reject: "rejected_at = $3, rejected_by = $4, reject_reason = $5",
}


async def _take_step(
    conn: Conn, withdrawal_id: int, step: Step, actor: str, now: datetime, *note: str
) -> asyncpg.Record:
    """Lock the withdrawal, check the step is allowed from its status, and take it."""
    row = await conn.fetchrow(
        "SELECT status FROM withdrawals WHERE id = $1 FOR UPDATE", withdrawal_id
    )
    if row is None:
        raise NotFound(f"withdrawal {withdrawal_id} does not exist")
    check_step(withdrawal_id, WithdrawalStatus(row["status"]), step)
    updated = await conn.fetchrow(
        f"UPDATE withdrawals SET status = $2, {_STEP_COLUMNS[step]} WHERE id = $1 RETURNING *",
        withdrawal_id,
        step.target.value,
        now,
        actor,
        *note,
    )
    assert updated is not None
    return updated


async def approve(conn: Conn, withdrawal_id: int, *, actor: str, now: datetime) -> Withdrawal:
    """A requested withdrawal, approved for payment."""
    async with conn.transaction():
        row = await _take_step(conn, withdrawal_id, Step.approve, actor, now)
    return _withdrawal(row)


async def pay(
    conn: Conn, withdrawal_id: int, reference: str, *, actor: str, now: datetime
) -> Withdrawal:
    """Record that an approved withdrawal was paid out, with the transfer's reference."""
    reference = operator_note(reference, field="reference", max_length=MAX_REFERENCE_LENGTH)
    async with conn.transaction():
        row = await _take_step(conn, withdrawal_id, Step.pay, actor, now, reference)
    return _withdrawal(row)


async def reject(
    conn: Conn, withdrawal_id: int, reason: str, *, actor: str, now: datetime
) -> Withdrawal:
    """Refuse a withdrawal not yet paid and give its amount and fee back to the balance."""
    reason = operator_note(reason, field="reason", max_length=MAX_REASON_LENGTH)
    async with conn.transaction():
        publisher_id = await conn.fetchval(
            "SELECT publisher_id FROM withdrawals WHERE id = $1", withdrawal_id
        )
        if publisher_id is None:
            raise NotFound(f"withdrawal {withdrawal_id} does not exist")
        await lock_account(conn, publisher_id)
        row = await _take_step(conn, withdrawal_id, Step.reject, actor, now, reason)
        detail = {"reason": reason, "rejected_by": actor}
        await _post(
            conn, row, EntryKind.withdrawal_reversal, EntryKind.fee_reversal, 1, now, detail
        )
    return _withdrawal(row)


async def get_withdrawal(conn: Conn, withdrawal_id: int) -> Withdrawal | None:
    row = await conn.fetchrow("SELECT * FROM withdrawals WHERE id = $1", withdrawal_id)
    return None if row is None else _withdrawal(row)


async def list_withdrawals(
    conn: Conn,
    publisher_id: int | None,
    *,
    statuses: Collection[WithdrawalStatus] = (),
    after: int = 0,
    limit: int = 50,
) -> list[Withdrawal]:
    """A page of withdrawals by id: one publisher's (or everyone's when None), of the given
    statuses (every status when empty)."""
    rows = await conn.fetch(
        """SELECT * FROM withdrawals
           WHERE ($1::bigint IS NULL OR publisher_id = $1)
             AND (cardinality($2::text[]) = 0 OR status = ANY($2::text[]))
             AND id > $3
           ORDER BY id LIMIT $4""",
        publisher_id,
        [s.value for s in statuses],
        after,
        limit,
    )
    return [_withdrawal(r) for r in rows]
