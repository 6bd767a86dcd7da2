"""Merchants, their postback secrets, and the signature that authenticates a postback.

A postback carries three headers::

    X-Clicktrack-Merchant:  <merchant id>
    X-Clicktrack-Timestamp: <unix time, whole seconds>
    X-Clicktrack-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

Signing the timestamp with the body lets the receiver refuse old requests (replays) without
remembering them; a replay inside the allowed skew is harmless because postbacks are
idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.core.chars import first_refused
from app.core.db import Conn
from app.errors import InvalidInput, Unauthorized

SECRET_PREFIX = "ctm_"
SIGNATURE_PREFIX = "sha256="
MERCHANT_HEADER = "x-clicktrack-merchant"
TIMESTAMP_HEADER = "x-clicktrack-timestamp"
SIGNATURE_HEADER = "x-clicktrack-signature"


class MerchantError(InvalidInput):
    """A merchant cannot be created as asked (the message says why)."""


class SignatureError(Unauthorized):
    """The postback is not authentic or not fresh (the message says which)."""


@dataclass(frozen=True)
class Merchant:
    id: int
    name: str
    created_at: datetime


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The value of the signature header for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    max_skew_s: int,
) -> None:
    """Raise SignatureError unless ``signature`` signs ``body`` at a fresh ``timestamp``."""
    if not timestamp or not signature:
        raise SignatureError("missing X-Clicktrack-Timestamp or X-Clicktrack-Signature header")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("X-Clicktrack-Timestamp must be unix time in whole seconds")
    if abs(now - int(timestamp)) > max_skew_s:
        raise SignatureError(
            f"X-Clicktrack-Timestamp is more than {max_skew_s} s away from the server's clock"
        )
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise SignatureError("the signature does not match the body")


def _merchant(row: asyncpg.Record) -> Merchant:
    return Merchant(row["id"], row["name"], row["created_at"])


async def create_merchant(conn: Conn, name: str) -> tuple[Merchant, str]:
    """Store a new merchant; return it and its secret (to be shown once)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise MerchantError("name must be 1 to 200 characters")
    if (refused := first_refused(name)) is not None:
        raise MerchantError(f"name must not contain control or invisible characters ({refused})")
    secret = new_secret()
    row = await conn.fetchrow(
        """INSERT INTO merchants (name, secret) VALUES ($1, $2)
           ON CONFLICT (name) DO NOTHING RETURNING id, name, created_at""",
        name,
        secret,
    )
    if row is None:
        raise MerchantError(f"a merchant named {name!r} already exists")
    return _merchant(row), secret


async def rotate_secret(conn: Conn, name: str) -> tuple[Merchant, str]:
    """Replace a merchant's secret (its old one stops working at once)."""
    secret = new_secret()
    row = await conn.fetchrow(
        "UPDATE merchants SET secret = $2 WHERE name = $1 RETURNING id, name, created_at",
        name.strip(),
        secret,
    )
    if row is None:
        raise MerchantError(f"no merchant named {name.strip()!r}")
    return _merchant(row), secret


async def merchant_secret(conn: Conn, merchant_id: int) -> str | None:
    """The secret of an enabled merchant, or None."""
    secret: str | None = await conn.fetchval(
        "SELECT secret FROM merchants WHERE id = $1 AND disabled_at IS NULL", merchant_id
    )
    return secret
