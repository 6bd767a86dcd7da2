"""Tying an order to its click, through the click id the redirect added to the merchant's URL.

Click ids are UUIDv7: their first 48 bits are the millisecond the click was made, and the
click's row in ``clicks`` (partitioned by day on ``ts``) has ``ts`` within a few ms of it.
A lookup therefore searches a narrow window around that time, so Postgres reads one
partition (or two at midnight) instead of all of them.

The click may not be in Postgres yet when the order arrives (the flusher runs a moment behind
the redirect). Such an order stays ``unattributed`` and is tried again on its next postback,
before every period close, and on an admin's request (``reattribute``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from app.clicks.record import Flag
from app.core.db import Conn

# Far wider than the real gap (a few ms), still a tiny slice of one day's partition.
CLICK_WINDOW = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ClickRef:
    click_id: uuid.UUID
    made_at: datetime


def parse_click_ref(text: str) -> ClickRef | None:
    """The id and time of a UUIDv7 click id; None for anything else (it can match no click)."""
    try:
        value = uuid.UUID(text)
    except ValueError:
        return None
    if value.version != 7:
        return None
    try:
        made_at = _EPOCH + timedelta(milliseconds=value.int >> 80)
    except OverflowError:
        return None
    return ClickRef(value, made_at)


def canonical_click_ref(text: str) -> str:
    """The form a click id is stored and compared in."""
    parsed = parse_click_ref(text)
    return text.strip() if parsed is None else str(parsed.click_id)


def flag_reason(flags: int) -> str:
    names = [flag.name for flag in Flag if flags & flag and flag.name]
    return "flagged click: " + (", ".join(names) if names else f"flags {flags}")


_CLICK_COLUMNS = "c.publisher_id, c.link_id, c.code, c.af, c.cn, c.cv, c.dp, c.flags"

_FIND_CLICK = f"""
    SELECT {_CLICK_COLUMNS} FROM clicks c
    WHERE c.click_id = $1 AND c.ts >= $2 AND c.ts < $3
    LIMIT 1"""

# The order's own click time bounds each lookup, so every probe prunes to its partitions.
_FIND_WAITING = f"""
    SELECT o.id AS order_id, {_CLICK_COLUMNS}
    FROM orders o
    CROSS JOIN LATERAL (
        SELECT * FROM clicks c
        WHERE c.click_id = o.click_id
          AND c.ts >= o.click_time - $2::interval AND c.ts < o.click_time + $2::interval
        LIMIT 1) c
    WHERE o.attribution = 'unattributed' AND o.click_id IS NOT NULL AND o.id > $1
    ORDER BY o.id
    LIMIT $3"""

# Guarded by attribution = 'unattributed': an order is attributed once, whoever gets there.
_APPLY = """
    UPDATE orders SET
        attribution = CASE WHEN $9 = 0 THEN 'attributed' ELSE 'disqualified' END,
        disqualified_reason = $10,
        disqualified_at = CASE WHEN $9 = 0 THEN NULL ELSE now() END,
        publisher_id = $2, link_id = $3, code = $4, af = $5, cn = $6, cv = $7, dp = $8,
        click_flags = $9, attributed_at = now(), updated_at = now()
    WHERE id = $1 AND attribution = 'unattributed'"""


async def _apply(conn: Conn, order_id: int, click: asyncpg.Record) -> bool:
    flags: int = click["flags"]
    status = await conn.execute(
        _APPLY,
        order_id,
        click["publisher_id"],
        click["link_id"],
        click["code"],
        click["af"],
        click["cn"],
        click["cv"],
        click["dp"],
        flags,
        None if flags == 0 else flag_reason(flags),
    )
    return status == "UPDATE 1"


async def attribute_order(conn: Conn, order_id: int, ref: ClickRef) -> bool:
    """Attribute one unattributed order if its click is known; True when it was."""
    click = await conn.fetchrow(
        _FIND_CLICK, ref.click_id, ref.made_at - CLICK_WINDOW, ref.made_at + CLICK_WINDOW
    )
    return click is not None and await _apply(conn, order_id, click)


async def reattribute(conn: Conn, *, batch: int = 500) -> int:
    """Attribute every waiting order whose click has arrived since; return how many."""
    done = 0
    after = 0
    while True:
        found = await conn.fetch(_FIND_WAITING, after, CLICK_WINDOW, batch)
        for click in found:
            done += await _apply(conn, click["order_id"], click)
        if len(found) < batch:
            return done
        after = found[-1]["order_id"]
