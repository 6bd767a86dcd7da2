"""The audit log: who changed what, when, and the target's state before and after.

Each change appends one row **in the caller's transaction** (pass the connection that makes
the change, inside ``conn.transaction()``), so a change rolled back leaves no entry and no
change goes without one. Rows are never updated or deleted by the application.

``before`` and ``after`` are JSON objects of the target's fields that an operator reads
(never a secret: a key or postback secret appears as its prefix at most); ``None`` for a
target that did not exist before (created) or no longer does after (deleted).
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

import asyncpg
import orjson

from app.core.db import Conn

ActorRole = Literal["admin", "publisher", "operator"]


@dataclass(frozen=True)
class Actor:
    """Who made a change: ``name`` is 'key:<id>', 'dashboard:key:<id>' or 'cli:<os user>';
    ``publisher_id`` is the publisher a publisher key belongs to (None for admins and the
    CLI)."""

    name: str
    role: ActorRole
    publisher_id: int | None = None


def api_actor(key_id: int, role: str, publisher_id: int | None, *, via: str = "") -> Actor:
    """The actor for a call made with API key ``key_id`` (``via='dashboard'`` for the
    dashboard's session, which holds a key)."""
    prefix = f"{via}:" if via else ""
    return Actor(f"{prefix}key:{key_id}", "admin" if role == "admin" else "publisher", publisher_id)


def cli_actor() -> Actor:
    """The actor for an operator's CLI command: the operating-system user that ran it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's numeric user)
        user = "unknown"
    return Actor(f"cli:{user}"[:200], "operator")


def _plain(value: object) -> object:
    """orjson's fallback: amounts as exact strings, dates and enums as text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (tuple, frozenset, set)):
        return list(value)
    raise TypeError(f"not kept in the audit log: {type(value).__name__}")


def _json(state: Mapping[str, Any] | None) -> str | None:
    if state is None:
        return None
    return orjson.dumps(dict(state), default=_plain).decode()


async def record(
    conn: Conn,
    actor: Actor,
    action: str,
    target_kind: str,
    target_id: object,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    publisher_id: int | None = None,
) -> int:
    """Append one entry; return its id. ``action`` is '<target kind>.<verb>' in lower case
    ('link.update', 'api_key.revoke'); ``publisher_id`` is the publisher the target belongs
    to (defaults to the actor's), so a publisher can list what happened to its own things.

    Raises ``asyncpg.CheckViolationError`` for an action not of that form (a programming
    error, not user input)."""
    entry_id: int = await conn.fetchval(
        """INSERT INTO audit_log
               (actor, actor_role, publisher_id, action, target_kind, target_id, before, after)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb) RETURNING id""",
        actor.name,
        actor.role,
        publisher_id if publisher_id is not None else actor.publisher_id,
        action,
        target_kind,
        str(target_id),
        _json(before),
        _json(after),
    )
    return entry_id


@dataclass(frozen=True)
class AuditEntry:
    """One change as listed: ``at`` in UTC; ``before``/``after`` as recorded."""

    id: int
    at: datetime
    actor: str
    actor_role: str
    publisher_id: int | None
    action: str
    target_kind: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        row["id"],
        row["at"],
        row["actor"],
        row["actor_role"],
        row["publisher_id"],
        row["action"],
        row["target_kind"],
        row["target_id"],
        None if row["before"] is None else orjson.loads(row["before"]),
        None if row["after"] is None else orjson.loads(row["after"]),
    )


async def list_entries(
    conn: Conn,
    *,
    publisher_id: int | None = None,
    target_kind: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries newest first, each filter applied when given; ``before_id`` pages backwards
    (pass the last id of the previous page)."""
    rows = await conn.fetch(
        """SELECT id, at, actor, actor_role, publisher_id, action, target_kind, target_id,
                  before::text AS before, after::text AS after
           FROM audit_log
           WHERE ($1::bigint IS NULL OR publisher_id = $1)
             AND ($2::text IS NULL OR target_kind = $2)
             AND ($3::text IS NULL OR target_id = $3)
             AND ($4::text IS NULL OR action = $4)
             AND ($5::timestamptz IS NULL OR at >= $5)
             AND ($6::timestamptz IS NULL OR at < $6)
             AND ($7::bigint IS NULL OR id < $7)
           ORDER BY id DESC LIMIT $8""",
        publisher_id,
        target_kind,
        target_id,
        action,
        since,
        until,
        before_id,
        limit,
    )
    return [_entry(r) for r in rows]
