"""Caps in Postgres: create, read, list, change, disable and enable them, and what each
has used in its current window: order and commission caps from ``cap_usage`` (counted by
``orders.py``), click caps from the redirect's counters in Redis (``clicks.clicks_used``).

A cap's metric, window and scope are fixed at creation (its counters are kept per cap and
window: changing what a cap counts would make them lie); its limit and fallback change, and
it can be disabled (it counts nothing, declines nothing) and enabled again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import Enum
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from app.caps import clicks
from app.caps.model import Cap, CapError, CapMetric, CapSpec
from app.caps.windows import CapPeriod, window_end, window_start
from app.core.db import Conn
from app.core.keys import RedisKeys
from app.core.redis import REDIS_UNAVAILABLE
from app.errors import NotFound
from app.links.model import echoed, is_valid_code

_COLUMNS = """c.id, c.publisher_id, c.metric, c.period, c.cap, c.link_id, l.code AS link_code,
    c.campaign, c.fallback_url, c.disabled_at, c.created_at, c.updated_at"""
_SELECT = f"SELECT {_COLUMNS} FROM caps c LEFT JOIN links l ON l.id = c.link_id"


def _cap(row: asyncpg.Record) -> Cap:
    values = dict(row)
    values["metric"] = CapMetric(row["metric"])
    values["period"] = CapPeriod(row["period"])
    return Cap(**values)


async def link_of(conn: Conn, publisher_id: int, code: str) -> int:
    """The id of ``publisher_id``'s link ``code``; raises ``CapError`` (field ``link``) when
    it has none of that code, in the same words whether the code is another publisher's
    or nobody's."""
    found: int | None = None
    if is_valid_code(code):
        found = await conn.fetchval(
            "SELECT id FROM links WHERE code = $1 AND publisher_id = $2", code, publisher_id
        )
    if found is None:
        raise CapError(
            f"publisher {publisher_id} has no link with code {echoed(code)!r}", field="link"
        )
    return found


async def require_publisher(conn: Conn, publisher_id: int) -> None:
    """Raise ``NotFound`` when there is no publisher ``publisher_id`` (said in words, rather
    than the foreign key's refusal)."""
    if not await conn.fetchval("SELECT 1 FROM publishers WHERE id = $1", publisher_id):
        raise NotFound(f"publisher {publisher_id} does not exist")


async def create_cap(conn: Conn, spec: CapSpec) -> Cap:
    """Store ``spec`` (checked by ``model.new_cap``), enabled. Raises ``NotFound`` for a
    publisher that does not exist."""
    await require_publisher(conn, spec.publisher_id)
    row = await conn.fetchrow(
        f"""WITH c AS (
                INSERT INTO caps (publisher_id, metric, period, cap, link_id, campaign,
                                  fallback_url)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *)
            SELECT {_COLUMNS} FROM c LEFT JOIN links l ON l.id = c.link_id""",
        spec.publisher_id,
        spec.metric.value,
        spec.period.value,
        spec.cap,
        spec.link_id,
        spec.campaign,
        spec.fallback_url,
    )
    assert row is not None
    return _cap(row)


async def get_cap(conn: Conn, cap_id: int, *, for_update: bool = False) -> Cap | None:
    """The cap ``cap_id`` (None: none). ``for_update`` locks it until the transaction ends,
    so a change's ``before`` is the state changed."""
    lock = " FOR UPDATE OF c" if for_update else ""
    row = await conn.fetchrow(f"{_SELECT} WHERE c.id = $1{lock}", cap_id)
    return None if row is None else _cap(row)


@dataclass(frozen=True)
class CapFilter:
    """Which caps a list shows; None means any. ``enabled``: only enabled (True) or only
    disabled (False) ones."""

    metric: CapMetric | None = None
    period: CapPeriod | None = None
    link_id: int | None = None
    campaign: str | None = None
    enabled: bool | None = None


