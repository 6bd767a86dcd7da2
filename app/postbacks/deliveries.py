"""The delivery log a publisher reads, and replays: one delivery per (event, endpoint), each
with its attempts. A replay's audit entry is written by its caller (the API, the dashboard)
in the replay's transaction, with the words and states defined here, so both keep the same."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.core.db import Conn

MAX_REPLAY = 10_000  # deliveries one replay-by-filter call queues again
# A replay's audit entry: its action and target kind (``app.audit.log.record``).
REPLAY_ACTION = "postback_delivery.replay"
REPLAY_TARGET = "postback_delivery"


@dataclass(frozen=True)
class AttemptRecord:
    at: datetime
    outcome: str
    status_code: int | None
    latency_ms: int
    response: str | None  # the response's first 1 KiB, as text
    error: str | None


@dataclass(frozen=True)
class Delivery:
    id: int
    event_id: uuid.UUID
    endpoint_id: int
    publisher_id: int
    event: str
    status: str  # pending, delivered, failed
    attempts: int
    next_attempt_at: datetime | None  # when pending
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    queued_at: datetime
    payload: dict[str, Any]
    tries: tuple[AttemptRecord, ...] = ()


@dataclass(frozen=True)
class DeliveryQuery:
    """Filters of the log; None means any."""

    publisher_id: int
    endpoint_id: int | None = None
    status: str | None = None
    event: str | None = None


_WHERE = """d.publisher_id = $1 AND ($2::int8 IS NULL OR d.endpoint_id = $2)
    AND ($3::text IS NULL OR d.status = $3) AND ($4::text IS NULL OR d.event = $4)"""

_SELECT = """SELECT d.id, d.event_id, d.endpoint_id, d.publisher_id, d.event, d.status,
           d.attempts, CASE WHEN d.status = 'pending' THEN d.next_attempt_at END
               AS next_attempt_at,
           d.last_status_code, d.last_error, d.delivered_at, d.created_at, d.queued_at,
           ev.payload::text AS payload
    FROM postback_deliveries d JOIN outbox_events ev ON ev.id = d.event_id"""


def _delivery(row: asyncpg.Record, tries: tuple[AttemptRecord, ...]) -> Delivery:
    values = dict(row)
    values["payload"] = orjson.loads(row["payload"])
    return Delivery(**values, tries=tries)


async def _attempts(conn: Conn, ids: list[int]) -> dict[int, tuple[AttemptRecord, ...]]:
    rows = await conn.fetch(
        """SELECT delivery_id, at, outcome, status_code, latency_ms, response, error
           FROM postback_attempts WHERE delivery_id = ANY($1::bigint[])
           ORDER BY delivery_id, id""",
        ids,
    )
    found: dict[int, list[AttemptRecord]] = {}
    for r in rows:
        found.setdefault(r["delivery_id"], []).append(
            AttemptRecord(
                r["at"], r["outcome"], r["status_code"], r["latency_ms"], r["response"], r["error"]
            )
        )
    return {key: tuple(value) for key, value in found.items()}


async def list_deliveries(
    conn: Conn, query: DeliveryQuery, *, before: int | None = None, limit: int = 50
) -> list[Delivery]:
    """The deliveries matching ``query``, newest first, each with its attempts; ``before``
    pages backwards (the last id of the previous page)."""
    rows = await conn.fetch(
        f"""{_SELECT} WHERE {_WHERE} AND ($5::int8 IS NULL OR d.id < $5)
            ORDER BY d.id DESC LIMIT $6""",
        query.publisher_id,
        query.endpoint_id,
        query.status,
        query.event,
        before,
        limit,
    )
    tries = await _attempts(conn, [r["id"] for r in rows])
    return [_delivery(r, tries.get(r["id"], ())) for r in rows]


async def get_delivery(conn: Conn, delivery_id: int) -> Delivery | None:
    row = await conn.fetchrow(f"{_SELECT} WHERE d.id = $1", delivery_id)
    if row is None:
        return None
    tries = await _attempts(conn, [delivery_id])
    return _delivery(row, tries.get(delivery_id, ()))


_REQUEUE = """UPDATE postback_deliveries
       SET status = 'pending', attempts = 0, queued_at = now(), next_attempt_at = now(),
           delivered_at = NULL, updated_at = now()"""


async def replay(conn: Conn, delivery_id: int) -> bool:
    """Queue a delivered or failed delivery again (same event id: receivers that dedupe
    drop it); False when it is pending already."""
    status = await conn.execute(f"{_REQUEUE} WHERE id = $1 AND status <> 'pending'", delivery_id)
    return status == "UPDATE 1"


async def replay_matching(conn: Conn, query: DeliveryQuery) -> int:
    """Queue again every delivered or failed delivery matching ``query`` (at most
    ``MAX_REPLAY``, oldest first); return how many."""
    status = await conn.execute(
        f"""{_REQUEUE} WHERE id IN (
                SELECT d.id FROM postback_deliveries d
                WHERE {_WHERE} AND d.status <> 'pending' ORDER BY d.id LIMIT $5)""",
        query.publisher_id,
        query.endpoint_id,
        query.status,
        query.event,
        MAX_REPLAY,
    )
    return int(status.split()[-1])


def replay_states(found: Delivery) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the audit log keeps of one delivery's replay: (before, after), its status."""
    return {"status": found.status}, {"status": "pending"}


def replay_matching_state(query: DeliveryQuery, replayed: int) -> dict[str, Any]:
    """What the audit log keeps of a replay by filter (its "after"): the filters of
    ``query`` (None: any) and how many deliveries it queued again."""
    return {
        "endpoint_id": query.endpoint_id,
        "status": query.status,
        "event": query.event,
        "replayed": replayed,
    }
