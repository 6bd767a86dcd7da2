"""Payout overrides in Postgres: versions per publisher (a network's apply to its members
too), each in force from a calculation period until the publisher's next version, as plans
are (``plans_store.PlanBook.for_period``).

Closed periods are never recomputed: a version may be put or deleted only from a period
after the last one closed for its publisher (for a network: for itself and every member),
else ``OverrideInUse`` (409). So every order already credited keeps the rate it was
credited at, and every order of a closed period still waiting for its credit gets the rate
its period's earlier orders got. A close holds the publishers' rows it reads overrides of
(``FOR SHARE``) and a change holds its publisher's (``FOR NO KEY UPDATE``), so a close and
a change of its rates run one after the other.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from app.core.db import Conn
from app.errors import Conflict, NotFound
from app.money.overrides import (
    Override,
    OverrideVersion,
    base_rate,
    check_against_plan,
)
from app.money.periods import Period
from app.money.plans_store import PutOutcome, load_book


class OverrideInUse(Conflict):
    """The version would change the rates of a period already closed."""


async def _versions(conn: Conn, publisher_ids: list[int]) -> list[OverrideVersion]:
    """The versions of ``publisher_ids``, by publisher then effective period."""
    rows = await conn.fetch(
        """SELECT v.publisher_id, v.effective_from, r.category, r.rate, r.new_buyer_rate
           FROM payout_overrides v JOIN payout_override_rates r ON r.override_id = v.id
           WHERE v.publisher_id = ANY($1::bigint[])
           ORDER BY v.publisher_id, v.effective_from, r.category""",
        publisher_ids,
    )
    tables: dict[tuple[int, Any], tuple[dict[str, Decimal], dict[str, Decimal]]] = defaultdict(
        lambda: ({}, {})
    )
    for row in rows:
        rates, new_buyer = tables[(row["publisher_id"], row["effective_from"])]
        if row["rate"] is not None:
            rates[row["category"]] = row["rate"]
        if row["new_buyer_rate"] is not None:
            new_buyer[row["category"]] = row["new_buyer_rate"]
    return [
        OverrideVersion(pid, Period.starting_on(day), Override(rates=r, new_buyer_rates=n))
        for (pid, day), (r, n) in tables.items()
    ]


async def list_versions(conn: Conn, publisher_id: int) -> list[OverrideVersion]:
    """A publisher's own versions, oldest first."""
    return await _versions(conn, [publisher_id])


async def get_version(conn: Conn, publisher_id: int, period: Period) -> OverrideVersion | None:
    """The publisher's version effective from ``period`` exactly, if any."""
    found = [v for v in await list_versions(conn, publisher_id) if v.effective_from == period]
    return found[0] if found else None


async def _last_closed(conn: Conn, publisher_id: int) -> tuple[Period, int] | None:
    """The latest period closed for the publisher or, for a network, any of its members:
    (the period, the publisher it was closed for)."""
    row = await conn.fetchrow(
        """SELECT c.period_start, c.publisher_id FROM period_closes c
           WHERE c.publisher_id = $1
              OR c.publisher_id IN (SELECT m.id FROM publishers m WHERE m.network_id = $1)
           ORDER BY c.period_start DESC, c.publisher_id LIMIT 1""",
        publisher_id,
    )
    return None if row is None else (Period.starting_on(row["period_start"]), row["publisher_id"])


async def first_open_period(conn: Conn, publisher_id: int) -> Period | None:
    """The earliest period a version of the publisher may take effect from (None: any)."""
    last = await _last_closed(conn, publisher_id)
    return None if last is None else last[0].next()


async def _lock_open(conn: Conn, publisher_id: int, period: Period, doing: str) -> None:
    """Hold the publisher's row against closes, then refuse a ``period`` already closed."""
    found = await conn.fetchval(
        "SELECT id FROM publishers WHERE id = $1 FOR NO KEY UPDATE", publisher_id
    )
    if found is None:
        raise NotFound(f"publisher {publisher_id} does not exist")
    last = await _last_closed(conn, publisher_id)
    if last is None or period > last[0]:
        return
    closed, whose = last
    owner = "" if whose == publisher_id else f" (for its member, publisher {whose})"
    raise OverrideInUse(
        f"cannot {doing} an override effective from {period}: period {closed} is closed"
        f"{owner} and closed periods are never recomputed; use {closed.next()} or later"
    )


async def _check_plans(conn: Conn, override: Override, period: Period) -> None:
    """Hold ``override`` to every plan that can be in force with it: the one in force in
    ``period`` and every later one (``OverrideError``, 422)."""
    book = await load_book(conn)
    current = book.for_period(period)
    later = [p for p in book.plans if p.effective_from > period.start_date]
    for plan in [*([] if current is None else [current]), *later]:
        check_against_plan(override, plan)


