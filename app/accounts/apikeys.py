"""API keys: random bearer tokens of which only a SHA-256 is stored.

Keys carry 256 bits of randomness, so a fast hash is enough: nothing to brute-force.

A key is checked against Postgres on every request (no per-process copy), so a revoked
key is refused by every worker at once. Its ``last_used_at`` is written at most once a
minute, by the same statement that checks it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

from app.core.db import Conn
from app.core.years import LAST_YEAR, YEARS_WORDS, in_years
from app.errors import Conflict, InvalidInput

KEY_PREFIX = "ctk_"
SHOWN_PREFIX = len(KEY_PREFIX) + 6
LAST_USED_EVERY_S = 60
MAX_OVERLAP_S = 3600
# A key's name (a label): the one bound for the API, the CLI and the store.
MAX_KEY_NAME = 200
# Expiries end before this: every stored time is in the years 1970 to 2999 (app.core.years).
EXPIRY_LIMIT = datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)


class Role(StrEnum):
    admin = "admin"
    publisher = "publisher"


class KeyStatus(StrEnum):
    active = "active"
    expired = "expired"
    revoked = "revoked"


class ApiKeyError(InvalidInput):
    """A key cannot be made or rotated as asked (the message says why)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin, or a publisher acting on its own account."""

    key_id: int
    role: Role
    publisher_id: int | None


@dataclass(frozen=True)
class Refusal:
    """Why a key presented was refused, in words for the caller."""

    message: str


@dataclass(frozen=True)
class ApiKey:
    """A stored key as listed: its prefix, never the secret."""

    id: int
    prefix: str
    role: Role
    publisher_id: int | None
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: int | None
    status: KeyStatus


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_key(
    conn: Conn,
    role: Role,
    publisher_id: int | None,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[int, str]:
    """Store a new key; return its id and the key itself (shown once, never stored). An
    expiry not in the future, or outside the years of ``app.core.years``, raises
    ``ApiKeyError``."""
    if len(name) > MAX_KEY_NAME:
        raise ApiKeyError(f"must be at most {MAX_KEY_NAME} characters", field="name")
    if expires_at is not None and not in_years(expires_at):
        raise ApiKeyError(YEARS_WORDS, field="expires_at")
    key = new_key()
    key_id: int = await conn.fetchval(
        """INSERT INTO api_keys (key_hash, key_prefix, role, publisher_id, name, expires_at)
           SELECT $1, $2, $3, $4, $5, $6
            WHERE $6::timestamptz IS NULL OR $6::timestamptz > now()
           RETURNING id""",
        hash_key(key),
        key[:SHOWN_PREFIX],
        role.value,
        publisher_id,
        name,
        expires_at,
    )
    if key_id is None:
        raise ApiKeyError("must be in the future", field="expires_at")
    return key_id, key


_CHECK = f"""
WITH k AS (
    SELECT id, role, publisher_id, revoked_at, expires_at,
           expires_at IS NOT NULL AND expires_at <= now() AS expired,
           last_used_at IS NULL
             OR last_used_at < now() - interval '{LAST_USED_EVERY_S} seconds' AS stale
      FROM api_keys WHERE key_hash = $1
), touched AS (
    UPDATE api_keys SET last_used_at = now()
     WHERE id = (SELECT id FROM k WHERE stale AND revoked_at IS NULL AND NOT expired)
       AND (last_used_at IS NULL
            OR last_used_at < now() - interval '{LAST_USED_EVERY_S} seconds')
)
SELECT id, role, publisher_id, revoked_at, expires_at, expired FROM k
"""


async def check_key(conn: Conn, key: str) -> Principal | Refusal:
    """The caller a key stands for, or why it is refused (unknown, revoked, expired)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return Refusal("invalid or revoked API key")
    row = await conn.fetchrow(_CHECK, hash_key(key))
    if row is None or row["revoked_at"] is not None:
        return Refusal("invalid or revoked API key")
    if row["expired"]:
        return Refusal(f"this API key expired at {row['expires_at']:%Y-%m-%dT%H:%M:%SZ}")
    return Principal(row["id"], Role(row["role"]), row["publisher_id"])


