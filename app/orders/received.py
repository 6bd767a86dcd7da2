"""The log of postbacks received from merchants (migration 032, docs/postbacks.md): what
arrived, what it changed, or why it was refused; and what a replay runs again.

A row is written for every postback naming a merchant that exists. Its body is kept only
when the signature verified, so a stranger's bytes are never stored and only a verified
postback can be replayed. A postback that changed an order is logged in the transaction of
the change: the log never shows a change that was rolled back, nor misses one that was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from app.core.db import Conn

MAX_REPLAY = 1_000  # received postbacks one replay-by-filter call runs again
MAX_ORDER_REF = 128  # the postback's order_id bound (app/api/postback.py)


@dataclass(frozen=True)
class Received:
    """One received postback (or a replay of one). ``outcome``: created, updated, unchanged
    or refused; ``error``: why refused, as answered (None otherwise); ``body``: the bytes sent,
    None when the signature did not verify; ``status_before``/``status_after``: the order's
    status around the change (``status_before`` None for a new order)."""

    id: int
    merchant_id: int
    received_at: datetime  # UTC
    replay_of: int | None
    http_status: int
    outcome: str
    error: str | None
    body: bytes | None
    order_ref: str | None
    order_id: int | None
    status_before: str | None
    status_after: str | None
    attribution: str | None


@dataclass(frozen=True)
class ReceivedQuery:
    """Filters of the log; None means any. ``since``/``until``: received_at bounds (UTC,
    half-open)."""

    merchant_id: int
    outcome: str | None = None
    order_ref: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def order_ref_of(body: bytes | None) -> str | None:
    """The order id a body names, read leniently (a refused body may be no JSON at all): the
    ``order_id`` string of a JSON object, within the postback's own bound; else None."""
    if not body:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    found = parsed.get("order_id") if isinstance(parsed, dict) else None
    if isinstance(found, str) and 0 < len(found) <= MAX_ORDER_REF and found.isprintable():
        return found
    return None


async def log_received(conn: Conn, entry: Received) -> int:
    """Write ``entry`` (its ``id`` is ignored); return the new row's id."""
    row_id: int = await conn.fetchval(
        """INSERT INTO received_postbacks (merchant_id, received_at, replay_of, http_status,
               outcome, error, body, order_ref, order_id, status_before, status_after,
               attribution)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
        entry.merchant_id,
        entry.received_at,
        entry.replay_of,
        entry.http_status,
        entry.outcome,
        entry.error,
        entry.body,
        entry.order_ref,
        entry.order_id,
        entry.status_before,
        entry.status_after,
        entry.attribution,
    )
    return row_id


_SELECT = """SELECT id, merchant_id, received_at, replay_of, http_status, outcome, error, body,
           order_ref, order_id, status_before, status_after, attribution
    FROM received_postbacks"""

_WHERE = """merchant_id = $1 AND ($2::text IS NULL OR outcome = $2)
    AND ($3::text IS NULL OR order_ref = $3)
    AND ($4::timestamptz IS NULL OR received_at >= $4)
    AND ($5::timestamptz IS NULL OR received_at < $5)"""


def _received(row: asyncpg.Record) -> Received:
    return Received(**dict(row))


def _filters(query: ReceivedQuery) -> tuple[object, ...]:
    return (query.merchant_id, query.outcome, query.order_ref, query.since, query.until)


async def list_received(
    conn: Conn, query: ReceivedQuery, *, before: int | None = None, limit: int = 50
) -> list[Received]:
    """The received postbacks matching ``query``, newest first; ``before`` pages backwards
    (the last id of the previous page)."""
    rows = await conn.fetch(
        f"{_SELECT} WHERE {_WHERE} AND ($6::int8 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7",
        *_filters(query),
        before,
        limit,
    )
    return [_received(r) for r in rows]


async def get_received(conn: Conn, merchant_id: int, received_id: int) -> Received | None:
    """One received postback of ``merchant_id``; None when it has no such row."""
    row = await conn.fetchrow(
        f"{_SELECT} WHERE merchant_id = $1 AND id = $2", merchant_id, received_id
    )
    return None if row is None else _received(row)


async def replayable(conn: Conn, query: ReceivedQuery) -> list[Received]:
    """The received postbacks matching ``query`` that a replay can run again (their body
    was kept; replays themselves are not picked), oldest first (the order the merchant sent
    them), at most ``MAX_REPLAY``."""
    rows = await conn.fetch(
        f"""{_SELECT} WHERE {_WHERE} AND body IS NOT NULL AND replay_of IS NULL
            ORDER BY id LIMIT $6""",
        *_filters(query),
        MAX_REPLAY,
    )
    return [_received(r) for r in rows]
