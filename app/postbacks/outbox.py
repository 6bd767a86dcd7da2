"""The transactional outbox: an event is written in the transaction of the change that
causes it (pass that transaction's connection), so a change rolled back leaves no event and
a change committed never lacks one.

One statement per event: it inserts the event and one pending delivery per active endpoint
of the publisher subscribed to it, and nothing at all when there is none (a publisher
without endpoints costs one index probe per event). The payload holds every macro's value
as text (``templates.MACROS``), read from the order's row in the same statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal

import uuid_utils

from app.core.db import Conn
from app.postbacks.events import EventType

_PAYLOAD = """jsonb_build_object(
        'event', $2::text, 'event_id', $3::uuid::text,
        'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'timestamp', floor(extract(epoch FROM now()))::bigint::text,
        'order_id', o.order_ref, 'click_id', o.click_ref,
        'af', o.af, 'cn', o.cn, 'cv', o.cv, 'dp', o.dp,
        'amount', o.amount::text, 'currency', o.currency, 'status', o.status,
        'commission', coalesce($4::numeric, o.held)::text)"""

# $1 order id, $2 event, $3 event id, $4 the commission this event moves (None: what the
# order holds in the ledger, net).
_EMIT = f"""
    WITH o AS (
        SELECT o.publisher_id, o.order_ref, o.click_ref, o.af, o.cn, o.cv, o.dp, o.amount,
               o.currency, o.status,
               (SELECT sum(l.amount) FROM ledger l WHERE l.order_id = o.id) AS held
        FROM orders o WHERE o.id = $1 AND o.publisher_id IS NOT NULL),
    ep AS (
        SELECT e.id FROM postback_endpoints e JOIN o ON e.publisher_id = o.publisher_id
        WHERE e.disabled_at IS NULL AND $2::text = ANY(e.events)),
    ev AS (
        INSERT INTO outbox_events (id, publisher_id, event, payload)
        SELECT $3::uuid, o.publisher_id, $2::text, {_PAYLOAD}
        FROM o WHERE EXISTS (SELECT 1 FROM ep)
        RETURNING id, publisher_id)
    INSERT INTO postback_deliveries (event_id, endpoint_id, publisher_id, event)
    SELECT ev.id, ep.id, ev.publisher_id, $2::text FROM ev CROSS JOIN ep"""


def new_event_id() -> uuid.UUID:
    """A time-ordered event id (UUIDv7)."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


async def emit_order(conn: Conn, order_id: int, events: Sequence[EventType]) -> None:
    """Queue ``events`` about order ``order_id`` (an unattributed order: nothing)."""
    if events:
        await conn.executemany(
            _EMIT, [(order_id, event.value, new_event_id(), None) for event in events]
        )


async def emit_commissions(
    conn: Conn, publisher_id: int, event: EventType, moved: Iterable[tuple[int, Decimal]]
) -> None:
    """Queue one ``event`` per (order id, commission credited or charged back) of
    ``publisher_id``'s orders: one probe when the publisher has no endpoint wanting it
    (a close may move thousands of orders)."""
    rows = [(order_id, event.value, new_event_id(), amount) for order_id, amount in moved]
    if rows and await wanted(conn, publisher_id, event):
        await conn.executemany(_EMIT, rows)


async def wanted(conn: Conn, publisher_id: int, event: EventType) -> bool:
    """Whether an active endpoint of ``publisher_id`` subscribes to ``event``."""
    found = await conn.fetchval(
        """SELECT 1 FROM postback_endpoints
           WHERE publisher_id = $1 AND disabled_at IS NULL AND $2::text = ANY(events) LIMIT 1""",
        publisher_id,
        event.value,
    )
    return found is not None


_TEST_PAYLOAD = """jsonb_build_object(
    'event', 'test', 'event_id', $2::uuid::text,
    'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'timestamp', floor(extract(epoch FROM now()))::bigint::text,
    'order_id', 'TEST-ORDER', 'click_id', '00000000-0000-7000-8000-000000000000',
    'af', 'test-af', 'cn', 'test-cn', 'cv', 'test-cv', 'dp', 'test-dp',
    'amount', '100.00', 'currency', 'USD', 'status', 'completed', 'commission', '8.00')"""


async def emit_test(conn: Conn, endpoint_id: int, publisher_id: int) -> int:
    """Queue a ``test`` event for one endpoint (made-up order values); return the id of its
    delivery."""
    event_id = new_event_id()
    await conn.execute(
        f"""INSERT INTO outbox_events (id, publisher_id, event, payload)
            VALUES ($2::uuid, $1, 'test', {_TEST_PAYLOAD})""",
        publisher_id,
        event_id,
    )
    delivery_id: int = await conn.fetchval(
        """INSERT INTO postback_deliveries (event_id, endpoint_id, publisher_id, event)
           VALUES ($1, $2, $3, 'test') RETURNING id""",
        event_id,
        endpoint_id,
        publisher_id,
    )
    return delivery_id
