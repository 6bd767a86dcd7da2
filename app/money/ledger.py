"""The ledger, balances and withdrawals.

Every change of a publisher's money is a ledger row, never an update: credits (completed
orders, when a period closes), chargebacks (credited orders later refunded, invalid or
disqualified), withdrawals and their fees. The balance is the sum of the ledger: a trigger
adds each row to ``accounts.balance`` in the same transaction (migrations/011_money.sql),
and other triggers refuse updates and deletes of ledger rows.

Whatever posts to a publisher's ledger first locks its ``accounts`` row (``lock_account``):
two withdrawals (or a withdrawal and a period close) for one publisher run one after the
other, so a balance checked is still the balance when the withdrawal is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg

from app.core.db import Conn
from app.errors import Conflict
from app.money.commission import ZERO, is_cents


class EntryKind(StrEnum):
    credit = "credit"
    chargeback = "chargeback"
    withdrawal = "withdrawal"
    fee = "fee"


@dataclass(frozen=True)
class Entry:
    id: int
    kind: EntryKind
    amount: Decimal
    order_id: int | None
    withdrawal_id: int | None
    period: str | None
    effective_at: datetime
    detail: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Withdrawal:
    id: int
    publisher_id: int
    amount: Decimal  # taken from the balance
    fee: Decimal
    payout: Decimal  # what the publisher receives: amount - fee
    status: str
    requested_at: datetime


class WithdrawalRefused(Conflict):
    """The withdrawal breaks a rule (the message says which); nothing was written."""


async def lock_account(conn: Conn, publisher_id: int) -> Decimal:
    """Lock the publisher's account row until the transaction ends; return its balance."""
    await conn.execute(
        "INSERT INTO accounts (publisher_id) VALUES ($1) ON CONFLICT DO NOTHING", publisher_id
    )
    balance: Decimal = await conn.fetchval(
        "SELECT balance FROM accounts WHERE publisher_id = $1 FOR UPDATE", publisher_id
    )
    return balance


async def balance(conn: Conn, publisher_id: int) -> Decimal:
    found: Decimal | None = await conn.fetchval(
        "SELECT balance FROM accounts WHERE publisher_id = $1", publisher_id
    )
    return ZERO if found is None else found


async def ledger_sum(conn: Conn, publisher_id: int) -> Decimal:
    total: Decimal = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0.00) FROM ledger WHERE publisher_id = $1", publisher_id
    )
    return total


def _entry(row: asyncpg.Record) -> Entry:
    start = row["period_start"]
    return Entry(
        id=row["id"],
        kind=EntryKind(row["kind"]),
        amount=row["amount"],
        order_id=row["order_id"],
        withdrawal_id=row["withdrawal_id"],
        period=None if start is None else f"{start.year:04d}-{start.month:02d}",
        effective_at=row["effective_at"],
        detail=json.loads(row["detail"]),
        created_at=row["created_at"],
    )


async def list_entries(
    conn: Conn, publisher_id: int, *, after: int = 0, limit: int = 50
) -> list[Entry]:
    rows = await conn.fetch(
        """SELECT id, kind, amount, order_id, withdrawal_id, period_start, effective_at, detail,
                  created_at
           FROM ledger WHERE publisher_id = $1 AND id > $2 ORDER BY id LIMIT $3""",
        publisher_id,
        after,
        limit,
    )
    return [_entry(r) for r in rows]


def _withdrawal(row: asyncpg.Record) -> Withdrawal:
    return Withdrawal(
        row["id"],
        row["publisher_id"],
        row["amount"],
        row["fee"],
        row["payout"],
        row["status"],
        row["requested_at"],
    )


async def request_withdrawal(
    conn: Conn,
    publisher_id: int,
    amount: Decimal | None,
    *,
    minimum_balance: Decimal,
    fee: Decimal,
) -> Withdrawal:
    """Withdraw ``amount`` (default: the whole balance), of which ``fee`` is the processing
    fee and the rest is paid out. Needs a balance above ``minimum_balance``; never overdraws."""
    if amount is not None and (not is_cents(amount) or amount <= 0):
        raise WithdrawalRefused("amount must be a positive number of dollars and cents")
    async with conn.transaction():
        current = await lock_account(conn, publisher_id)
        if current <= minimum_balance:
            raise WithdrawalRefused(
                f"the balance ({current}) must be above {minimum_balance} to withdraw"
            )
        taken = current if amount is None else amount
        if taken > current:
            raise WithdrawalRefused(f"amount {taken} is more than the balance ({current})")
        if taken <= fee:
            raise WithdrawalRefused(f"amount {taken} does not cover the {fee} withdrawal fee")
        row = await conn.fetchrow(
            """INSERT INTO withdrawals (publisher_id, amount, fee, payout)
               VALUES ($1, $2, $3, $4) RETURNING *""",
            publisher_id,
            taken,
            fee,
            taken - fee,
        )
        assert row is not None
        await conn.executemany(
            """INSERT INTO ledger (publisher_id, kind, amount, withdrawal_id, effective_at)
               VALUES ($1, $2, $3, $4, $5)""",
            [
                (
                    publisher_id,
                    EntryKind.withdrawal.value,
                    -(taken - fee),
                    row["id"],
                    row["requested_at"],
                ),
                (publisher_id, EntryKind.fee.value, -fee, row["id"], row["requested_at"]),
            ],
        )
    return _withdrawal(row)


async def list_withdrawals(
    conn: Conn, publisher_id: int, *, after: int = 0, limit: int = 50
) -> list[Withdrawal]:
    rows = await conn.fetch(
        """SELECT * FROM withdrawals WHERE publisher_id = $1 AND id > $2
           ORDER BY id LIMIT $3""",
        publisher_id,
        after,
        limit,
    )
    return [_withdrawal(r) for r in rows]
