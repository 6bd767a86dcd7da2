"""The operator commands for orders held by a fraud rule (docs/commissions.md, "Order fraud
rules"), registered by ``app/cli.py``: list them, approve one (through the caps: attributed,
or declined over a full cap), reject one (disqualified, the rule in the reason). Each review
is recorded in the audit log as made by ``cli:<os user>``, as the API's are by its key."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from app.audit.fields import ORDER, record_change
from app.audit.log import cli_actor
from app.caps.screening import order_screening
from app.cli_apikeys import cursor, utf8_text
from app.core.db import Conn
from app.orders import review, store
from app.orders.store import Order
from app.settings import Settings

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
WholeNumber = Callable[[str], int]


def reason_text(value: str) -> str:
    """An argparse type: a reviewer's reason, 1 to ``review.MAX_REASON`` characters of
    printable UTF-8 text (as the API's ``reason``)."""
    utf8_text(value)
    if not 1 <= len(value) <= review.MAX_REASON:
        raise argparse.ArgumentTypeError(f"must be 1 to {review.MAX_REASON} characters")
    if not value.isprintable():
        raise argparse.ArgumentTypeError("must not hold control characters")
    return value


def describe(order: Order, settings: Settings) -> str:
    """One line per held order, as ``held-orders`` prints it (times in the period time zone)."""
    held = (
        "unknown"
        if order.held_at is None
        else f"{order.held_at.astimezone(settings.period_tz):%Y-%m-%d %H:%M}"
    )
    return (
        f"order {order.id}: merchant order id {order.order_ref!r}, publisher "
        f"{order.publisher_id}, rule {order.held_rule}, {order.amount} {order.currency}, "
        f"held {held}"
    )


def outcome(order: Order) -> str:
    """What a review did, one line."""
    if order.declined_cap_id is not None:
        return f"order {order.id} approved, then declined: cap {order.declined_cap_id} is full"
    if order.review == "rejected":
        return f"order {order.id} rejected: disqualified ({order.disqualified_reason})"
    return f"order {order.id} approved: attributed to publisher {order.publisher_id}"


async def _record(conn: Conn, verb: str, before: Order | None, after: Order) -> None:
    """The audit entry of a review ``verb`` (approve, reject), in the caller's transaction."""
    await record_change(
        conn, cli_actor(), "order", verb, before, after, ORDER, publisher_id=after.publisher_id
    )


@dataclass(frozen=True)
class OrderCommands:
    connect: Connect

    async def list_held(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            page = await review.held_orders(conn, after=args.after, limit=args.limit)
        finally:
            await conn.close()
        for order in page:
            print(describe(order, settings))
        print(f"{len(page)} held orders; times in {settings.period_timezone}")
        if len(page) == args.limit:
            print(f"more may follow: --after {page[-1].id}")

    async def approve(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await store.get_order(conn, args.order_id)
                done = await review.approve(conn, args.order_id, order_screening(settings))
                await _record(conn, "approve", before, done)
        finally:
            await conn.close()
        print(outcome(done))

    async def reject(self, settings: Settings, args: argparse.Namespace) -> None:
        conn = await self.connect(settings)
        try:
            async with conn.transaction():
                before = await store.get_order(conn, args.order_id)
                done = await review.reject(conn, args.order_id, args.reason)
                await _record(conn, "reject", before, done)
        finally:
            await conn.close()
        print(outcome(done))

    def register(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], number: WholeNumber
    ) -> None:
        """Add the commands to the CLI's parser; ``number`` reads a whole number >= 1."""
        listing = sub.add_parser(
            "held-orders", help="list orders a fraud rule held for review, oldest first"
        )
        listing.add_argument("--after", type=cursor, default=0, help="ids above this only")
        listing.add_argument("--limit", type=number, default=100)
        listing.set_defaults(run=self.list_held)

        approve = sub.add_parser(
            "approve-order",
            help="approve a held order: attributed, or declined when one of its caps is full",
        )
        approve.add_argument("order_id", type=number, help="the order's id")
        approve.set_defaults(run=self.approve)

        reject = sub.add_parser(
            "reject-order", help="reject a held order: disqualified, it never earns"
        )
        reject.add_argument("order_id", type=number, help="the order's id")
        reject.add_argument("--reason", type=reason_text, default=None, help="the reviewer's words")
        reject.set_defaults(run=self.reject)
