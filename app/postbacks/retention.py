"""Retention of the postback tables: deliveries, their attempts and events, and the log of
postbacks received from merchants (``CLICKTRACK_POSTBACK_RETENTION_DAYS``).

``prune(conn, cutoff)`` deletes, in this order:

1. deliveries that are finished (``delivered`` or ``failed``) and unchanged since before
   ``cutoff`` (``updated_at``: a replay or a late attempt makes one recent again), with
   their attempts;
2. events older than ``cutoff`` left without any delivery: an event is deleted only once
   every delivery of it is, so never one that still has a pending delivery;
3. received postbacks (``received_postbacks``) received before ``cutoff``. A replay of one
   of them that is kept loses its link (the foreign key sets ``replay_of`` to NULL).

A pending delivery is never deleted, however old: it waits for its endpoint (a disabled
endpoint's deliveries wait until it is enabled again).

**Bounded.** Each statement deletes at most ``batch`` rows of the table it walks (attempts
follow their deliveries: a few each) and is its own short transaction, so no lock is held
long and vacuum can reclaim as it goes; a pass loops until a batch comes back short.

**Several at once** (every sender runs a pass hourly; an operator may run
``prune-postbacks``): rows are picked with ``FOR UPDATE SKIP LOCKED``, so a row another
transaction holds (a replay, another pass) is left for later instead of waited for, and
each batch first takes a transaction-scoped advisory lock, so the batches of two passes
run one after the other: deleting a received postback updates the rows that replayed it,
and two batches each holding rows the other's update needs would deadlock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from app.core.db import Conn

# Rows deleted per statement (of the table walked).
BATCH = 5000
# Shared by every process pruning these tables: "ctprune" in ASCII.
ADVISORY_LOCK_KEY = 0x637470_72756E65

# Before every event: where a pass's walk of the events starts.
_FIRST_EVENT_KEY = (datetime(1, 1, 1, tzinfo=UTC), uuid.UUID(int=0))


@dataclass(frozen=True)
class Pruned:
    """Rows deleted, by table."""

    deliveries: int = 0
    attempts: int = 0
    events: int = 0
    received: int = 0

    def by_table(self) -> dict[str, int]:
        return {
            "postback_deliveries": self.deliveries,
            "postback_attempts": self.attempts,
            "outbox_events": self.events,
            "received_postbacks": self.received,
        }

    @property
    def total(self) -> int:
        return self.deliveries + self.attempts + self.events + self.received


# $1 cutoff, $2 batch. `status <> 'pending'` (delivered or failed) is the predicate of the
# index postback_deliveries_finished (migration 033): written the same way, so it is used.
# The attempts go in the same statement: the foreign key is checked at its end.
_DELIVERIES = """
    WITH picked AS (
        SELECT id FROM postback_deliveries
         WHERE status <> 'pending' AND updated_at < $1
         ORDER BY updated_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED),
    attempts AS (
        DELETE FROM postback_attempts a USING picked WHERE a.delivery_id = picked.id
        RETURNING 1),
    deliveries AS (
        DELETE FROM postback_deliveries d USING picked WHERE d.id = picked.id
        RETURNING 1)
    SELECT (SELECT count(*) FROM deliveries) AS deleted,
           (SELECT count(*) FROM attempts) AS attempts"""

# $1 cutoff, ($2, $3) the (created_at, id) after which to walk, $4 batch. A chunk of old
# events is read in index order and those of it without a delivery are deleted; the next
# batch starts after the chunk, so old events that must stay (a pending delivery) are read
# once per pass, not once per batch.
_EVENTS = """
    WITH chunk AS (
        SELECT id, created_at FROM outbox_events
         WHERE created_at < $1 AND (created_at, id) > ($2::timestamptz, $3::uuid)
         ORDER BY created_at, id
         LIMIT $4),
    gone AS (
        DELETE FROM outbox_events e WHERE e.id IN (
            SELECT c.id FROM outbox_events c
             WHERE c.id IN (SELECT id FROM chunk)
               AND NOT EXISTS (SELECT 1 FROM postback_deliveries d WHERE d.event_id = c.id)
             FOR UPDATE SKIP LOCKED)
        RETURNING 1),
    last AS (SELECT created_at, id FROM chunk ORDER BY created_at DESC, id DESC LIMIT 1)
    SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM chunk) AS read,
           (SELECT created_at FROM last) AS last_at, (SELECT id FROM last) AS last_id"""

# $1 cutoff, $2 batch.
_RECEIVED = """
    WITH picked AS (
        SELECT id FROM received_postbacks
         WHERE received_at < $1
         ORDER BY received_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM received_postbacks r USING picked WHERE r.id = picked.id RETURNING 1)
    SELECT count(*) AS deleted FROM gone"""


async def prune(conn: Conn, cutoff: datetime, *, batch: int = BATCH) -> Pruned:
    """Delete what is older than ``cutoff`` (an aware datetime), at most ``batch`` rows per
    statement; return how many rows of each table went. A failure leaves the batches done
    before it deleted, and the rest for the next pass."""
    if batch < 1:
        raise ValueError(f"batch must be 1 or more: {batch}")
    deliveries = attempts = 0
    while True:
        row = await _batch(conn, _DELIVERIES, cutoff, batch)
        deliveries += int(row["deleted"])
        attempts += int(row["attempts"])
        if row["deleted"] < batch:
            break
    events = await _prune_events(conn, cutoff, batch)
    received = 0
    while True:
        row = await _batch(conn, _RECEIVED, cutoff, batch)
        received += int(row["deleted"])
        if row["deleted"] < batch:
            break
    return Pruned(deliveries, attempts, events, received)


async def _prune_events(conn: Conn, cutoff: datetime, batch: int) -> int:
    deleted = 0
    after_at, after_id = _FIRST_EVENT_KEY
    while True:
        row = await _batch(conn, _EVENTS, cutoff, after_at, after_id, batch)
        deleted += int(row["deleted"])
        if row["read"] < batch:
            return deleted
        after_at, after_id = row["last_at"], row["last_id"]


async def _batch(conn: Conn, sql: str, *args: object) -> asyncpg.Record:
    """One batch: its own transaction, after the other passes' batches (advisory lock)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
        row = await conn.fetchrow(sql, *args)
    assert row is not None  # an aggregate: always one row
    return row
