"""The operator commands for withdrawals, registered by ``app/cli.py``: list those waiting,
approve, pay (with the transfer's reference), reject (with a reason; the money goes back to
the balance). Each step is recorded as made by ``cli``, and in the audit log as made by
``cli:<os user>``."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from app.audit.fields import WITHDRAWAL, record_change
from app.audit.log import cli_actor
from app.cli_apikeys import cursor, utf8_text
from app.core.db import Conn
from app.money import withdrawals
from app.money.withdrawal_rules import CLI_ACTOR, WithdrawalCalendar, WithdrawalStatus
from app.money.withdrawals import Withdrawal
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
WholeNumber = Callable[[str], int]
PENDING = (WithdrawalStatus.requested, WithdrawalStatus.approved)


def describe(found: Withdrawal, calendar: WithdrawalCalendar) -> str:
    """One line per withdrawal, as the list prints it."""
    requested = found.requested_at.astimezone(calendar.tz)
    line = (
        f"withdrawal {found.id}: {found.status}, publisher {found.publisher_id}, "
        f"{found.amount} (payout {found.payout} + fee {found.fee}), requested "
        f"{requested:%Y-%m-%d %H:%M} by {found.requested_by or 'unknown'}, "
        f"due {calendar.payment_due(found.requested_at)}"
    )
    if found.approved_at is not None:
        line += f", approved by {found.approved_by}"
    if found.payment_reference is not None:
        line += f", paid by {found.paid_by} (reference {found.payment_reference})"
    if found.reject_reason is not None:
        line += f", rejected by {found.rejected_by}: {found.reject_reason}"
    return line


async def record_step(conn: Conn, verb: str, before: Withdrawal | None, after: Withdrawal) -> None:
    """The audit entry of a step ``verb`` (approve, pay, reject), in the caller's
    transaction."""
    await record_change(
        conn,
        cli_actor(),
        "withdrawal",
        verb,
        before,
        after,
        WITHDRAWAL,
        publisher_id=after.publisher_id,
    )


@dataclass(frozen=True)
class WithdrawalCommands:
    connect: Connect

    async def list_pending(self, settings: Settings, args: argparse.Namespace) -> None:
        statuses = [WithdrawalStatus(s) for s in args.status] if args.status else PENDING
        conn = await self.connect(settings)
        try:
            page = await withdrawals.list_withdrawals(
                conn, args.publisher_id, statuses=statuses, after=args.after, limit=args.limit
            )
        finally:
            await conn.close()
        calendar = WithdrawalCalendar.from_settings(settings)
        for found in page:
            print(describe(found, calendar))
        print(
            f"{len(page)} withdrawals ({' or '.join(statuses)}); times in "
            f"{settings.period_timezone}"
        )
        if len(page) == args.limit:
            print(f"more may follow: --after {page[-1].id}")

    async def approve(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await withdrawals.get_withdrawal(conn, args.withdrawal_id)
                done = await withdrawals.approve(
                    conn, args.withdrawal_id, actor=CLI_ACTOR, now=datetime.now(UTC)
                )
                await record_step(conn, "approve", before, done)
        finally:
            await conn.close()
        due = WithdrawalCalendar.from_settings(settings).payment_due(done.requested_at)
        print(
            f"withdrawal {done.id} approved: pay {done.payout} to publisher "
            f"{done.publisher_id} by {due}"
        )

    async def pay(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await withdrawals.get_withdrawal(conn, args.withdrawal_id)
                done = await withdrawals.pay(
                    conn, args.withdrawal_id, args.reference, actor=CLI_ACTOR, now=datetime.now(UTC)
                )
                await record_step(conn, "pay", before, done)
        finally:
            await conn.close()
        print(
            f"withdrawal {done.id} paid: {done.payout} to publisher {done.publisher_id}, "
            f"reference {done.payment_reference}"
        )

    async def reject(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await withdrawals.get_withdrawal(conn, args.withdrawal_id)
                done = await withdrawals.reject(
                    conn, args.withdrawal_id, args.reason, actor=CLI_ACTOR, now=datetime.now(UTC)
                )
                await record_step(conn, "reject", before, done)
        finally:
            await conn.close()
        print(
            f"withdrawal {done.id} rejected: {done.amount} (payout {done.payout} + fee "
            f"{done.fee}) given back to publisher {done.publisher_id}'s balance"
        )

    def register(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], number: WholeNumber
    ) -> None:
        """Add the commands to the CLI's parser; ``number`` reads a whole number >= 1."""
        listing = sub.add_parser(
            "list-withdrawals", help="list withdrawals waiting to be approved or paid"
        )
        listing.add_argument(
            "--status", action="append", choices=[s.value for s in WithdrawalStatus],
            help="repeat for several (default: requested and approved)",
        )  # fmt: skip
        listing.add_argument("--publisher-id", type=number, default=None)
        listing.add_argument("--after", type=cursor, default=0, help="ids above this only")
        listing.add_argument("--limit", type=number, default=100)
        listing.set_defaults(run=self.list_pending)

        approve = sub.add_parser("approve-withdrawal", help="approve a requested withdrawal")
        approve.add_argument("withdrawal_id", type=number)
        approve.set_defaults(run=self.approve)

        pay = sub.add_parser("pay-withdrawal", help="record an approved withdrawal as paid")
        pay.add_argument("withdrawal_id", type=number)
        pay.add_argument(
            "--reference", type=utf8_text, required=True, help="the bank transfer's reference"
        )
        pay.set_defaults(run=self.pay)

        reject = sub.add_parser(
            "reject-withdrawal", help="reject a withdrawal and give its money back"
        )
        reject.add_argument("withdrawal_id", type=number)
        reject.add_argument(
            "--reason", type=utf8_text, required=True, help="why, in words the publisher reads"
        )
        reject.set_defaults(run=self.reject)
