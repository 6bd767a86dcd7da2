"""Tying an order to its click, through the click id the redirect added to the merchant's URL.

Click ids are UUIDv7: their first 48 bits are the millisecond the click was made, and the
click's row in ``clicks`` (partitioned by day on ``ts``) has ``ts`` within a few ms of it.
A lookup therefore searches a narrow window around that time, so Postgres reads one
partition (or two at midnight) instead of all of them.

The click may not be in Postgres yet when the order arrives (the flusher runs a moment behind
the redirect). Such an order stays ``unattributed`` and is tried again on its next postback,
before every period close, and on an admin's request (``reattribute``).

Once the click is found, the order is judged (``judge``): tracking is session based (the
seed's FAQ 3), so the order must be placed after the click (less a small tolerance for the
merchant's clock) and within the attribution window; and the click's link must point at a
host of the merchant reporting the order. An order failing a rule stays ``unattributed``
with the reason, for good: no retry attributes it later. The window and tolerance are those
in force when the order was first reported, stored with it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

import asyncpg

from app.clicks.record import Flag
from app.core.db import Conn
from app.core.hosts import host_allowed, normalise_host
from app.orders.candidate import Candidate
from app.orders.screening import NO_SCREENING, Decision, Screening, Verdict, screen
from app.postbacks import outbox
from app.postbacks.events import OrderFacts, order_events

# Far wider than the real gap (a few ms), still a tiny slice of one day's partition.
CLICK_WINDOW = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The defaults of CLICKTRACK_ATTRIBUTION_WINDOW_DAYS and CLICKTRACK_ATTRIBUTION_CLOCK_SKEW_S
# (docs/commissions.md §2 says why).
DEFAULT_WINDOW_DAYS = 30
DEFAULT_CLOCK_SKEW_S = 300


@dataclass(frozen=True)
class AttributionRules:
    """How long after its click an order may be placed (``window``), and how far before it
    (``skew``: the click's time is the server's clock, the order's the merchant's)."""

    window: timedelta = timedelta(days=DEFAULT_WINDOW_DAYS)
    skew: timedelta = timedelta(seconds=DEFAULT_CLOCK_SKEW_S)


DEFAULT_RULES = AttributionRules()


class UnattributedReason(StrEnum):
    """Why an order is unattributed. The first three are stored and final; the last two
    describe an order still waiting (or unable) to match a click."""

    order_before_click = "order_before_click"
    outside_attribution_window = "outside_attribution_window"
    click_not_for_this_merchant = "click_not_for_this_merchant"
    click_not_found = "click_not_found"  # no such click (yet): tried again
    not_a_click_id = "not_a_click_id"  # not a UUIDv7: can never match a click


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


def link_host(destination: str | None) -> str | None:
    """The host of a link's destination in ``app.core.hosts``' form (links written before
    destinations were normalised may hold Unicode or capitals); None when it has none."""
    try:
        host = urlsplit(destination or "").hostname
    except ValueError:
        return None
    if not host:
        return None
    try:
        return normalise_host(host)
    except ValueError:
        return host.lower().removesuffix(".")


def judge(
    ordered_at: datetime,
    clicked_at: datetime,
    rules: AttributionRules,
    host: str | None,
    merchant_hosts: tuple[str, ...],
) -> UnattributedReason | None:
    """Why an order placed at ``ordered_at`` cannot be attributed to a click made at
    ``clicked_at`` on a link to ``host``, reported by a merchant owning ``merchant_hosts``
    (none: any host, as before merchants had hosts); None when it can."""
    if merchant_hosts and (host is None or not host_allowed(host, merchant_hosts)):
        return UnattributedReason.click_not_for_this_merchant
    if ordered_at < clicked_at - rules.skew:
        return UnattributedReason.order_before_click
    if ordered_at > clicked_at + rules.window:
        return UnattributedReason.outside_attribution_window
    return None


_CLICK_COLUMNS = """c.ts, c.publisher_id, c.link_id, c.code, c.af, c.cn, c.cv, c.dp, c.flags,
    c.session_id, c.ip"""

# Orders waiting for their click, with the click when it is stored, the host of its link
# and the hosts of the merchant. The order's own click time bounds each lookup, so every
# probe prunes to its partitions.
_CANDIDATES = f"""
    SELECT o.id AS order_id, o.merchant_id, o.ordered_at, o.attribution_window,
           o.attribution_skew, o.status, o.amount, o.category, o.new_buyer,
           {_CLICK_COLUMNS}, l.destination, m.hosts AS merchant_hosts
    FROM orders o
    JOIN merchants m ON m.id = o.merchant_id
    CROSS JOIN LATERAL (
        SELECT * FROM clicks c
        WHERE c.click_id = o.click_id
          AND c.ts >= o.click_time - $2::interval AND c.ts < o.click_time + $2::interval
        LIMIT 1) c
    LEFT JOIN links l ON l.id = c.link_id
    WHERE o.attribution = 'unattributed' AND o.unattributed_reason IS NULL
      AND o.click_id IS NOT NULL AND {{which}}
    ORDER BY o.id
    LIMIT $3"""
_FIND_ONE = _CANDIDATES.format(which="o.id = $1")
_FIND_WAITING = _CANDIDATES.format(which="o.id > $1")

# Both guarded by attribution = 'unattributed' and no reason yet: an order is decided once,
# whoever gets there first.
_APPLY = """
    UPDATE orders SET
        attribution = $9,
        disqualified_reason = $10,
        disqualified_at = CASE WHEN $9 = 'disqualified' THEN now() END,
        held_rule = $11,
        held_at = CASE WHEN $9 = 'held' THEN now() END,
        declined_cap_id = $12,
        declined_at = CASE WHEN $9 = 'declined' THEN now() END,
        publisher_id = $2, link_id = $3, code = $4, af = $5, cn = $6, cv = $7, dp = $8,
        click_flags = $13, session_id = $14, click_ip = $15,
        attributed_at = now(), updated_at = now()
    WHERE id = $1 AND attribution = 'unattributed' AND unattributed_reason IS NULL"""

_REFUSE = """
    UPDATE orders SET unattributed_reason = $2, updated_at = now()
    WHERE id = $1 AND attribution = 'unattributed' AND unattributed_reason IS NULL"""


def candidate_of(found: asyncpg.Record) -> Candidate:
    """What screening judges of an order found with its click (``_CANDIDATES``' row)."""
    return Candidate(
        order_id=found["order_id"],
        merchant_id=found["merchant_id"],
        ordered_at=found["ordered_at"],
        amount=found["amount"],
        category=found["category"],
        new_buyer=found["new_buyer"],
        clicked_at=found["ts"],
        flags=found["flags"],
        publisher_id=found["publisher_id"],
        link_id=found["link_id"],
        cn=found["cn"],
        session_id=found["session_id"],
        click_ip=found["ip"],
    )


async def _settle(conn: Conn, found: asyncpg.Record, screening: Screening) -> Verdict | None:
    """Decide an order whose click is found: screen it (``screening.py``: attributed,
    disqualified on a flagged click, held for review, declined over a cap), or keep it
    unattributed with the reason. The verdict when it was tied to the click, else None."""
    rules = AttributionRules(found["attribution_window"], found["attribution_skew"])
    reason = judge(
        found["ordered_at"],
        found["ts"],
        rules,
        link_host(found["destination"]),
        tuple(found["merchant_hosts"]),
    )
    if reason is not None:
        await conn.execute(_REFUSE, found["order_id"], reason.value)
        return None
    flags: int = found["flags"]
    verdict = await screen(conn, candidate_of(found), screening)
    disqualified = verdict.decision is Decision.disqualify
    status = await conn.execute(
        _APPLY,
        found["order_id"],
        found["publisher_id"],
        found["link_id"],
        found["code"],
        found["af"],
        found["cn"],
        found["cv"],
        found["dp"],
        verdict.decision.value,
        flag_reason(flags) if disqualified else None,
        verdict.rule,
        verdict.cap_id,
        flags,
        found["session_id"],
        found["ip"],
    )
    return verdict if status == "UPDATE 1" else None


async def attribute_order(
    conn: Conn, order_id: int, screening: Screening = NO_SCREENING
) -> Verdict | None:
    """Decide one waiting order if its click is known: the verdict when it was tied to it."""
    found = await conn.fetchrow(_FIND_ONE, order_id, CLICK_WINDOW, 1)
    return None if found is None else await _settle(conn, found, screening)


async def reattribute(conn: Conn, *, batch: int = 500, screening: Screening = NO_SCREENING) -> int:
    """Decide every waiting order whose click has arrived since; return how many were tied
    to their click (orders refused for a reason are kept unattributed, and not counted)."""
    done = 0
    after = 0
    while True:
        found = await conn.fetch(_FIND_WAITING, after, CLICK_WINDOW, batch)
        for candidate in found:
            # Each order and its events together (a savepoint inside a caller's transaction).
            async with conn.transaction():
                verdict = await _settle(conn, candidate, screening)
                if verdict is not None and verdict.decision is Decision.attribute:
                    await _tell(conn, candidate)
            done += verdict is not None
        if len(found) < batch:
            return done
        after = found[-1]["order_id"]


async def _tell(conn: Conn, found: asyncpg.Record) -> None:
    """Queue the events of an order just attributed by ``reattribute`` (a postback's own
    attribution is told by ``record_postback``, with its status change)."""
    facts = OrderFacts(False, found["status"], found["amount"])
    after = OrderFacts(True, found["status"], found["amount"])
    await outbox.emit_order(conn, found["order_id"], order_events(facts, after))