async def authenticate(conn: Conn, key: str) -> Principal | None:
    checked = await check_key(conn, key)
    return checked if isinstance(checked, Principal) else None


_COLUMNS = """id, key_prefix, role, publisher_id, name, created_at, last_used_at, expires_at,
    revoked_at, replaced_by,
    CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
         WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'
         ELSE 'active' END AS status"""


def _from_row(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        prefix=row["key_prefix"],
        role=Role(row["role"]),
        publisher_id=row["publisher_id"],
        name=row["name"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        replaced_by=row["replaced_by"],
        status=KeyStatus(row["status"]),
    )


async def list_keys(
    conn: Conn,
    publisher_id: int | None = None,
    *,
    role: Role | None = None,
    include_revoked: bool = False,
    after: int = 0,
    limit: int = 50,
) -> list[ApiKey]:
    """Keys in creation order; a publisher's only when ``publisher_id`` is given."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM api_keys
             WHERE id > $1 AND ($2::bigint IS NULL OR publisher_id = $2)
               AND ($3::text IS NULL OR role = $3) AND ($4 OR revoked_at IS NULL)
             ORDER BY id LIMIT $5""",
        after,
        publisher_id,
        None if role is None else role.value,
        include_revoked,
        limit,
    )
    return [_from_row(r) for r in rows]


async def get_key(conn: Conn, key_id: int, publisher_id: int | None = None) -> ApiKey | None:
    """A key by id; with ``publisher_id``, only if that publisher owns it."""
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS} FROM api_keys
             WHERE id = $1 AND ($2::bigint IS NULL OR publisher_id = $2)""",
        key_id,
        publisher_id,
    )
    return None if row is None else _from_row(row)


async def revoke_key(conn: Conn, key_id: int, publisher_id: int | None = None) -> ApiKey | None:
    """Revoke a key now (a revoked one stays as it was); None if there is no such key."""
    await conn.execute(
        """UPDATE api_keys SET revoked_at = now()
            WHERE id = $1 AND ($2::bigint IS NULL OR publisher_id = $2) AND revoked_at IS NULL""",
        key_id,
        publisher_id,
    )
    return await get_key(conn, key_id, publisher_id)


async def rotate_key(
    conn: Conn,
    old: ApiKey,
    *,
    overlap_s: int = 0,
    expires_at: datetime | None = None,
) -> tuple[int, str]:
    """A new key for the same owner, role and name; the old one is revoked now or, with an
    overlap, expires that many seconds from now (sooner if it already expires sooner).
    Call inside a transaction."""
    if old.status is not KeyStatus.active or old.replaced_by is not None:
        raise Conflict(f"key {old.id} is {_state(old)}: only an active key can be rotated")
    if not 0 <= overlap_s <= MAX_OVERLAP_S:
        raise ApiKeyError(f"must be 0 to {MAX_OVERLAP_S} seconds", field="overlap_seconds")
    key_id, key = await create_key(conn, old.role, old.publisher_id, old.name, expires_at)
    rotated = await conn.fetchval(
        """UPDATE api_keys
              SET replaced_by = $2,
                  revoked_at = CASE WHEN $3 = 0 THEN now() END,
                  expires_at = CASE WHEN $3 = 0 THEN expires_at
                               ELSE least(expires_at, now() + $4::interval) END
            WHERE id = $1 AND revoked_at IS NULL AND replaced_by IS NULL
           RETURNING id""",
        old.id,
        key_id,
        overlap_s,
        timedelta(seconds=overlap_s),
    )
    if rotated is None:  # revoked or rotated meanwhile: the caller's transaction rolls back
        raise Conflict(f"key {old.id} was revoked or rotated meanwhile")
    return key_id, key


def _state(key: ApiKey) -> str:
    if key.status is KeyStatus.active and key.replaced_by is not None:
        return f"already rotated (replaced by key {key.replaced_by})"
    return str(key.status)