async def put_version(
    conn: Conn, publisher_id: int, period: Period, override: Override
) -> PutOutcome:
    """Create or replace the publisher's version effective from ``period``. Raises
    ``NotFound``, ``OverrideInUse`` (409), ``OverrideError`` (422, against the plans)."""
    async with conn.transaction():
        await _lock_open_or_same(conn, publisher_id, period, override)
        existing = await get_version(conn, publisher_id, period)
        if existing is not None and existing.override == override:
            return PutOutcome.unchanged
        await _check_plans(conn, override, period)
        version_id = await conn.fetchval(
            """INSERT INTO payout_overrides (publisher_id, effective_from) VALUES ($1, $2)
               ON CONFLICT (publisher_id, effective_from) DO UPDATE SET updated_at = now()
               RETURNING id""",
            publisher_id,
            period.start_date,
        )
        await conn.execute("DELETE FROM payout_override_rates WHERE override_id = $1", version_id)
        categories = sorted({*override.rates, *override.new_buyer_rates})
        await conn.executemany(
            """INSERT INTO payout_override_rates (override_id, category, rate, new_buyer_rate)
               VALUES ($1, $2, $3, $4)""",
            [
                (version_id, c, override.rates.get(c), override.new_buyer_rates.get(c))
                for c in categories
            ],
        )
    return PutOutcome.created if existing is None else PutOutcome.replaced


async def _lock_open_or_same(
    conn: Conn, publisher_id: int, period: Period, override: Override
) -> None:
    """``_lock_open``, except that putting a closed period's version again as it is, is
    no change (answered ``unchanged``, as plans are)."""
    try:
        await _lock_open(conn, publisher_id, period, "put")
    except OverrideInUse:
        existing = await get_version(conn, publisher_id, period)
        if existing is None or existing.override != override:
            raise


async def delete_version(conn: Conn, publisher_id: int, period: Period) -> bool:
    """Delete the publisher's version effective from ``period``; False when there is none.
    Raises ``OverrideInUse`` (409) for a period already closed."""
    async with conn.transaction():
        await _lock_open(conn, publisher_id, period, "delete")
        deleted = await conn.fetchval(
            """DELETE FROM payout_overrides WHERE publisher_id = $1 AND effective_from = $2
               RETURNING id""",
            publisher_id,
            period.start_date,
        )
    return deleted is not None


def _in_force(versions: tuple[OverrideVersion, ...], period: Period) -> OverrideVersion | None:
    index = bisect.bisect_right([v.effective_from for v in versions], period)
    return versions[index - 1] if index else None


@dataclass(frozen=True)
class OverrideBook:
    """A publisher's versions and its network's, to find those in force in a period."""

    own: tuple[OverrideVersion, ...] = ()  # by ascending effective period
    network: tuple[OverrideVersion, ...] = ()

    def for_period(self, period: Period) -> tuple[OverrideVersion, ...]:
        """The versions in force in ``period``, the publisher's own first (``base_rate``)."""
        found = (_in_force(self.own, period), _in_force(self.network, period))
        return tuple(v for v in found if v is not None)

    def own_in_force(self, period: Period) -> OverrideVersion | None:
        return _in_force(self.own, period)

    def network_in_force(self, period: Period) -> OverrideVersion | None:
        return _in_force(self.network, period)


NO_OVERRIDES = OverrideBook()  # a publisher without payout overrides


async def load_override_book(conn: Conn, publisher_id: int, *, lock: bool = False) -> OverrideBook:
    """The publisher's versions and its network's. ``lock`` holds both publishers' rows
    (FOR SHARE) until the transaction ends: no version of theirs changes meanwhile."""
    network_id = await conn.fetchval(
        "SELECT network_id FROM publishers WHERE id = $1", publisher_id
    )
    ids = [publisher_id] if network_id is None else [publisher_id, network_id]
    if lock:
        await conn.execute(
            "SELECT 1 FROM publishers WHERE id = ANY($1::bigint[]) ORDER BY id FOR SHARE", ids
        )
    versions = await _versions(conn, ids)
    return OverrideBook(
        tuple(v for v in versions if v.publisher_id == publisher_id),
        tuple(v for v in versions if v.publisher_id != publisher_id),
    )


async def order_rate(
    conn: Conn,
    publisher_id: int,
    category: str,
    new_buyer: bool,
    at: datetime,
    *,
    tz: tzinfo,
) -> Decimal:
    """The base rate, in percent, an order of ``category`` placed at ``at`` (aware) earns
    for the publisher: its override's or its network's or the plan's (``overrides``), as
    the close will credit it, without the period's incentive bonus. ``tz`` is the period
    time zone (``Settings.period_tz``), which decides the period ``at`` falls in. 0 when no
    plan covers that period (the order is not credited until one does)."""
    period = Period.containing(at, tz)
    plan = (await load_book(conn)).for_period(period)
    if plan is None:
        return Decimal(0)
    book = await load_override_book(conn, publisher_id)
    return base_rate(plan, book.for_period(period), category, new_buyer).rate


def credited_rate(order: str) -> str:
    """A ``LEFT JOIN LATERAL`` giving, for the order row aliased ``order``, ``r.applied_rate``
    (numeric, percent: the total rate its latest ledger entry stating one was worked out at)
    and ``r.rate_source`` (``plan`` or ``override``: where its credit's base rate came from;
    ``plan`` for credits made before overrides existed); both null when never credited."""
    return f"""LEFT JOIN LATERAL (
        SELECT (SELECT (x.detail ->> 'total_rate')::numeric FROM ledger x
                WHERE x.order_id = {order}.id AND x.detail ? 'total_rate'
                ORDER BY x.id DESC LIMIT 1) AS applied_rate,
               coalesce(c.detail ->> 'rate_source', 'plan') AS rate_source
        FROM ledger c WHERE c.order_id = {order}.id AND c.kind = 'credit') r ON true"""
