"""The deliveries as the sender works them: claim the due ones, record each attempt.

**Claiming** (``claim``) is one statement: the due pending deliveries of active endpoints,
oldest due first, locked with ``FOR UPDATE SKIP LOCKED`` (several senders never take the
same row) and leased: their ``next_attempt_at`` moves to the lease's end, so a sender that
dies holding them does not keep them: they are due again when the lease ends, and another
sender sends them. The lease outlasts one attempt (``CLICKTRACK_POSTBACK_TIMEOUT_MS``) by a
margin, so a live sender always records its attempt before its lease ends.

**Recording** (``record_attempt``) writes the attempt and the delivery's new state in one
statement, after the request: a crash between the two repeats a send, never loses one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from app.core.db import Conn


class Outcome(StrEnum):
    delivered = "delivered"  # a 2xx answer
    retry = "retry"  # failed; tried again after a delay
    failed = "failed"  # failed, and past the give-up time: no more tries


@dataclass(frozen=True)
class Claimed:
    """A delivery a sender holds: what to send where."""

    id: int
    event_id: uuid.UUID
    event: str
    attempts: int  # this attempt included
    queued_at: datetime
    endpoint_id: int
    kind: str
    url: str
    secret: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """What one attempt got: ``latency_ms`` from the start of the attempt (resolution
    included); ``response`` the body's first bytes as text; ``error`` why it failed."""

    outcome: Outcome
    latency_ms: int
    status_code: int | None = None
    response: str | None = None
    error: str | None = None


# The due rows are picked and locked once (a CTE is evaluated once), then leased.
_CLAIM = """
    WITH due AS (
        SELECT x.id FROM postback_deliveries x
          JOIN postback_endpoints xe ON xe.id = x.endpoint_id AND xe.disabled_at IS NULL
         WHERE x.status = 'pending' AND x.next_attempt_at <= now()
           AND x.endpoint_id <> ALL($3::bigint[])
         ORDER BY x.next_attempt_at
         LIMIT $1
         FOR UPDATE OF x SKIP LOCKED)
    UPDATE postback_deliveries d
       SET next_attempt_at = now() + $2::interval, attempts = d.attempts + 1,
           updated_at = now()
      FROM due, outbox_events ev, postback_endpoints e
     WHERE d.id = due.id AND ev.id = d.event_id AND e.id = d.endpoint_id
    RETURNING d.id, d.event_id, d.event, d.attempts, d.queued_at, e.id AS endpoint_id,
              e.kind, e.url, e.secret, ev.payload::text AS payload"""


async def claim(conn: Conn, limit: int, lease_s: float, busy: list[int]) -> list[Claimed]:
    """Take at most ``limit`` due deliveries for ``lease_s`` seconds, none of the endpoints
    in ``busy`` (those this sender already works at their concurrency limit)."""
    rows = await conn.fetch(_CLAIM, limit, timedelta(seconds=lease_s), busy)
    return [
        Claimed(
            id=r["id"],
            event_id=r["event_id"],
            event=r["event"],
            attempts=r["attempts"],
            queued_at=r["queued_at"],
            endpoint_id=r["endpoint_id"],
            kind=r["kind"],
            url=r["url"],
            secret=r["secret"],
            payload=orjson.loads(r["payload"]),
        )
        for r in rows
    ]


async def release(conn: Conn, ids: list[int]) -> None:
    """Give back deliveries claimed but not started: due now, their attempt not counted."""
    if ids:
        await conn.execute(
            """UPDATE postback_deliveries SET next_attempt_at = now(), attempts = attempts - 1
               WHERE id = ANY($1::bigint[]) AND status = 'pending'""",
            ids,
        )


_RECORD = """
    WITH a AS (
        INSERT INTO postback_attempts (delivery_id, outcome, status_code, latency_ms,
                                       response, error)
        VALUES ($1, $2, $3, $4, $5, $6))
    UPDATE postback_deliveries
       SET status = CASE $2::text WHEN 'retry' THEN 'pending' ELSE $2::text END,
           next_attempt_at = coalesce($7, next_attempt_at),
           last_status_code = $3, last_error = $6,
           delivered_at = CASE WHEN $2::text = 'delivered' THEN now() END,
           updated_at = now()
     WHERE id = $1"""


async def record_attempt(
    conn: Conn, delivery_id: int, attempt: Attempt, next_at: datetime | None
) -> None:
    """Keep ``attempt`` and set the delivery's state from it (``next_at``: when a retry is
    due)."""
    await conn.execute(
        _RECORD,
        delivery_id,
        attempt.outcome.value,
        attempt.status_code,
        attempt.latency_ms,
        attempt.response,
        attempt.error,
        next_at,
    )


async def pending_stats(conn: Conn) -> tuple[int, float]:
    """(deliveries pending, age in seconds of the oldest one queued; 0 when none)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS n,
                  coalesce(extract(epoch FROM now() - min(queued_at)), 0)::float8 AS age
           FROM postback_deliveries WHERE status = 'pending'"""
    )
    assert row is not None
    return row["n"], row["age"]
