"""The ledger and balances.

Every change of a publisher's money is a ledger row, never an update: credits (completed
orders, when a period closes), chargebacks (credited orders later refunded, invalid or
disqualified), partial refunds and incentive adjustments (``app/money/corrections.py``),
withdrawals and their fees, and what a rejected withdrawal gives back
(``app/money/withdrawals.py``). The balance is the sum of the ledger: a trigger
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
from app.money.commission import ZERO


class EntryKind(StrEnum):
    credit = "credit"
    chargeback = "chargeback"
    partial_refund = "partial_refund"  # a credited order's amount lowered: the difference
    incentive_adjustment = "incentive_adjustment"  # its incentive re-decided: the difference
    withdrawal = "withdrawal"
    fee = "fee"
    withdrawal_reversal = "withdrawal_reversal"  # a rejected withdrawal's payout, given back
    fee_reversal = "fee_reversal"  # and its fee


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
