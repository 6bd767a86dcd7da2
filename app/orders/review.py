"""The review of held orders (docs/commissions.md, "Order fraud rules"): an operator approves
one, and it goes through the caps as if attributed at that moment (``screening.admit``:
``attributed``, or ``declined`` over a cap), or rejects it (``disqualified``, the rule that
held it in the reason). Either way the order keeps ``held_rule`` and ``held_at`` (reports
show why it was held) and records ``review`` and ``reviewed_at``.

Only a held order can be reviewed; anything else is a ``Conflict`` (409), in words. The order's
row is locked first, so two reviews of one order take turns and the second finds it reviewed.
A held order told its publisher's endpoints nothing; an approval that attributes it queues
the events an attribution does (``order_attributed``, with its status event), in the same
transaction.
"""

from __future__ import annotations

import asyncpg

from app.core.db import Conn
from app.errors import Conflict, NotFound
from app.orders.candidate import Candidate
from app.orders.screening import Decision, Screening, admit
from app.orders.status import Attribution
from app.orders.store import Order, OrderQuery, get_order, list_orders
from app.postbacks import outbox
from app.postbacks.events import OrderFacts, order_events

# What ``admit`` judges an approved order by: what attribution stored from its click. The
# click's time is the one its id carries (the click's row is within a few ms of it, and may
# be gone with its partition by now).
_LOCK = """
    SELECT id, merchant_id, ordered_at, amount, category, new_buyer, click_time, click_flags,
           publisher_id, link_id, cn, session_id, click_ip, status, attribution, held_rule,
           review
    FROM orders WHERE id = $1 FOR NO KEY UPDATE"""

_APPROVE = """
    UPDATE orders SET attribution = $2, declined_cap_id = $3,
        declined_at = CASE WHEN $2 = 'declined' THEN now() END,
        review = 'approved', reviewed_at = now(), updated_at = now()
    WHERE id = $1 AND attribution = 'held'"""

_REJECT = """
    UPDATE orders SET attribution = 'disqualified', disqualified_reason = $2,
        disqualified_at = now(), review = 'rejected', reviewed_at = now(), updated_at = now()
    WHERE id = $1 AND attribution = 'held'"""

# The longest reason a reviewer may give (the API's bound too).
MAX_REASON = 500


async def _held(conn: Conn, order_id: int, action: str) -> asyncpg.Record:
    """The held order ``order_id``'s row, locked. Raises ``NotFound``, or ``Conflict`` when
    it is not held (``action``: what was asked, for the message)."""
    row = await conn.fetchrow(_LOCK, order_id)
    if row is None:
        raise NotFound("no such order")
    if row["attribution"] != Attribution.held:
        done = f" (it was {row['review']} on review)" if row["review"] else ""
        raise Conflict(
            f"order {order_id} is {row['attribution']}, not held for review{done}: "
            f"only a held order can be {action}"
        )
    return row


def _candidate(row: asyncpg.Record) -> Candidate:
    return Candidate(
        order_id=row["id"],
        merchant_id=row["merchant_id"],
        ordered_at=row["ordered_at"],
        amount=row["amount"],
        category=row["category"],
        new_buyer=row["new_buyer"],
        clicked_at=row["click_time"],
        flags=row["click_flags"] or 0,
        publisher_id=row["publisher_id"],
        link_id=row["link_id"],
        cn=row["cn"],
        session_id=row["session_id"],
        click_ip=row["click_ip"],
    )


async def approve(conn: Conn, order_id: int, screening: Screening) -> Order:
    """Approve the held order ``order_id``: ``attributed`` (counted against its caps, its
    events queued), or ``declined`` when one of ``screening``'s caps is full. Raises
    ``NotFound``, ``Conflict`` (not held)."""
    async with conn.transaction():
        row = await _held(conn, order_id, "approved")
        verdict = await admit(conn, _candidate(row), screening)
        await conn.execute(_APPROVE, order_id, verdict.decision.value, verdict.cap_id)
        if verdict.decision is Decision.attribute:
            # Told now as an attribution is (attribution.py's ``_tell``): it told nothing held.
            before = OrderFacts(False, row["status"], row["amount"])
            after = OrderFacts(True, row["status"], row["amount"])
            await outbox.emit_order(conn, order_id, order_events(before, after))
        order = await get_order(conn, order_id)
    assert order is not None  # locked above, and orders are never deleted
    return order


def rejection_reason(rule: str, reason: str | None) -> str:
    """The ``disqualified_reason`` of a rejected order: ``rejected on review: <rule>``, then
    ``: <reason>`` when the reviewer gave one."""
    said = f"rejected on review: {rule}"
    return f"{said}: {reason}" if reason else said


async def reject(conn: Conn, order_id: int, reason: str | None = None) -> Order:
    """Reject the held order ``order_id``: ``disqualified``, for good (it never earns).
    ``reason``: the reviewer's words, at most ``MAX_REASON`` characters. Raises
    ``NotFound``, ``Conflict`` (not held)."""
    async with conn.transaction():
        row = await _held(conn, order_id, "rejected")
        said = rejection_reason(row["held_rule"], reason)
        await conn.execute(_REJECT, order_id, said)
        order = await get_order(conn, order_id)
    assert order is not None
    return order


async def held_orders(conn: Conn, *, after: int = 0, limit: int = 100) -> list[Order]:
    """Orders held for review, oldest first (by id), ``limit`` after the id ``after``."""
    query = OrderQuery(attribution=Attribution.held)
    return await list_orders(conn, query, after=after, limit=limit)
