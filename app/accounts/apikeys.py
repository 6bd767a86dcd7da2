"""API keys: random bearer tokens of which only a SHA-256 is stored.

Keys carry 256 bits of randomness, so a fast hash is enough: nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from app.core.db import Conn

KEY_PREFIX = "ctk_"


class Role(StrEnum):
    admin = "admin"
    publisher = "publisher"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin, or a publisher acting on its own account."""

    key_id: int
    role: Role
    publisher_id: int | None


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_key(
    conn: Conn, role: Role, publisher_id: int | None, name: str = ""
) -> tuple[int, str]:
    """Store a new key; return its id and the key itself (shown once, never stored)."""
    key = new_key()
    key_id: int = await conn.fetchval(
        """INSERT INTO api_keys (key_hash, key_prefix, role, publisher_id, name)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        hash_key(key),
        key[: len(KEY_PREFIX) + 6],
        role.value,
        publisher_id,
        name,
    )
    return key_id, key


async def authenticate(conn: Conn, key: str) -> Principal | None:
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    row = await conn.fetchrow(
        "SELECT id, role, publisher_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    if row is None:
        return None
    return Principal(row["id"], Role(row["role"]), row["publisher_id"])
