"""Order and commission caps, enforced in Postgres at attribution (docs/commissions.md,
"Caps"): the cap check ``app/orders/screening.py`` calls.

An order falls under its publisher's enabled order and commission caps that count all its
traffic, its link's, and its campaign's (``cn``). Each counts in the window holding the
order's time (``ordered_at``, in the period time zone), whenever the order is attributed.
What it adds: 1 to an order cap; to a commission cap its commission at the base rate of the
plan in force when it was placed (Table 1, or Table 3 for a new buyer) or of the
publisher's payout override (``app/money/overrides_store.py``, ``order_rate``), in cents,
rounded once as ``app/money/commission.py`` rounds. The period incentive (Table 2) is
decided only when the period closes, so it is not counted; an order placed in a period no
plan covers earns nothing until one does and counts 0.

Exact under any concurrency, in READ COMMITTED: the order's ``cap_usage`` rows are created
if missing (``ON CONFLICT DO NOTHING``) and locked (``FOR UPDATE``) in cap id order, one
statement each, so racing orders queue on the rows in the same order (no deadlock) and each
reads the count its predecessor committed. Over any cap: the first such cap's id is
returned and nothing is counted; else every cap gets the order. In the caller's
transaction: a rollback gives the room back. Usage is never given back afterwards (a
refund, a later disqualification): a cap counts what was let through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo

from app.caps.model import CapMetric
from app.caps.windows import CapPeriod, window_start
from app.core.db import Conn
from app.money.commission import commission
from app.money.overrides_store import order_rate
from app.orders.candidate import Candidate
from app.orders.screening import CapCheck

# The enabled order and commission caps an order falls under, by id (the lock order).
_CAPS_OF = """
    SELECT id, metric, period, cap FROM caps
    WHERE publisher_id = $1 AND disabled_at IS NULL AND metric IN ('orders', 'commission')
      AND (link_id IS NULL AND campaign IS NULL OR link_id = $2 OR campaign = $3)
    ORDER BY id"""

# One row per (cap, window); ORDER BY makes the inserts, and the waits they may cause on a
# row another transaction inserted, follow cap id order too.
_CREATE = """
    INSERT INTO cap_usage (cap_id, window_start)
    SELECT * FROM unnest($1::int8[], $2::date[]) AS w(cap_id, window_start) ORDER BY 1
    ON CONFLICT DO NOTHING"""

# The sort runs below the row locks: rows are locked in cap id order. A row updated by a
# transaction this one waited for is read as that transaction committed it.
_LOCK = """
    SELECT u.cap_id, u.used FROM cap_usage u
    JOIN unnest($1::int8[], $2::date[]) AS w(cap_id, window_start)
      ON u.cap_id = w.cap_id AND u.window_start = w.window_start
    ORDER BY u.cap_id
    FOR UPDATE OF u"""

_COUNT = """
    UPDATE cap_usage u SET used = u.used + w.amount
    FROM unnest($1::int8[], $2::date[], $3::int8[]) AS w(cap_id, window_start, amount)
    WHERE u.cap_id = w.cap_id AND u.window_start = w.window_start"""


@dataclass(frozen=True)
class Charge:
    """What one order adds to one cap in one window (orders, or cents)."""

    cap_id: int
    window: date
    cap: int
    amount: int


async def commission_cents(conn: Conn, candidate: Candidate, tz: tzinfo) -> int:
    """The order's commission at the base rate it will be credited at (the plan in force
    when it was placed, or the publisher's payout override: ``order_rate``), without the
    period incentive, in cents; 0 when no plan covers that period."""
    rate = await order_rate(
        conn,
        candidate.publisher_id,
        candidate.category,
        candidate.new_buyer,
        candidate.ordered_at,
        tz=tz,
    )
    return int(commission(candidate.amount, rate) * 100)


async def charges_of(conn: Conn, candidate: Candidate, tz: tzinfo) -> list[Charge]:
    """The caps ``candidate`` falls under, each with its window and what the order adds."""
    rows = await conn.fetch(_CAPS_OF, candidate.publisher_id, candidate.link_id, candidate.cn)
    charges: list[Charge] = []
    cents: int | None = None
    for row in rows:
        amount = 1
        if row["metric"] == CapMetric.commission:
            if cents is None:  # read once, and only for an order under a commission cap
                cents = await commission_cents(conn, candidate, tz)
            amount = cents
        window = window_start(CapPeriod(row["period"]), candidate.ordered_at, tz)
        charges.append(Charge(row["id"], window, row["cap"], amount))
    return charges


async def count_order(conn: Conn, charges: list[Charge]) -> int | None:
    """Lock the usage rows of ``charges`` (in cap id order) and count them all, or none:
    the id of the first cap the order would take over its limit, None when counted."""
    if not charges:
        return None
    ids = [c.cap_id for c in charges]
    windows = [c.window for c in charges]
    await conn.execute(_CREATE, ids, windows)
    used = {row["cap_id"]: row["used"] for row in await conn.fetch(_LOCK, ids, windows)}
    for charge in charges:
        if used[charge.cap_id] + charge.amount > charge.cap:
            return charge.cap_id
    await conn.execute(_COUNT, ids, windows, [c.amount for c in charges])
    return None


def order_caps(tz: tzinfo) -> CapCheck:
    """The cap check of orders whose windows are counted in ``tz`` (the period time zone):
    the cap that declines a candidate, or None once the candidate is counted."""

    async def check(conn: Conn, candidate: Candidate) -> int | None:
        return await count_order(conn, await charges_of(conn, candidate, tz))

    return check