async def list_caps(
    conn: Conn, publisher_ids: Sequence[int], where: CapFilter = CapFilter()
) -> list[Cap]:
    """The caps of ``publisher_ids`` matching ``where``, by id."""
    conditions = ["c.publisher_id = ANY($1::int8[])"]
    params: list[Any] = [list(publisher_ids)]
    for column, value in (
        ("metric", None if where.metric is None else where.metric.value),
        ("period", None if where.period is None else where.period.value),
        ("link_id", where.link_id),
        ("campaign", where.campaign),
    ):
        if value is not None:
            params.append(value)
            conditions.append(f"c.{column} = ${len(params)}")
    if where.enabled is not None:
        conditions.append(f"c.disabled_at IS {'' if where.enabled else 'NOT '}NULL")
    rows = await conn.fetch(f"{_SELECT} WHERE {' AND '.join(conditions)} ORDER BY c.id", *params)
    return [_cap(row) for row in rows]


class Keep(Enum):
    """``update_cap``'s default for the fallback: leave it as it is."""

    keep = "keep"


KEEP = Keep.keep


async def update_cap(
    conn: Conn,
    before: Cap,
    *,
    cap: int | None = None,
    fallback_url: str | Keep | None = KEEP,
    enabled: bool | None = None,
) -> Cap:
    """Change ``before`` (read with ``for_update``): its limit (stored units), its fallback
    (None clears it; checked by ``model.check_fallback``), whether it is enabled. Nothing
    changed, nothing written: ``before`` is returned as it is."""
    limit = before.cap if cap is None else cap
    fallback = before.fallback_url if isinstance(fallback_url, Keep) else fallback_url
    now_enabled = before.enabled if enabled is None else enabled
    if (limit, fallback, now_enabled) == (before.cap, before.fallback_url, before.enabled):
        return before
    row = await conn.fetchrow(
        f"""WITH c AS (
                UPDATE caps SET cap = $2, fallback_url = $3, updated_at = now(),
                    disabled_at = CASE WHEN $4 THEN NULL ELSE coalesce(disabled_at, now()) END
                WHERE id = $1 RETURNING *)
            SELECT {_COLUMNS} FROM c LEFT JOIN links l ON l.id = c.link_id""",
        before.id,
        limit,
        fallback,
        now_enabled,
    )
    assert row is not None, f"cap {before.id} vanished"  # caps are never deleted
    return _cap(row)


@dataclass(frozen=True)
class Window:
    """The window a cap counts in now: its first day and the first day after it, in the
    period time zone."""

    start: date
    end: date


def current_window(cap: Cap, now: datetime, tz: tzinfo) -> Window:
    start = window_start(cap.period, now, tz)
    return Window(start, window_end(cap.period, start))


async def orders_used(conn: Conn, caps: Sequence[Cap], now: datetime, tz: tzinfo) -> dict[int, int]:
    """What each order or commission cap of ``caps`` has used in its window holding ``now``
    (orders, or cents; 0 when nothing counted yet). Click caps are left out."""
    wanted = [
        (c.id, current_window(c, now, tz).start) for c in caps if c.metric is not CapMetric.clicks
    ]
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT u.cap_id, u.used FROM cap_usage u
           JOIN unnest($1::int8[], $2::date[]) AS w(cap_id, window_start)
             ON w.cap_id = u.cap_id AND w.window_start = u.window_start""",
        [cap_id for cap_id, _ in wanted],
        [start for _, start in wanted],
    )
    used = dict.fromkeys((cap_id for cap_id, _ in wanted), 0)
    used.update((row["cap_id"], row["used"]) for row in rows)
    return used


async def caps_used(
    conn: Conn,
    redis: aioredis.Redis | None,
    keys: RedisKeys,
    caps: Sequence[Cap],
    now: datetime,
    tz: tzinfo,
) -> dict[int, int | None]:
    """What each of ``caps`` has used in its window holding ``now``: orders or cents from
    Postgres, clicks from the redirect's counters in Redis. A click cap's is None when Redis
    is not given or does not answer (a listing still answers)."""
    used: dict[int, int | None] = dict(await orders_used(conn, caps, now, tz))
    for cap in caps:
        if cap.metric is not CapMetric.clicks:
            continue
        try:
            used[cap.id] = (
                None if redis is None else await clicks.clicks_used(redis, keys, cap, now, tz)
            )
        except REDIS_UNAVAILABLE:
            used[cap.id] = None
    return used
